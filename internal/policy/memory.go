package policy

import (
	"slices"
	"sync"
)

// Memory is a Source held in memory, edited with Set: for benchmarks and
// for programs that feed policies without Kubernetes.
type Memory struct {
	mu      sync.Mutex
	snap    Snapshot
	byKey   map[string]int // namespace/name -> index in snap.Pods
	changed chan struct{}
}

// NewMemory returns an empty, complete source.
func NewMemory() *Memory {
	return &Memory{changed: make(chan struct{}), snap: Snapshot{Namespaces: map[string]map[string]string{}}}
}

// Set edits the snapshot and tells the controller. The edit must replace,
// not modify, what earlier snapshots share (policies, label maps).
func (m *Memory) Set(edit func(*Snapshot)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	edit(&m.snap)
	m.byKey = make(map[string]int, len(m.snap.Pods))
	for i, p := range m.snap.Pods {
		m.byKey[p.key()] = i
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// Snapshot implements Source.
func (m *Memory) Snapshot() (Snapshot, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Snapshot{Policies: slices.Clone(m.snap.Policies), Namespaces: m.snap.Namespaces, Pods: slices.Clone(m.snap.Pods)}, true
}

// Pod implements Source.
func (m *Memory) Pod(namespace, name, _ string) (Pod, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.byKey[namespace+"/"+name]
	if !ok {
		return Pod{}, false
	}
	return m.snap.Pods[i], true
}

// Changed implements Source.
func (m *Memory) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}
