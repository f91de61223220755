package cniserver

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestListenCreatesPrivateSocket(t *testing.T) {
	sock := socketPath(t) // its parent directory does not exist yet
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dirSt, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if dirSt.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", dirSt.Mode().Perm())
	}
	st, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", st.Mode())
	}
	if uid := ownerUID(t, st); uid != os.Geteuid() {
		t.Errorf("socket owned by uid %d, want %d", uid, os.Geteuid())
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(sock), ".cni.sock.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary socket name left behind: %v", err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the socket: %v", err)
	}
	_ = conn.Close()
}

func TestListenRemovesStaleSocket(t *testing.T) {
	sock := socketPath(t)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	// A crashed agent leaves its socket file with nobody listening.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	_ = old.Close()

	ln, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
}

func TestListenRefusesWhenSomeoneListens(t *testing.T) {
	sock := socketPath(t)
	first, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "another ovsnet agent") {
		t.Fatalf("second Listen: %v, want a refusal naming another agent", err)
	}
	// The refused attempt must not have disturbed the first listener.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("first listener broken by the refused second: %v", err)
	}
	_ = conn.Close()

	// A listener that does not use ovsnet's lock (another program).
	other := socketPath(t)
	if err := os.MkdirAll(filepath.Dir(other), 0o700); err != nil {
		t.Fatal(err)
	}
	foreign, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	if _, err := Listen(other); err == nil || !strings.Contains(err.Error(), "another process serves") {
		t.Fatalf("Listen over a live foreign socket: %v", err)
	}
}

func TestListenCloseRemovesSocketAndReleasesLock(t *testing.T) {
	sock := socketPath(t)
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket after Close: %v", err)
	}
	ln2, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen after Close: %v", err)
	}
	_ = ln2.Close()
}

func TestListenRejectsBadPaths(t *testing.T) {
	dir := t.TempDir()
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(notSocket, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{
		"relative":   "run/cni.sock",
		"too long":   "/" + strings.Repeat("x", 120) + "/cni.sock",
		"not socket": notSocket,
	} {
		if ln, err := Listen(p); err == nil {
			_ = ln.Close()
			t.Errorf("%s: Listen(%q) succeeded", name, p)
		}
	}
	if got, _ := os.ReadFile(notSocket); string(got) != "x" {
		t.Error("Listen touched a regular file at the socket path")
	}
}

func ownerUID(t *testing.T, st os.FileInfo) int {
	t.Helper()
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no owner information in %T", st.Sys())
	}
	return int(sys.Uid)
}
