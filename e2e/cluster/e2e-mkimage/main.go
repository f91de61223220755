// Command e2e-mkimage packs a directory into a single-layer OCI image archive that
// `ctr images import` loads, so the e2e cluster runs its images without any
// registry.
//
//	e2e-mkimage -name ovsnet-e2e.local/pause:1 -rootfs DIR -out pause.tar -entrypoint /pause
//	e2e-mkimage -name ovsnet-e2e.local/busybox:1 -rootfs DIR -out busybox.tar sh
//
// The arguments after the flags are the image's default command, which a
// pod's args replace; -entrypoint, if given, is the program that a pod's
// command replaces. The archive is reproducible: owners, times and walk
// order do not depend on the host.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		slog.Error("e2e-mkimage failed", "err", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("e2e-mkimage", flag.ContinueOnError)
	name := fs.String("name", "", "image reference with a tag, e.g. ovsnet-e2e.local/busybox:1")
	rootfs := fs.String("rootfs", "", "directory that becomes the image's root file system")
	out := fs.String("out", "", "path of the OCI archive to write")
	entrypoint := fs.String("entrypoint", "", "program the image runs (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *rootfs == "" || *out == "" || (*entrypoint == "" && fs.NArg() == 0) {
		return fmt.Errorf("usage: e2e-mkimage -name NAME:TAG -rootfs DIR -out FILE [-entrypoint PROGRAM] [COMMAND ARG...]")
	}
	img := Image{Name: *name, Cmd: fs.Args()}
	if *entrypoint != "" {
		img.Entrypoint = []string{*entrypoint}
	}

	layer, err := buildLayer(*rootfs)
	if err != nil {
		return err
	}
	img.Layer = layer
	digest, err := writeArchiveFile(*out, img)
	if err != nil {
		return err
	}
	slog.Info("image archive written", "path", *out, "image", *name, "manifest", digest, "layer_bytes", len(layer))
	return nil
}
