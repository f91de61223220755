package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/testenv"
)

// makeRoot builds a small tree: a directory, an executable, a sticky
// directory and a symlink.
func makeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.Symlink("tool", filepath.Join(root, "bin", "sh")))
	must(os.Mkdir(filepath.Join(root, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky))
	return root
}

func readTar(t *testing.T, b []byte) (map[string]*tar.Header, map[string][]byte, []string) {
	t.Helper()
	headers := map[string]*tar.Header{}
	contents := map[string][]byte{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", hdr.Name, err)
		}
		headers[hdr.Name] = hdr
		contents[hdr.Name] = data
		order = append(order, hdr.Name)
	}
	return headers, contents, order
}

func TestBuildLayerKeepsModesAndLinksAndDropsOwnersAndTimes(t *testing.T) {
	layer, err := buildLayer(makeRoot(t))
	if err != nil {
		t.Fatalf("buildLayer: %v", err)
	}
	headers, contents, order := readTar(t, layer)

	wantOrder := []string{"bin/", "bin/sh", "bin/tool", "tmp/"}
	if strings.Join(order, " ") != strings.Join(wantOrder, " ") {
		t.Fatalf("layer entries %v, want %v", order, wantOrder)
	}
	for name, hdr := range headers {
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s owned by %d:%d (%q:%q), want root", name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		if !hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s mtime %v, want the epoch", name, hdr.ModTime)
		}
	}
	if hdr := headers["bin/tool"]; hdr.Typeflag != tar.TypeReg || hdr.Mode&0o777 != 0o755 {
		t.Errorf("bin/tool: type %c mode %o, want a regular file with mode 755", hdr.Typeflag, hdr.Mode)
	}
	if got := string(contents["bin/tool"]); got != "#!/bin/sh\necho hi\n" {
		t.Errorf("bin/tool content %q", got)
	}
	if hdr := headers["bin/sh"]; hdr.Typeflag != tar.TypeSymlink || hdr.Linkname != "tool" {
		t.Errorf("bin/sh: type %c link %q, want a symlink to tool", hdr.Typeflag, hdr.Linkname)
	}
	if hdr := headers["tmp/"]; hdr.Typeflag != tar.TypeDir || hdr.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp/: type %c mode %o, want a directory with mode 1777", hdr.Typeflag, hdr.Mode)
	}
}

func TestBuildLayerIsReproducible(t *testing.T) {
	root := makeRoot(t)
	first, err := buildLayer(root)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(root, "bin", "tool"), later, later); err != nil {
		t.Fatal(err)
	}
	second, err := buildLayer(root)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("the same tree with other times gave a different layer")
	}
}

