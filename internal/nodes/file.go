package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"

	"sigs.k8s.io/yaml"
)

// File is a Source reading a peers file: YAML (or JSON) with one entry per
// other node, e.g.
//
//	peers:
//	  - name: node-b
//	    nodeIP: 172.31.213.2
//	    podCIDRs: [10.213.2.0/24]
//
// The file is read at start and again whenever it changes (on Linux an
// inotify watch on its directory, which also sees an atomic rename and a
// Kubernetes ConfigMap update, which swaps a symlink). A missing file means
// no peers. A file that does not parse, or names a field ovsnet does not
// know, is an error that keeps the last good set and is logged and
// reported by Err: a typo must not tear down every route to other nodes.
type File struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	peers   []Peer
	synced  bool
	err     error
	raw     []byte
	changed chan struct{}
}

// fileFormat is the peers file's schema.
type fileFormat struct {
	Peers []Peer `json:"peers"`
}

// NewFile returns a source for the peers file at path.
func NewFile(path string, log *slog.Logger) *File {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &File{path: path, log: log, changed: make(chan struct{})}
}

// Parse decodes a peers file.
func Parse(data []byte) ([]Peer, error) {
	var f fileFormat
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, err
	}
	for i, p := range f.Peers {
		if p.Name == "" {
			return nil, fmt.Errorf("peer %d has no name", i+1)
		}
		for _, c := range p.PodCIDRs {
			if !c.IsValid() {
				return nil, fmt.Errorf("peer %s: empty pod CIDR", p.Name)
			}
		}
	}
	Sort(f.Peers)
	return f.Peers, nil
}

// Peers implements Source.
func (f *File) Peers() ([]Peer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clonePeers(f.peers), f.synced
}

// Changed implements Source.
func (f *File) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Err is why the last read of the file was not used, nil after a good one.
func (f *File) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// reload reads the file and publishes its peers if they changed.
func (f *File) reload() {
	data, err := os.ReadFile(f.path)
	var peers []Peer
	switch {
	case errors.Is(err, os.ErrNotExist):
		data, err = nil, nil
	case err == nil:
		peers, err = Parse(data)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.err == nil || f.err.Error() != err.Error() {
			f.log.Error("peers file not used; keeping the last good one", "path", f.path, "err", err)
		}
		// Until a good read the set stays incomplete, so nothing is torn
		// down on its account.
		f.err = fmt.Errorf("peers file %s: %w", f.path, err)
		return
	}
	f.err = nil
	if f.synced && bytes.Equal(data, f.raw) {
		return
	}
	if f.synced && slices.EqualFunc(peers, f.peers, Peer.Equal) {
		f.raw = data
		return
	}
	f.peers, f.raw, f.synced = peers, data, true
	f.log.Info("peers file read", "path", f.path, "peers", len(peers))
	close(f.changed)
	f.changed = make(chan struct{})
}

func clonePeers(ps []Peer) []Peer {
	out := make([]Peer, len(ps))
	for i, p := range ps {
		out[i] = p
		out[i].PodCIDRs = slices.Clone(p.PodCIDRs)
	}
	return out
}

// Static is a Source with a fixed set of peers (tests, a single node).
type Static struct{ List []Peer }

// Run implements Source.
func (s Static) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// Peers implements Source.
func (s Static) Peers() ([]Peer, bool) { return clonePeers(s.List), true }

// Changed implements Source: a static set never changes.
func (s Static) Changed() <-chan struct{} { return nil }
