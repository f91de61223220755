package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Media types of the OCI image specification that the archive uses. Layers
// are stored uncompressed unless asked otherwise: the e2e images are small
// and import is faster.
const (
	mediaTypeManifest  = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig    = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer     = "application/vnd.oci.image.layer.v1.tar"
	mediaTypeLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// defaultEnv is the environment of an image that sets none.
var defaultEnv = []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}

// Image is what goes into an archive.
type Image struct {
	// Name is the full reference containerd registers, with a tag.
	Name string
	// ExtraNames are more references to the same image (a version tag
	// beside latest, say), each with a tag.
	ExtraNames []string
	// Entrypoint and Cmd make the process a container runs, as in Docker:
	// a pod's command replaces Entrypoint, its args replace Cmd.
	Entrypoint []string
	Cmd        []string
	// Env is the process environment; nil means defaultEnv.
	Env []string
	// Layer is an uncompressed tar of the root file system (see buildLayer)
	// of a single-layer image; Layers, if set, is used instead.
	Layer []byte
	// Layers are the image's layers, bottom first.
	Layers []Layer
}

// Layer is one layer blob as stored in the archive.
type Layer struct {
	MediaType string
	Blob      []byte
	// DiffID is the digest of the uncompressed tar.
	DiffID string
}

func uncompressedLayer(tarball []byte) Layer {
	return Layer{MediaType: mediaTypeLayer, Blob: tarball, DiffID: digestOf(tarball)}
}

