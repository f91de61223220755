package cniserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket address can hold
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Listen creates the agent's CNI socket at path, safely:
//   - the parent directory is created with mode 0700 if missing (an existing
//     directory is left as it is: it may be a host mount shared with others);
//   - an exclusive lock on path+".lock" is taken for the listener's lifetime,
//     so two agents never fight over the socket; Listen fails if another
//     agent holds it;
//   - an existing socket file is removed only if nobody accepts connections
//     on it (a leftover of a crashed agent); anything else at path, or a live
//     listener, is an error;
//   - the socket is bound under a temporary name, set to mode 0600 (owner:
//     the agent's user, root in production), then renamed into place, so no
//     client ever sees it with wider permissions.
//
// Closing the listener removes the socket file unless another process has
// replaced it since, and releases the lock.
func Listen(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("CNI socket path %q is not absolute; pass an absolute --cni-socket", path)
	}
	path = filepath.Clean(path)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("CNI socket path %q is longer than %d bytes, the limit of unix socket addresses; choose a shorter --cni-socket", path, maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CNI socket directory %s: %w", dir, err)
	}

	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	ln, err := listenLocked(path)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	return ln.withLock(lock), nil
}

func lockFile(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open CNI socket lock %s: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another ovsnet agent holds %s and serves the CNI socket; stop it first or give this agent another --cni-socket", name)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return f, nil
}

func listenLocked(path string) (*socketListener, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if len(tmp) > maxSocketPath {
		return nil, fmt.Errorf("CNI socket path %q leaves no room for its temporary name (limit %d bytes); choose a shorter --cni-socket", path, maxSocketPath)
	}
	// We hold the lock, so a leftover temporary socket is ours from a crash.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove leftover %s: %w", tmp, err)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", tmp, err)
	}
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (*socketListener, error) {
		_ = ul.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(fmt.Errorf("restrict CNI socket %s to its owner: %w", tmp, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("move CNI socket into place at %s: %w", path, err))
	}
	st, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("stat CNI socket %s: %w", path, err))
	}
	return &socketListener{UnixListener: ul, path: path, file: st}, nil
}

// removeStaleSocket clears path if it is a socket nobody listens on.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect CNI socket path %s: %w", path, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket (%s); remove it or choose another --cni-socket", path, st.Mode().Type())
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = conn.Close()
		return fmt.Errorf("another process serves the CNI socket %s; stop it before starting this agent", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether the CNI socket %s is in use (%w); remove it by hand if no agent runs", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale CNI socket %s: %w", path, err)
	}
	return nil
}

// socketListener removes its socket file and releases the lock on Close.
type socketListener struct {
	*net.UnixListener
	path string
	file os.FileInfo // the socket as created, to recognise it on Close

	once sync.Once
	lock *os.File
	err  error
}

func (l *socketListener) withLock(lock *os.File) *socketListener {
	l.lock = lock
	return l
}

func (l *socketListener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		// Remove the file only if it is still ours: a successor may already
		// have replaced it (it cannot while we hold the lock, but an operator
		// can).
		if st, err := os.Lstat(l.path); err == nil && os.SameFile(st, l.file) {
			_ = os.Remove(l.path)
		}
		if l.lock != nil {
			_ = l.lock.Close()
		}
	})
	return l.err
}