func TestBuildLayerRejectsSpecialFiles(t *testing.T) {
	root := t.TempDir()
	fifo := filepath.Join(root, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := buildLayer(root)
	if err == nil || !strings.Contains(err.Error(), fifo) {
		t.Fatalf("buildLayer with a fifo: err %v, want an error naming %s", err, fifo)
	}
}

func TestBuildLayerRejectsMissingRoot(t *testing.T) {
	if _, err := buildLayer(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("buildLayer of a missing directory succeeded")
	}
}

// TestWriteArchiveIsAConsistentOCILayout follows the chain index -> manifest
// -> config and layer, as an importer does, checking every digest and size.
func TestWriteArchiveIsAConsistentOCILayout(t *testing.T) {
	layer, err := buildLayer(makeRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	manDigest, err := writeArchive(&buf, Image{Name: "registry.local:5000/e2e/tool:7", Entrypoint: []string{"/bin/tool"}, Cmd: []string{"-x"}, Layer: layer})
	if err != nil {
		t.Fatalf("writeArchive: %v", err)
	}
	_, files, _ := readTar(t, buf.Bytes())

	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", files["oci-layout"])
	}
	blob := func(d descriptor) []byte {
		t.Helper()
		b, ok := files[blobPath(d.Digest)]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		if digestOf(b) != d.Digest || len(b) != d.Size {
			t.Fatalf("blob %s: digest %s size %d, descriptor says size %d", d.Digest, digestOf(b), len(b), d.Size)
		}
		return b
	}

	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(idx.Manifests))
	}
	md := idx.Manifests[0]
	if md.Digest != manDigest || md.MediaType != mediaTypeManifest {
		t.Errorf("index manifest %s (%s), writeArchive returned %s", md.Digest, md.MediaType, manDigest)
	}
	if md.Annotations["io.containerd.image.name"] != "registry.local:5000/e2e/tool:7" || md.Annotations["org.opencontainers.image.ref.name"] != "7" {
		t.Errorf("index annotations %v", md.Annotations)
	}

	var man manifest
	if err := json.Unmarshal(blob(md), &man); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if len(man.Layers) != 1 || !bytes.Equal(blob(man.Layers[0]), layer) {
		t.Fatal("manifest does not point at the layer")
	}
	var cfg imageConfig
	if err := json.Unmarshal(blob(man.Config), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/bin/tool" || strings.Join(cfg.Config.Cmd, " ") != "-x" {
		t.Errorf("entrypoint %v cmd %v, want [/bin/tool] [-x]", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digestOf(layer) {
		t.Errorf("diff_ids %v, want [%s]", cfg.RootFS.DiffIDs, digestOf(layer))
	}
}

func TestWriteArchiveRejectsNamesWithoutTag(t *testing.T) {
	for _, name := range []string{"busybox", "registry.local:5000/busybox", "busybox:", ":1"} {
		if _, err := writeArchive(io.Discard, Image{Name: name, Entrypoint: []string{"/bin/sh"}}); err == nil {
			t.Errorf("writeArchive accepted image name %q without a tag", name)
		}
	}
}

func TestWriteArchiveRejectsImageWithoutProcess(t *testing.T) {
	if _, err := writeArchive(io.Discard, Image{Name: "e2e/x:1"}); err == nil {
		t.Fatal("writeArchive accepted an image with neither entrypoint nor command")
	}
}

func TestWriteArchiveOmitsUnsetEntrypoint(t *testing.T) {
	var buf bytes.Buffer
	if _, err := writeArchive(&buf, Image{Name: "e2e/x:1", Cmd: []string{"sh"}}); err != nil {
		t.Fatal(err)
	}
	_, files, _ := readTar(t, buf.Bytes())
	for name, b := range files {
		// A null Entrypoint would make runtimes ignore the image's Cmd
		// semantics for pods that set only args.
		if strings.HasPrefix(name, "blobs/") && bytes.Contains(b, []byte(`"Entrypoint"`)) {
			t.Fatalf("config %s has an Entrypoint although none was set: %s", name, b)
		}
	}
}

func TestRunWritesArchiveFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "img.tar")
	if err := run([]string{"-name", "e2e/tool:1", "-rootfs", makeRoot(t), "-out", out, "-entrypoint", "/bin/tool", "--", "-v"}); err != nil {
		t.Fatalf("run: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	_, files, _ := readTar(t, b)
	if _, ok := files["index.json"]; !ok {
		t.Fatal("archive has no index.json")
	}
	left, _ := filepath.Glob(out + ".*.tmp")
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestRunRejectsMissingArguments(t *testing.T) {
	if err := run([]string{"-name", "e2e/tool:1"}); err == nil {
		t.Fatal("run without -rootfs, -out and entrypoint succeeded")
	}
}

func TestBuildLayerStoresHardLinksOnce(t *testing.T) {
	root := makeRoot(t)
	if err := os.Link(filepath.Join(root, "bin", "tool"), filepath.Join(root, "bin", "tool2")); err != nil {
		t.Fatal(err)
	}
	layer, err := buildLayer(root)
	if err != nil {
		t.Fatal(err)
	}
	headers, contents, _ := readTar(t, layer)
	if hdr := headers["bin/tool"]; hdr.Typeflag != tar.TypeReg || string(contents["bin/tool"]) != "#!/bin/sh\necho hi\n" {
		t.Errorf("bin/tool: type %c content %q, want the file", hdr.Typeflag, contents["bin/tool"])
	}
	if hdr := headers["bin/tool2"]; hdr.Typeflag != tar.TypeLink || hdr.Linkname != "bin/tool" || len(contents["bin/tool2"]) != 0 {
		t.Errorf("bin/tool2: type %c link %q, %d bytes, want a hard link to bin/tool", hdr.Typeflag, hdr.Linkname, len(contents["bin/tool2"]))
	}
}

func TestBuildLayerKeepOwnersKeepsNumericIDsOnly(t *testing.T) {
	testenv.RequireRoot(t)
	root := makeRoot(t)
	if err := os.Lchown(filepath.Join(root, "bin", "tool"), 0, 42); err != nil {
		t.Fatal(err)
	}
	layer, err := buildLayerWith(root, layerOptions{KeepOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	headers, _, _ := readTar(t, layer)
	if hdr := headers["bin/tool"]; hdr.Uid != 0 || hdr.Gid != 42 {
		t.Errorf("bin/tool owned by %d:%d, want 0:42", hdr.Uid, hdr.Gid)
	}
	for name, hdr := range headers {
		// Names would be the building host's, not the image's.
		if hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s has owner names %q:%q, want none", name, hdr.Uname, hdr.Gname)
		}
	}
	dropped, err := buildLayer(root)
	if err != nil {
		t.Fatal(err)
	}
	if headers, _, _ := readTar(t, dropped); headers["bin/tool"].Gid != 0 {
		t.Errorf("without KeepOwners bin/tool has group %d, want 0", headers["bin/tool"].Gid)
	}
}

func TestGzipLayerIsDeterministicAndCached(t *testing.T) {
	layer, err := buildLayer(makeRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	first, cached, err := gzipLayer(layer, cache)
	if err != nil || cached {
		t.Fatalf("first gzipLayer: cached %v err %v, want a fresh compression", cached, err)
	}
	if first.MediaType != mediaTypeLayerGzip || first.DiffID != digestOf(layer) {
		t.Errorf("layer %s diff ID %s, want %s and %s", first.MediaType, first.DiffID, mediaTypeLayerGzip, digestOf(layer))
	}
	if got, err := gunzipDigest(first.Blob); err != nil || got != digestOf(layer) {
		t.Fatalf("blob decompresses to %s (%v), want %s", got, err, digestOf(layer))
	}
	uncached, _, err := gzipLayer(layer, "")
	if err != nil || !bytes.Equal(uncached.Blob, first.Blob) {
		t.Fatalf("compressing again gave other bytes (err %v)", err)
	}
	again, cached, err := gzipLayer(layer, cache)
	if err != nil || !cached || !bytes.Equal(again.Blob, first.Blob) {
		t.Fatalf("second gzipLayer: cached %v err %v, want the cached blob", cached, err)
	}

	// A damaged cache entry is replaced, not used.
	entry := filepath.Join(cache, strings.TrimPrefix(first.DiffID, "sha256:")+".tar.gz")
	if err := os.WriteFile(entry, first.Blob[:len(first.Blob)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	mended, cached, err := gzipLayer(layer, cache)
	if err != nil || cached || !bytes.Equal(mended.Blob, first.Blob) {
		t.Fatalf("gzipLayer over a damaged entry: cached %v err %v", cached, err)
	}
	if b, _ := os.ReadFile(entry); !bytes.Equal(b, first.Blob) {
		t.Fatal("damaged cache entry was not rewritten")
	}

	// Pruning keeps only the given layers.
	stale := filepath.Join(cache, strings.Repeat("0", 64)+".tar.gz")
	if err := os.WriteFile(stale, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := pruneLayerCache(cache, []Layer{first}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale cache entry survived pruning: %v", err)
	}
	if _, err := os.Stat(entry); err != nil {
		t.Errorf("used cache entry pruned: %v", err)
	}
}

func TestWriteArchiveWithLayersNamesAndEnv(t *testing.T) {
	base, err := buildLayer(makeRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	top := t.TempDir()
	if err := os.MkdirAll(filepath.Join(top, "usr", "local", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "usr", "local", "bin", "app"), []byte("app"), 0o755); err != nil {
		t.Fatal(err)
	}
	topTar, err := buildLayer(top)
	if err != nil {
		t.Fatal(err)
	}
	zipped, _, err := gzipLayer(topTar, "")
	if err != nil {
		t.Fatal(err)
	}
	env, err := mergeEnv(defaultEnv, []string{"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	manDigest, err := writeArchive(&buf, Image{
		Name: "docker.io/library/app:latest", ExtraNames: []string{"docker.io/library/app:v1"},
		Cmd: []string{"bash"}, Env: env,
		Layers: []Layer{uncompressedLayer(base), zipped},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, files, _ := readTar(t, buf.Bytes())
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want one per name", len(idx.Manifests))
	}
	for i, want := range []string{"docker.io/library/app:latest", "docker.io/library/app:v1"} {
		m := idx.Manifests[i]
		if m.Digest != manDigest || m.Annotations["io.containerd.image.name"] != want {
			t.Errorf("index entry %d: %s named %q, want %s named %q", i, m.Digest, m.Annotations["io.containerd.image.name"], manDigest, want)
		}
	}
	var man manifest
	if err := json.Unmarshal(files[blobPath(manDigest)], &man); err != nil {
		t.Fatal(err)
	}
	if len(man.Layers) != 2 || man.Layers[0].MediaType != mediaTypeLayer || man.Layers[1].MediaType != mediaTypeLayerGzip {
		t.Fatalf("manifest layers %+v, want the tar then the gzip layer", man.Layers)
	}
	if !bytes.Equal(files[blobPath(man.Layers[1].Digest)], zipped.Blob) {
		t.Error("gzip layer blob differs from the compressed layer")
	}
	var cfg imageConfig
	if err := json.Unmarshal(files[blobPath(man.Config.Digest)], &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.RootFS.DiffIDs, " ") != digestOf(base)+" "+digestOf(topTar) {
		t.Errorf("diff_ids %v, want the digests of both uncompressed tars", cfg.RootFS.DiffIDs)
	}
	if len(cfg.History) != 2 {
		t.Errorf("history has %d rows, want one per layer", len(cfg.History))
	}
	if strings.Join(cfg.Config.Env, " ") != "PATH=/usr/local/bin:/usr/bin LANG=C.UTF-8" {
		t.Errorf("env %v", cfg.Config.Env)
	}
}

func TestMergeEnvRejectsEntryWithoutKey(t *testing.T) {
	for _, kv := range []string{"PATH", "=x"} {
		if _, err := mergeEnv(defaultEnv, []string{kv}); err == nil {
			t.Errorf("mergeEnv accepted %q", kv)
		}
	}
}

func TestRunWritesGzipMultiLayerArchiveReproducibly(t *testing.T) {
	dir := t.TempDir()
	base, top := makeRoot(t), makeRoot(t)
	args := func(out string) []string {
		return []string{"-name", "e2e/tool:1", "-name", "e2e/tool:v2", "-rootfs", base, "-rootfs", top,
			"-gzip", "-layer-cache", filepath.Join(dir, "cache"), "-env", "PATH=/usr/local/bin:/bin", "-out", out, "sh"}
	}
	if err := run(args(filepath.Join(dir, "a.tar"))); err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := run(args(filepath.Join(dir, "b.tar"))); err != nil {
		t.Fatalf("run again: %v", err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a.tar"))
	b, _ := os.ReadFile(filepath.Join(dir, "b.tar"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatal("two runs on the same trees gave different archives")
	}
	if err := run([]string{"-name", "e2e/tool:1", "-rootfs", base, "-layer-cache", dir, "-out", filepath.Join(dir, "c.tar"), "sh"}); err == nil {
		t.Fatal("run accepted -layer-cache without -gzip")
	}
}
