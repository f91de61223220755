package ipam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// fileVersion is the format version of the state file.
const fileVersion = 1

// fileState is the JSON layout of a state file.
type fileState struct {
	Version     int          `json:"version"`
	CIDR        netip.Prefix `json:"cidr"`
	Cursor      netip.Addr   `json:"cursor,omitzero"`
	Allocations []Allocation `json:"allocations"`
}

// store reads and atomically writes one state file.
type store struct {
	dir  string
	path string
	// write replaces the file's content; tests swap it to simulate failures.
	write func(path string, data []byte) error
}

func newStore(dir string, v4 bool) *store {
	name := "ipam-v6.json"
	if v4 {
		name = "ipam-v4.json"
	}
	return &store{dir: dir, path: filepath.Join(dir, name), write: atomicWrite}
}

func (s *store) tempPrefix() string { return "." + filepath.Base(s.path) + ".tmp-" }

// removeLeftovers deletes temporary files of writes a crash interrupted; the
// rename never happened, so the real file is intact and they hold nothing of
// value.
func (s *store) removeLeftovers() (int, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read ipam state directory %s: %w", s.dir, err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), s.tempPrefix()) {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, fmt.Errorf("remove leftover ipam temporary file %s: %w", p, err)
		}
		n++
	}
	return n, nil
}

// read returns the stored state; found is false if there is no file yet.
func (s *store) read() (st fileState, found bool, err error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return fileState{}, false, nil
	}
	if err != nil {
		return fileState{}, false, fmt.Errorf("read ipam state %s: %w", s.path, err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return fileState{}, false, s.corrupt(err)
	}
	if st.Version != fileVersion {
		return fileState{}, false, s.corrupt(fmt.Errorf("format version %d, this agent understands %d", st.Version, fileVersion))
	}
	if !st.CIDR.IsValid() {
		return fileState{}, false, s.corrupt(errors.New("no valid cidr"))
	}
	return st, true, nil
}

func (s *store) corrupt(why error) error {
	return fmt.Errorf("ipam state file %s cannot be trusted (%v); ovsnet does not guess which pod addresses are in use: inspect and repair it, or move it aside to start with an empty table (only safe when no pods run on this node), then restart the agent: %w",
		s.path, why, ErrCorrupt)
}

// save writes the state. Allocations are sorted and written one per line, so
// the file diffs and greps well while costing a single compact encoding
// (indenting doubled the encoding time of a 200-pod file).
func (s *store) save(cidr netip.Prefix, cursor netip.Addr, byIP map[netip.Addr]Allocation) error {
	als := make([]Allocation, 0, len(byIP))
	for _, al := range byIP {
		als = append(als, al)
	}
	slices.SortFunc(als, func(x, y Allocation) int { return x.IP.Compare(y.IP) })
	data, err := encodeState(fileState{Version: fileVersion, CIDR: cidr, Cursor: cursor}, als)
	if err != nil {
		return fmt.Errorf("encode ipam state: %w", err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create ipam state directory %s: %w", s.dir, err)
	}
	if err := s.write(s.path, data); err != nil {
		return fmt.Errorf("write ipam state %s: %w", s.path, err)
	}
	return nil
}

// encodeState renders head with als as its allocations, one per line.
func encodeState(head fileState, als []Allocation) ([]byte, error) {
	head.Allocations = []Allocation{}
	h, err := json.Marshal(head)
	if err != nil {
		return nil, err
	}
	// h ends in `"allocations":[]}`; open the array and fill it by hand.
	h = bytes.TrimSuffix(h, []byte("]}"))
	var buf bytes.Buffer
	buf.Grow(len(h) + 160*len(als) + 4)
	buf.Write(h)
	for i, al := range als {
		b, err := json.Marshal(al)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString("\n  ")
		buf.Write(b)
	}
	buf.WriteString("\n]}\n")
	return buf.Bytes(), nil
}

// atomicWrite replaces path with data so that a crash at any point leaves
// either the old or the new content: write a temporary file in the same
// directory, sync it, rename it over path, sync the directory (which makes
// the rename itself durable).
func atomicWrite(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
