package sockwatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watcher reports every creation (or rename into place) of one path.
type Watcher struct {
	f    *os.File
	c    chan struct{}
	done chan struct{}
	once sync.Once
}

// New watches path's directory for path being created. The directory must
// exist.
func New(path string) (*Watcher, error) {
	dir, name := filepath.Split(filepath.Clean(path))
	if dir == "" {
		dir = "."
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch for %s: inotify: %w", path, err)
	}
	// IN_ONLYDIR: a path whose parent is a file fails here, not silently.
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ONLYDIR); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("watch directory %s for %s: %w", dir, name, err)
	}
	// A non-blocking descriptor in an os.File is served by the runtime's
	// poller, so Close unblocks the reader.
	w := &Watcher{f: os.NewFile(uintptr(fd), "inotify"), c: make(chan struct{}, 1), done: make(chan struct{})}
	go w.read(name)
	return w, nil
}

func (w *Watcher) read(name string) {
	defer w.Close()
	buf := make([]byte, 4096)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			end := off + unix.SizeofInotifyEvent + int(ev.Len)
			if end > n {
				break
			}
			if ev.Mask&unix.IN_IGNORED != 0 {
				// The directory went away: this watch is over.
				return
			}
			got := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:end]), "\x00")
			if got == name {
				select {
				case w.c <- struct{}{}:
				default: // one pending signal says it all
				}
			}
			off = end
		}
	}
}

// C receives a value after the path was created; signals are coalesced. A
// nil Watcher's channel never receives.
func (w *Watcher) C() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.c
}

// Done is closed when the watch has ended (Close, or the directory was
// removed): make a new Watcher to go on watching. A nil Watcher's never
// closes.
func (w *Watcher) Done() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.done
}

// Close ends the watch; it is safe to call more than once, and on nil.
func (w *Watcher) Close() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		_ = w.f.Close()
		close(w.done)
	})
}
