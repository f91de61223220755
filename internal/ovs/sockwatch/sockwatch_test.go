//go:build linux

package sockwatch_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/sockwatch"
)

func TestSignalsCreationOfThatName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db.sock")
	w, err := sockwatch.New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Another name in the directory is not an event. Nothing else can
	// signal, so a signal seen after the socket below is that socket's.
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-w.C():
	case <-ctx.Done():
		t.Fatal("no signal for the socket's creation")
	}
	select {
	case <-w.C():
		t.Fatal("a second signal with only one creation (the other file signalled?)")
	default:
	}
	// A stale socket replaced by a new one (what a restarted daemon does)
	// signals again.
	ln.Close()
	_ = os.Remove(path)
	ln2, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	select {
	case <-w.C():
	case <-ctx.Done():
		t.Fatal("no signal for the re-created socket")
	}
}

func TestDirectoryRemovedEndsTheWatch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := sockwatch.New(filepath.Join(dir, "x.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-w.Done():
	case <-ctx.Done():
		t.Fatal("watch did not end with its directory")
	}
}

func TestMissingDirectory(t *testing.T) {
	if _, err := sockwatch.New(filepath.Join(t.TempDir(), "nope", "x.sock")); err == nil {
		t.Fatal("watch of a socket in a missing directory succeeded")
	}
	var w *sockwatch.Watcher
	if w.C() != nil || w.Done() != nil {
		t.Fatal("nil watcher has channels")
	}
	w.Close()
}
