package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Media types of the OCI image specification that the archive uses. The layer
// is stored uncompressed: the images are small and import is faster.
const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// Image is what goes into an archive.
type Image struct {
	// Name is the full reference containerd registers, with a tag.
	Name string
	// Entrypoint and Cmd make the process a container runs, as in Docker:
	// a pod's command replaces Entrypoint, its args replace Cmd.
	Entrypoint []string
	Cmd        []string
	// Layer is an uncompressed tar of the root file system (see buildLayer).
	Layer []byte
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

// buildLayer tars the tree under root with every owner set to root and every
// time set to the epoch, in lexical order, so equal trees give equal bytes.
func buildLayer(root string) ([]byte, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("read image root file system: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("image root file system %s is not a directory", root)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return walkErr
		}
		if path == root {
			return nil
		}
		return addEntry(tw, root, path, d)
	})
	if err != nil {
		return nil, fmt.Errorf("pack %s into an image layer: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("finish image layer: %w", err)
	}
	return buf.Bytes(), nil
}

func addEntry(tw *tar.Writer, root, path string, d fs.DirEntry) error {
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
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
	hdr.Format = tar.FormatPAX
	hdr.PAXRecords = nil
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
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
	tag, err := splitTag(img.Name)
	if err != nil {
		return "", err
	}
	if len(img.Entrypoint) == 0 && len(img.Cmd) == 0 {
		return "", fmt.Errorf("image %s needs an entrypoint or a command", img.Name)
	}
	layerDigest := digestOf(img.Layer)
	cfg, err := json.Marshal(imageConfig{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config: runtimeConf{
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			Env:        []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"},
			WorkingDir: "/",
		},
		// Uncompressed layer: its diff ID is its digest.
		RootFS:  rootFS{Type: "layers", DiffIDs: []string{layerDigest}},
		History: []historyRow{{CreatedBy: "ovsnet e2e-mkimage"}},
	})
	if err != nil {
		return "", err
	}
	man, err := json.Marshal(manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: digestOf(cfg), Size: len(cfg)},
		Layers:        []descriptor{{MediaType: mediaTypeLayer, Digest: layerDigest, Size: len(img.Layer)}},
	})
	if err != nil {
		return "", err
	}
	manDigest := digestOf(man)
	idx, err := json.Marshal(index{
		SchemaVersion: 2,
		MediaType:     "application/vnd.oci.image.index.v1+json",
		Manifests: []descriptor{{
			MediaType: mediaTypeManifest,
			Digest:    manDigest,
			Size:      len(man),
			Platform:  &platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{
				// containerd names the imported image after this one.
				"io.containerd.image.name":          img.Name,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	})
	if err != nil {
		return "", err
	}

	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", idx},
		{blobPath(layerDigest), img.Layer},
		{blobPath(digestOf(cfg)), cfg},
		{blobPath(manDigest), man},
	}
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
