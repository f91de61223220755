// Command e2e-mkimage packs directories into an OCI image archive that
// `ctr images import` loads, so the e2e cluster (and `make image`) runs
// images without any registry or container engine.
//
//	e2e-mkimage -name ovsnet-e2e.local/pause:1 -rootfs DIR -out pause.tar -entrypoint /pause
//	e2e-mkimage -name ovsnet-e2e.local/busybox:1 -rootfs DIR -out busybox.tar sh
//	e2e-mkimage -name docker.io/library/ovsnet:latest -name docker.io/library/ovsnet:v1 \
//	    -rootfs DEBIAN -rootfs OVSNET -keep-owners -gzip -layer-cache DIR \
//	    -env PATH=/usr/local/bin:/usr/bin:/bin -out ovsnet.tar bash
//
// The arguments after the flags are the image's default command, which a
// pod's args replace; -entrypoint, if given, is the program that a pod's
// command replaces. Each -rootfs becomes one layer, bottom first; each -name
// is a reference to the same image. The archive is reproducible: times and
// walk order do not depend on the host, nor do owners unless -keep-owners
// keeps their numeric IDs.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		slog.Error("e2e-mkimage failed", "err", err)
		os.Exit(1)
	}
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string) error {
	fs := flag.NewFlagSet("e2e-mkimage", flag.ContinueOnError)
	var names, roots, env listFlag
	fs.Var(&names, "name", "image reference with a tag, e.g. ovsnet-e2e.local/busybox:1; repeat it to give the image more names")
	fs.Var(&roots, "rootfs", "directory that becomes a layer of the image's root file system; repeat it for more layers, bottom first")
	fs.Var(&env, "env", "KEY=VALUE for the image's environment, replacing a default of the same key (default "+strings.Join(defaultEnv, " ")+"); repeatable")
	out := fs.String("out", "", "path of the OCI archive to write")
	entrypoint := fs.String("entrypoint", "", "program the image runs (optional)")
	keepOwners := fs.Bool("keep-owners", false, "keep the numeric owner and group of every file (for a distribution's root file system) instead of making root own everything")
	gz := fs.Bool("gzip", false, "store the layers gzip-compressed")
	layerCache := fs.String("layer-cache", "", "with -gzip: directory that keeps the compressed layers of the last image built with it, so an unchanged layer is not compressed again")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(names) == 0 || len(roots) == 0 || *out == "" || (*entrypoint == "" && fs.NArg() == 0) {
		return fmt.Errorf("usage: e2e-mkimage -name NAME:TAG [-name NAME:TAG...] -rootfs DIR [-rootfs DIR...] -out FILE [-entrypoint PROGRAM] [-env KEY=VALUE...] [-keep-owners] [-gzip [-layer-cache DIR]] [COMMAND ARG...]")
	}
	if *layerCache != "" && !*gz {
		return fmt.Errorf("-layer-cache keeps compressed layers: it needs -gzip")
	}
	img := Image{Name: names[0], ExtraNames: names[1:], Cmd: fs.Args()}
	if *entrypoint != "" {
		img.Entrypoint = []string{*entrypoint}
	}
	if len(env) > 0 {
		var err error
		if img.Env, err = mergeEnv(defaultEnv, env); err != nil {
			return err
		}
	}
	if *layerCache != "" {
		if err := os.MkdirAll(*layerCache, 0o755); err != nil {
			return fmt.Errorf("create layer cache: %w", err)
		}
	}

	for _, root := range roots {
		tarball, err := buildLayerWith(root, layerOptions{KeepOwners: *keepOwners})
		if err != nil {
			return err
		}
		l := uncompressedLayer(tarball)
		if *gz {
			var cached bool
			if l, cached, err = gzipLayer(tarball, *layerCache); err != nil {
				return err
			}
			slog.Info("layer packed", "rootfs", root, "tar_bytes", len(tarball), "gzip_bytes", len(l.Blob), "from_cache", cached)
		}
		img.Layers = append(img.Layers, l)
	}
	digest, err := writeArchiveFile(*out, img)
	if err != nil {
		return err
	}
	if *layerCache != "" {
		if err := pruneLayerCache(*layerCache, img.Layers); err != nil {
			return err
		}
	}
	layerBytes := 0
	for _, l := range img.Layers {
		layerBytes += len(l.Blob)
	}
	slog.Info("image archive written", "path", *out, "image", strings.Join(names, " "), "manifest", digest, "layers", len(img.Layers), "layer_bytes", layerBytes)
	return nil
}
