//go:build !linux

package sockwatch

// Watcher reports every creation of one path (not on this platform).
type Watcher struct{}

// New fails with ErrNotSupported on this platform.
func New(string) (*Watcher, error) { return nil, ErrNotSupported }

// C never receives.
func (*Watcher) C() <-chan struct{} { return nil }

// Done never closes.
func (*Watcher) Done() <-chan struct{} { return nil }

// Close does nothing.
func (*Watcher) Close() {}