// layers returns the image's layers, bottom first.
func (img Image) layers() []Layer {
	if len(img.Layers) > 0 {
		return img.Layers
	}
	return []Layer{uncompressedLayer(img.Layer)}
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type imageConfig struct {
	Architecture string       `json:"architecture"`
	OS           string       `json:"os"`
	Config       runtimeConf  `json:"config"`
	RootFS       rootFS       `json:"rootfs"`
	History      []historyRow `json:"history"`
}

type runtimeConf struct {
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	Env        []string `json:"Env"`
	WorkingDir string   `json:"WorkingDir"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type historyRow struct {
	CreatedBy string `json:"created_by"`
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// splitTag returns the tag of a reference such as host:5000/repo/name:tag.
// A colon before the last slash belongs to a registry port, not a tag.
func splitTag(ref string) (string, error) {
	i := strings.LastIndex(ref, ":")
	if i <= strings.LastIndex(ref, "/") || i == len(ref)-1 || i == 0 {
		return "", fmt.Errorf("image name %q has no tag: give it as NAME:TAG so pods can refer to it without pulling", ref)
	}
	return ref[i+1:], nil
}

// mergeEnv returns base with each KEY=VALUE of set replacing the entry of the
// same key, or appended when base has none.
func mergeEnv(base, set []string) ([]string, error) {
	env := append([]string(nil), base...)
	for _, kv := range set {
		key, _, ok := strings.Cut(kv, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("environment entry %q: want KEY=VALUE", kv)
		}
		replaced := false
		for i, old := range env {
			if strings.HasPrefix(old, key+"=") {
				env[i], replaced = kv, true
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	return env, nil
}

// layerOptions say how a tree becomes a layer.
type layerOptions struct {
	// KeepOwners keeps numeric owners and groups (never names, which are
	// the host's, not the image's); otherwise root owns everything.
	KeepOwners bool
}

// buildLayer tars the tree under root with every owner set to root and every
// time set to the epoch, in lexical order, so equal trees give equal bytes.
func buildLayer(root string) ([]byte, error) {
	return buildLayerWith(root, layerOptions{})
}

// buildLayerWith is buildLayer with options. Files with several links in
// the tree are stored once; the other names become hard links to the first.
func buildLayerWith(root string, opt layerOptions) ([]byte, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("read image root file system: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("image root file system %s is not a directory", root)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	lw := layerWriter{tw: tw, root: root, opt: opt, links: map[fileID]string{}}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return walkErr
		}
		if path == root {
			return nil
		}
		return lw.add(path, d)
	})
	if err != nil {
		return nil, fmt.Errorf("pack %s into an image layer: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("finish image layer: %w", err)
	}
	return buf.Bytes(), nil
}

// fileID identifies a file across its hard links.
type fileID struct{ dev, ino uint64 }

type layerWriter struct {
	tw    *tar.Writer
	root  string
	opt   layerOptions
	links map[fileID]string // first name in the layer of each multiply linked file
}

func (lw *layerWriter) add(path string, d fs.DirEntry) error {
	tw, root := lw.tw, lw.root
	info, err := d.Info()
	if err != nil {
		return err
	}
	link := ""
	switch {
	case info.Mode().IsRegular(), info.IsDir():
	case info.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: only regular files, directories and symlinks can go into an image (mode %s)", path, info.Mode())
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return err
	}
	hdr.Name = filepath.ToSlash(rel)
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	if !lw.opt.KeepOwners {
		hdr.Uid, hdr.Gid = 0, 0
	}
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
	hdr.Format = tar.FormatPAX
	hdr.PAXRecords = nil
	if st, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode().IsRegular() && st.Nlink > 1 {
		id := fileID{uint64(st.Dev), st.Ino}
		if first, seen := lw.links[id]; seen {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			lw.links[id] = hdr.Name
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeArchive writes img as an OCI image layout in a tar stream and returns
// the manifest digest.
func writeArchive(w io.Writer, img Image) (string, error) {
	names := append([]string{img.Name}, img.ExtraNames...)
	tags := make([]string, len(names))
	for i, name := range names {
		var err error
		if tags[i], err = splitTag(name); err != nil {
			return "", err
		}
	}
	if len(img.Entrypoint) == 0 && len(img.Cmd) == 0 {
		return "", fmt.Errorf("image %s needs an entrypoint or a command", img.Name)
	}
	layers := img.layers()
	env := img.Env
	if env == nil {
		env = defaultEnv
	}
	var diffIDs []string
	var layerDescs []descriptor
	var history []historyRow
	for _, l := range layers {
		diffIDs = append(diffIDs, l.DiffID)
		layerDescs = append(layerDescs, descriptor{MediaType: l.MediaType, Digest: digestOf(l.Blob), Size: len(l.Blob)})
		history = append(history, historyRow{CreatedBy: "ovsnet e2e-mkimage"})
	}
	cfg, err := json.Marshal(imageConfig{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config: runtimeConf{
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			Env:        env,
			WorkingDir: "/",
		},
		RootFS:  rootFS{Type: "layers", DiffIDs: diffIDs},
		History: history,
	})
	if err != nil {
		return "", err
	}
	man, err := json.Marshal(manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: digestOf(cfg), Size: len(cfg)},
		Layers:        layerDescs,
	})
	if err != nil {
		return "", err
	}
	manDigest := digestOf(man)
	var manifests []descriptor
	for i, name := range names {
		manifests = append(manifests, descriptor{
			MediaType: mediaTypeManifest,
			Digest:    manDigest,
			Size:      len(man),
			Platform:  &platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{
				// containerd names the imported image after this one.
				"io.containerd.image.name":          name,
				"org.opencontainers.image.ref.name": tags[i],
			},
		})
	}
	idx, err := json.Marshal(index{
		SchemaVersion: 2,
		MediaType:     "application/vnd.oci.image.index.v1+json",
		Manifests:     manifests,
	})
	if err != nil {
		return "", err
	}

	tw := tar.NewWriter(w)
	type file struct {
		name string
		data []byte
	}
	files := []file{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", idx},
	}
	stored := map[string]bool{}
	for i, l := range layers {
		if d := layerDescs[i].Digest; !stored[d] {
			stored[d] = true
			files = append(files, file{blobPath(d), l.Blob})
		}
	}
	files = append(files, file{blobPath(digestOf(cfg)), cfg}, file{blobPath(manDigest), man})
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("write %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("finish image archive: %w", err)
	}
	return manDigest, nil
}

func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

// writeArchiveFile writes the archive next to path and renames it into place,
// so an interrupted build never leaves a truncated archive behind.
func writeArchiveFile(path string, img Image) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("create image archive: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	digest, err := writeArchive(tmp, img)
	if err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write image archive %s: %w", tmp.Name(), err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("write image archive %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("install image archive %s: %w", path, err)
	}
	return digest, nil
}

// gzipLayer compresses an uncompressed layer. With a cache directory, a
// layer compressed before (named by its uncompressed digest, checked
// against it when read) is taken from there instead, and a new one is put
// there. Compression is deterministic: no name or time in the gzip header.
func gzipLayer(tarball []byte, cacheDir string) (l Layer, cached bool, err error) {
	diffID := digestOf(tarball)
	var path string
	if cacheDir != "" {
		path = filepath.Join(cacheDir, strings.TrimPrefix(diffID, "sha256:")+".tar.gz")
		blob, err := os.ReadFile(path)
		switch {
		case err == nil:
			if got, err := gunzipDigest(blob); err == nil && got == diffID {
				return Layer{MediaType: mediaTypeLayerGzip, Blob: blob, DiffID: diffID}, true, nil
			}
			// Damaged: compress it again below, replacing the file.
		case !errors.Is(err, fs.ErrNotExist):
			return Layer{}, false, fmt.Errorf("read cached layer: %w", err)
		}
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(tarball); err != nil {
		return Layer{}, false, fmt.Errorf("compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Layer{}, false, fmt.Errorf("compress layer: %w", err)
	}
	l = Layer{MediaType: mediaTypeLayerGzip, Blob: buf.Bytes(), DiffID: diffID}
	if path != "" {
		if err := writeFileAtomic(path, l.Blob); err != nil {
			return Layer{}, false, fmt.Errorf("store layer in cache %s: %w", cacheDir, err)
		}
	}
	return l, false, nil
}

func gunzipDigest(blob []byte) (string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// pruneLayerCache removes every cached layer but those of keep, so the cache
// holds the layers of the last image built with it.
func pruneLayerCache(dir string, keep []Layer) error {
	want := map[string]bool{}
	for _, l := range keep {
		want[strings.TrimPrefix(l.DiffID, "sha256:")+".tar.gz"] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune layer cache: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tar.gz") && !want[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("prune layer cache: %w", err)
			}
		}
	}
	return nil
}

// writeFileAtomic writes data next to path and renames it into place.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
