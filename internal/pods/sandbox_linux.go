package pods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ovsnet/ovsnet/internal/attachments"
)

// WatchSandboxes garbage-collects the attachment of a sandbox whose network
// namespace disappears without a CNI DEL (the runtime crashed, or someone
// removed it by hand): the namespace's bind-mount file is unlinked from its
// directory, which inotify reports. Directories are watched as attachments
// appear in them.
func (s *Service) WatchSandboxes(ctx context.Context) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	stop := context.AfterFunc(ctx, func() { _ = f.Close() })
	defer stop()
	defer f.Close()

	watched := map[string]int{} // dir -> watch descriptor
	dirs := map[int]string{}
	addDirs := func() {
		for _, a := range s.Attachments() {
			if a.Netns == "" {
				continue
			}
			dir := filepath.Dir(a.Netns)
			if _, ok := watched[dir]; ok {
				continue
			}
			wd, err := unix.InotifyAddWatch(fd, dir, unix.IN_DELETE|unix.IN_MOVED_FROM)
			if err != nil {
				s.log.Debug("cannot watch sandbox directory", "dir", dir, "err", err)
				continue
			}
			watched[dir], dirs[wd] = wd, dir
		}
	}
	addDirs()
	// A sandbox may have vanished while the agent was down.
	s.collectVanished(ctx)

	// The reader only decodes; dirs is touched by this goroutine alone.
	type event struct {
		wd   int
		name string
	}
	buf := make([]byte, 64<<10)
	events := make(chan []event)
	readErr := make(chan error, 1)
	go func() {
		for {
			n, err := f.Read(buf)
			if err != nil {
				readErr <- err
				return
			}
			var evs []event
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				end := off + unix.SizeofInotifyEvent + int(ev.Len)
				if end > n {
					break
				}
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:end]), "\x00")
				if name != "" {
					evs = append(evs, event{int(ev.Wd), name})
				}
				off = end
			}
			select {
			case events <- evs:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read inotify: %w", err)
		case evs := <-events:
			set := map[string]bool{}
			for _, ev := range evs {
				if dir, ok := dirs[ev.wd]; ok {
					set[filepath.Join(dir, ev.name)] = true
				}
			}
			if err := s.CollectGarbage(ctx, func(a attachments.Attachment) bool { return !set[a.Netns] }, "sandbox network namespace removed"); err != nil {
				s.log.Warn("garbage collection after sandbox removal incomplete", "err", err)
			}
		case <-s.newAttachment:
			addDirs()
		}
	}
}

// collectVanished removes attachments whose namespace path no longer exists.
func (s *Service) collectVanished(ctx context.Context) {
	err := s.CollectGarbage(ctx, func(a attachments.Attachment) bool {
		if a.Netns == "" || a.Async {
			return true
		}
		_, err := os.Stat(a.Netns)
		return !errors.Is(err, os.ErrNotExist)
	}, "sandbox network namespace gone")
	if err != nil {
		s.log.Warn("garbage collection of vanished sandboxes incomplete", "err", err)
	}
}
