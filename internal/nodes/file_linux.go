package nodes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Run implements Source: it reads the file, then again on every change of
// its directory, until ctx ends.
func (f *File) Run(ctx context.Context) error {
	dir := filepath.Dir(f.path)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("watch peers file %s: inotify: %w", f.path, err)
	}
	file := os.NewFile(uintptr(fd), "inotify")
	defer file.Close()
	stop := context.AfterFunc(ctx, func() { _ = file.Close() })
	defer stop()
	// Watch the directory, not the file: editors and ConfigMaps replace
	// the file (rename, symlink swap) rather than writing it in place.
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_FROM); err != nil {
		f.reload()
		return fmt.Errorf("watch peers file directory %s (it must exist): %w", dir, err)
	}
	f.reload()
	buf := make([]byte, 64<<10)
	for {
		_, err := file.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("watch peers file %s: %w", f.path, err)
		}
		// Any change in the directory: read again; an unchanged file
		// publishes nothing.
		f.reload()
	}
}
