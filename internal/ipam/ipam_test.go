package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestAllocator(t testing.TB, cidr, dir string) *Allocator {
	t.Helper()
	a, err := New(Config{CIDR: netip.MustParsePrefix(cidr), StateDir: dir})
	if err != nil {
		t.Fatalf("New(%s): %v", cidr, err)
	}
	return a
}

func owner(i int) Owner { return Owner{ContainerID: fmt.Sprintf("c%04d", i), IfName: "eth0"} }

func mustAllocate(t testing.TB, a *Allocator, o Owner) netip.Addr {
	t.Helper()
	al, err := a.Allocate(o, Meta{PodNamespace: "ns", PodName: o.ContainerID})
	if err != nil {
		t.Fatalf("Allocate(%s): %v", o, err)
	}
	return al.IP
}

func TestRangeExcludesNetworkGatewayBroadcast(t *testing.T) {
	a := newTestAllocator(t, "10.244.0.0/29", t.TempDir())
	if got := a.Gateway(); got != netip.MustParseAddr("10.244.0.1") {
		t.Fatalf("gateway = %s, want 10.244.0.1", got)
	}
	var got []string
	for i := range 5 {
		got = append(got, mustAllocate(t, a, owner(i)).String())
	}
	want := "10.244.0.2 10.244.0.3 10.244.0.4 10.244.0.5 10.244.0.6"
	if strings.Join(got, " ") != want {
		t.Fatalf("allocated %v, want %s", got, want)
	}
	_, err := a.Allocate(owner(99), Meta{})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("sixth Allocate in a /29: err = %v, want ErrExhausted", err)
	}
}

func TestExhaustionMessage(t *testing.T) {
	a := newTestAllocator(t, "10.244.0.0/30", t.TempDir())
	if ip := mustAllocate(t, a, owner(1)); ip != netip.MustParseAddr("10.244.0.2") {
		t.Fatalf("only pod address of a /30 = %s, want 10.244.0.2", ip)
	}
	_, err := a.Allocate(owner(2), Meta{})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("err = %v, want ErrExhausted", err)
	}
	if !strings.Contains(err.Error(), "pod CIDR 10.244.0.0/30 is exhausted: 1 addresses in use") {
		t.Fatalf("exhaustion message %q does not say which CIDR and how many are in use", err)
	}
}

func TestTooSmallOrMalformedCIDR(t *testing.T) {
	for _, c := range []string{"10.244.0.0/31", "10.244.0.0/32", "10.244.0.5/24", "fd00::/127"} {
		if _, err := New(Config{CIDR: netip.MustParsePrefix(c), StateDir: t.TempDir()}); err == nil {
			t.Errorf("New(%s) succeeded, want an error", c)
		}
	}
	if _, err := New(Config{StateDir: t.TempDir()}); err == nil {
		t.Error("New without a CIDR succeeded")
	}
	if _, err := New(Config{CIDR: netip.MustParsePrefix("10.0.0.0/24")}); err == nil {
		t.Error("New without a state directory succeeded")
	}
}

func TestAllocateIsIdempotentPerOwner(t *testing.T) {
	a := newTestAllocator(t, "10.244.0.0/24", t.TempDir())
	first := mustAllocate(t, a, owner(1))
	mustAllocate(t, a, owner(2))
	if again := mustAllocate(t, a, owner(1)); again != first {
		t.Fatalf("second Allocate for the same owner gave %s, first gave %s", again, first)
	}
	other := Owner{ContainerID: owner(1).ContainerID, IfName: "net1"}
	if ip := mustAllocate(t, a, other); ip == first {
		t.Fatalf("another interface of the same container got the same address %s", ip)
	}
	if n := len(a.Allocations()); n != 3 {
		t.Fatalf("%d allocations, want 3", n)
	}
	al, ok := a.Lookup(owner(1))
	if !ok || al.IP != first || al.Meta.PodName != owner(1).ContainerID {
		t.Fatalf("Lookup = %+v, %v", al, ok)
	}
}

func TestOwnerMustBeComplete(t *testing.T) {
	a := newTestAllocator(t, "10.244.0.0/24", t.TempDir())
	for _, o := range []Owner{{}, {ContainerID: "c"}, {IfName: "eth0"}} {
		if _, err := a.Allocate(o, Meta{}); err == nil {
			t.Errorf("Allocate(%+v) succeeded", o)
		}
	}
}

func TestNextFitDoesNotReuseAtOnceButWraps(t *testing.T) {
	a := newTestAllocator(t, "10.244.0.0/29", t.TempDir()) // pods: .2 - .6
	for i := range 3 {
		mustAllocate(t, a, owner(i)) // .2 .3 .4
	}
	if ip, err := a.Release(owner(0)); err != nil || ip != netip.MustParseAddr("10.244.0.2") {
		t.Fatalf("Release = %s, %v", ip, err)
	}
	// Next-fit: .5 and .6 come before the just-released .2.
	for i, want := range []string{"10.244.0.5", "10.244.0.6", "10.244.0.2"} {
		if ip := mustAllocate(t, a, owner(10+i)); ip.String() != want {
			t.Fatalf("allocation %d = %s, want %s", i, ip, want)
		}
	}
	if _, err := a.Allocate(owner(20), Meta{}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("range full: err = %v", err)
	}
	// Release in the middle; the only free address is found by wrapping.
	if _, err := a.Release(owner(1)); err != nil { // .3
		t.Fatal(err)
	}
	if ip := mustAllocate(t, a, owner(21)); ip.String() != "10.244.0.3" {
		t.Fatalf("after wrap got %s, want 10.244.0.3", ip)
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	a := newTestAllocator(t, "10.244.0.0/24", t.TempDir())
	mustAllocate(t, a, owner(1))
	if _, err := a.Release(owner(1)); err != nil {
		t.Fatal(err)
	}
	ip, err := a.Release(owner(1))
	if err != nil || ip.IsValid() {
		t.Fatalf("second Release = %s, %v; want no address, no error", ip, err)
	}
	if ip, err := a.Release(owner(7)); err != nil || ip.IsValid() {
		t.Fatalf("Release of an unknown owner = %s, %v", ip, err)
	}
}

func TestPersistenceAcrossAllocators(t *testing.T) {
	dir := t.TempDir()
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	held := map[netip.Addr]Owner{}
	for i := range 10 {
		held[mustAllocate(t, a, owner(i))] = owner(i)
	}
	if _, err := a.Release(owner(3)); err != nil {
		t.Fatal(err)
	}
	for ip, o := range held {
		if o == owner(3) {
			delete(held, ip)
		}
	}

	// A restarted agent: same directory, new allocator.
	b := newTestAllocator(t, "10.244.0.0/24", dir)
	got := b.Allocations()
	if len(got) != len(held) {
		t.Fatalf("restored %d allocations, want %d", len(got), len(held))
	}
	for _, al := range got {
		if held[al.IP] != al.Owner {
			t.Fatalf("restored %s for %s, want %s", al.IP, al.Owner, held[al.IP])
		}
		if al.Meta.PodNamespace != "ns" || al.Since.IsZero() {
			t.Fatalf("metadata lost: %+v", al)
		}
	}
	// Owners get their old addresses back, new owners never get a held one,
	// and the next-fit cursor survived (the released .5 is not reused first).
	for ip, o := range held {
		if again := mustAllocate(t, b, o); again != ip {
			t.Fatalf("%s got %s after restart, held %s", o, again, ip)
		}
	}
	for i := 100; i < 110; i++ {
		ip := mustAllocate(t, b, owner(i))
		if _, dup := held[ip]; dup {
			t.Fatalf("address %s handed out twice across a restart", ip)
		}
		if ip.String() == "10.244.0.5" {
			t.Fatalf("just-released %s reused immediately after restart", ip)
		}
		held[ip] = owner(i)
	}
}

func TestFailedWriteChangesNothing(t *testing.T) {
	dir := t.TempDir()
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	first := mustAllocate(t, a, owner(1))
	diskFull := errors.New("no space left on device")
	a.store.write = func(string, []byte) error { return diskFull }

	if _, err := a.Allocate(owner(2), Meta{}); !errors.Is(err, diskFull) {
		t.Fatalf("Allocate with a failing disk: err = %v", err)
	}
	if _, err := a.Release(owner(1)); !errors.Is(err, diskFull) {
		t.Fatalf("Release with a failing disk: err = %v", err)
	}
	if got := a.Allocations(); len(got) != 1 || got[0].IP != first {
		t.Fatalf("memory changed by failed writes: %+v", got)
	}
	if _, ok := a.Lookup(owner(2)); ok {
		t.Fatal("owner 2 has an address although the write failed")
	}

	a.store.write = atomicWrite
	second := mustAllocate(t, a, owner(2))
	b := newTestAllocator(t, "10.244.0.0/24", dir)
	if got := b.Allocations(); len(got) != 2 || got[0].IP != first || got[1].IP != second {
		t.Fatalf("disk after recovery: %+v", got)
	}
}

func TestLeftoverTempFileIsIgnoredAndRemoved(t *testing.T) {
	dir := t.TempDir()
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	ip := mustAllocate(t, a, owner(1))

	// A crash between writing the temporary file and the rename leaves both.
	leftover := filepath.Join(dir, ".ipam-v4.json.tmp-12345")
	if err := os.WriteFile(leftover, []byte(`{"version":1,"cidr":"10.244.0.0/24","allocati`), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newTestAllocator(t, "10.244.0.0/24", dir)
	if got := b.Allocations(); len(got) != 1 || got[0].IP != ip {
		t.Fatalf("allocations after crash: %+v", got)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temporary file still there: %v", err)
	}
}

func TestStateFileIsPrivateAndComplete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	mustAllocate(t, a, owner(1))
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "ipam-v4.json"): 0o600} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("state dir holds %d entries, want only the state file", len(entries))
	}
}

func TestCorruptFileIsAClearError(t *testing.T) {
	cases := map[string]string{
		"truncated":        `{"version":1,"cidr":"10.244.0.0/24","allocations":[{"ip":"10.2`,
		"empty":            ``,
		"unknown version":  `{"version":9,"cidr":"10.244.0.0/24","allocations":[]}`,
		"gateway":          `{"version":1,"cidr":"10.244.0.0/24","allocations":[{"ip":"10.244.0.1","owner":{"containerID":"a","ifName":"eth0"}}]}`,
		"outside":          `{"version":1,"cidr":"10.244.0.0/24","allocations":[{"ip":"10.9.0.7","owner":{"containerID":"a","ifName":"eth0"}}]}`,
		"duplicate ip":     `{"version":1,"cidr":"10.244.0.0/24","allocations":[{"ip":"10.244.0.2","owner":{"containerID":"a","ifName":"eth0"}},{"ip":"10.244.0.2","owner":{"containerID":"b","ifName":"eth0"}}]}`,
		"duplicate owner":  `{"version":1,"cidr":"10.244.0.0/24","allocations":[{"ip":"10.244.0.2","owner":{"containerID":"a","ifName":"eth0"}},{"ip":"10.244.0.3","owner":{"containerID":"a","ifName":"eth0"}}]}`,
		"incomplete owner": `{"version":1,"cidr":"10.244.0.0/24","allocations":[{"ip":"10.244.0.2","owner":{"containerID":"a"}}]}`,
		"no cidr":          `{"version":1,"allocations":[]}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ipam-v4.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := New(Config{CIDR: netip.MustParsePrefix("10.244.0.0/24"), StateDir: dir})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it aside") {
				t.Fatalf("error %q does not name the file and what to do", err)
			}
			// Never reset silently: the file is untouched.
			if got, _ := os.ReadFile(path); string(got) != content {
				t.Fatalf("corrupt file was modified to %q", got)
			}
		})
	}
}

func TestChangedCIDR(t *testing.T) {
	dir := t.TempDir()
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	mustAllocate(t, a, owner(1))
	_, err := New(Config{CIDR: netip.MustParsePrefix("10.244.1.0/24"), StateDir: dir})
	if !errors.Is(err, ErrCIDRChanged) || !strings.Contains(err.Error(), "10.244.0.0/24") || !strings.Contains(err.Error(), "10.244.1.0/24") {
		t.Fatalf("err = %v, want ErrCIDRChanged naming both CIDRs", err)
	}

	// Without allocations the new CIDR is adopted.
	if _, err := a.Release(owner(1)); err != nil {
		t.Fatal(err)
	}
	b := newTestAllocator(t, "10.244.1.0/24", dir)
	if ip := mustAllocate(t, b, owner(2)); ip.String() != "10.244.1.2" {
		t.Fatalf("first address of the adopted CIDR = %s", ip)
	}
	c := newTestAllocator(t, "10.244.1.0/24", dir)
	if got := c.Allocations(); len(got) != 1 || got[0].IP.String() != "10.244.1.2" {
		t.Fatalf("adopted CIDR not persisted: %+v", got)
	}
}

func TestRetain(t *testing.T) {
	dir := t.TempDir()
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	for i := range 6 {
		mustAllocate(t, a, owner(i))
	}
	released, err := a.Retain(func(o Owner) bool { return o != owner(1) && o != owner(4) })
	if err != nil {
		t.Fatal(err)
	}
	if len(released) != 2 || released[0].Owner != owner(1) || released[1].Owner != owner(4) {
		t.Fatalf("released %+v, want owners 1 and 4 in address order", released)
	}
	if again, err := a.Retain(func(Owner) bool { return true }); err != nil || len(again) != 0 {
		t.Fatalf("Retain keeping all = %+v, %v", again, err)
	}
	b := newTestAllocator(t, "10.244.0.0/24", dir)
	if n := len(b.Allocations()); n != 4 {
		t.Fatalf("%d allocations on disk after Retain, want 4", n)
	}
	if _, ok := b.Lookup(owner(4)); ok {
		t.Fatal("released owner still on disk")
	}
}

func TestReserve(t *testing.T) {
	dir := t.TempDir()
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	ip := netip.MustParseAddr("10.244.0.77")
	if err := a.Reserve(ip, owner(1), Meta{PodName: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Reserve(ip, owner(1), Meta{}); err != nil {
		t.Fatalf("repeating a reservation: %v", err)
	}
	if err := a.Reserve(ip, owner(2), Meta{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("address of another owner: err = %v", err)
	}
	if err := a.Reserve(netip.MustParseAddr("10.244.0.78"), owner(1), Meta{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("owner with another address: err = %v", err)
	}
	for _, bad := range []string{"10.244.0.0", "10.244.0.1", "10.244.0.255", "10.245.0.7"} {
		if err := a.Reserve(netip.MustParseAddr(bad), owner(3), Meta{}); !errors.Is(err, ErrNotUsable) {
			t.Errorf("Reserve(%s): err = %v, want ErrNotUsable", bad, err)
		}
	}
	if err := a.Reserve(netip.MustParseAddr("::ffff:10.244.0.80"), owner(4), Meta{}); err != nil {
		t.Fatalf("IPv4-mapped address: %v", err)
	}
	if got := mustAllocate(t, a, owner(1)); got != ip {
		t.Fatalf("Allocate after Reserve gave %s, want the reserved %s", got, ip)
	}
	b := newTestAllocator(t, "10.244.0.0/24", dir)
	if al, ok := b.Lookup(owner(1)); !ok || al.IP != ip || al.Meta.PodName != "p" {
		t.Fatalf("reservation not persisted: %+v %v", al, ok)
	}
	// Reserved addresses are skipped by allocation.
	for i := 10; i < 260; i++ {
		got, err := b.Allocate(owner(i), Meta{})
		if errors.Is(err, ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got.IP == ip || got.IP.String() == "10.244.0.80" {
			t.Fatalf("reserved address %s allocated again", got.IP)
		}
	}
}

func TestConcurrentAllocations(t *testing.T) {
	dir := t.TempDir()
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	const n = 64
	var wg sync.WaitGroup
	ips := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			al, err := a.Allocate(owner(i), Meta{})
			// The same owner again, concurrently with the others.
			again, err2 := a.Allocate(owner(i), Meta{})
			if err == nil && err2 == nil && again.IP != al.IP {
				err = fmt.Errorf("owner %d got %s then %s", i, al.IP, again.IP)
			}
			ips[i], errs[i] = al.IP, errors.Join(err, err2)
			if i%2 == 0 {
				_, err := a.Release(owner(i))
				errs[i] = errors.Join(errs[i], err)
			}
		})
	}
	wg.Wait()
	held := map[netip.Addr]int{}
	for i, ip := range ips {
		if errs[i] != nil {
			t.Fatalf("owner %d: %v", i, errs[i])
		}
		if i%2 == 0 {
			continue // released; its address may have gone to another owner
		}
		if j, dup := held[ip]; dup {
			t.Fatalf("owners %d and %d both hold %s", j, i, ip)
		}
		held[ip] = i
		if al, ok := a.Lookup(owner(i)); !ok || al.IP != ip {
			t.Fatalf("Lookup(owner %d) = %+v, %v; Allocate said %s", i, al, ok, ip)
		}
	}
	b := newTestAllocator(t, "10.244.0.0/24", dir)
	if got := len(b.Allocations()); got != n/2 {
		t.Fatalf("%d allocations on disk, want %d", got, n/2)
	}
}

func TestIPv6(t *testing.T) {
	a := newTestAllocator(t, "fd00:10:244::/64", t.TempDir())
	if a.Gateway().String() != "fd00:10:244::1" {
		t.Fatalf("gateway %s", a.Gateway())
	}
	if ip := mustAllocate(t, a, owner(1)); ip.String() != "fd00:10:244::2" {
		t.Fatalf("first IPv6 pod address %s", ip)
	}
	small := newTestAllocator(t, "fd00::/126", t.TempDir())
	mustAllocate(t, small, owner(1))
	if ip := mustAllocate(t, small, owner(2)); ip.String() != "fd00::3" {
		t.Fatalf("last address of a /126 = %s, want fd00::3 (IPv6 has no broadcast)", ip)
	}
	if _, err := small.Allocate(owner(3), Meta{}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("err = %v", err)
	}
	// v4 and v6 allocators share a state directory without interfering.
	dir := t.TempDir()
	v4 := newTestAllocator(t, "10.244.0.0/24", dir)
	v6 := newTestAllocator(t, "fd00::/64", dir)
	mustAllocate(t, v4, owner(1))
	mustAllocate(t, v6, owner(1))
	if len(newTestAllocator(t, "10.244.0.0/24", dir).Allocations()) != 1 || len(newTestAllocator(t, "fd00::/64", dir).Allocations()) != 1 {
		t.Fatal("families interfere in one state directory")
	}
}

func TestSinceUsesInjectedClock(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	a, err := New(Config{CIDR: netip.MustParsePrefix("10.244.0.0/24"), StateDir: t.TempDir(), Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	al, err := a.Allocate(owner(1), Meta{})
	if err != nil || !al.Since.Equal(at) {
		t.Fatalf("Since = %v, %v", al.Since, err)
	}
}

// BenchmarkAllocate measures one persisted allocation (write, fsync, rename,
// directory fsync). The range is recycled off the clock when it runs out.
func BenchmarkAllocate(b *testing.B) {
	a := newTestAllocator(b, "10.244.0.0/22", b.TempDir())
	i := 0
	for b.Loop() {
		if _, err := a.Allocate(owner(i), Meta{PodNamespace: "default", PodName: "p"}); err != nil {
			if !errors.Is(err, ErrExhausted) {
				b.Fatal(err)
			}
			b.StopTimer()
			if _, err := a.Retain(func(Owner) bool { return false }); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		i++
	}
}

// BenchmarkAllocateWith200 measures Allocate plus Release on a node already
// running 200 pods (the file rewritten on each change holds them all).
func BenchmarkAllocateWith200(b *testing.B) {
	a := newTestAllocator(b, "10.244.0.0/24", b.TempDir())
	for i := range 200 {
		if _, err := a.Allocate(owner(i), Meta{PodNamespace: "default", PodName: "p"}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := a.Allocate(owner(1000), Meta{}); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Release(owner(1000)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllocateInMemory is BenchmarkAllocateWith200 without the disk:
// the allocator's own cost, to compare with the fsync-bound figures above.
func BenchmarkAllocateInMemory(b *testing.B) {
	a := newTestAllocator(b, "10.244.0.0/24", b.TempDir())
	a.store.write = func(string, []byte) error { return nil }
	for i := range 200 {
		if _, err := a.Allocate(owner(i), Meta{PodNamespace: "default", PodName: "p"}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := a.Allocate(owner(1000), Meta{}); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Release(owner(1000)); err != nil {
			b.Fatal(err)
		}
	}
}

// Concurrent allocations share writes (a group commit): while one write is
// in progress the others wait for the next one, which carries them all, and
// no Allocate returns before its own address is on disk.
func TestConcurrentAllocationsShareWrites(t *testing.T) {
	dir := t.TempDir()
	a := newTestAllocator(t, "10.244.0.0/24", dir)
	const n = 8
	var mu sync.Mutex
	writes := 0
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	a.store.write = func(path string, data []byte) error {
		mu.Lock()
		writes++
		first := writes == 1
		mu.Unlock()
		if first {
			entered <- struct{}{}
			<-release // hold the first write until every caller is queued
		}
		return atomicWrite(path, data)
	}
	var queued sync.WaitGroup
	queued.Add(n)
	a.flushHook = queued.Done
	var wg sync.WaitGroup
	results := make(chan netip.Addr, n)
	start := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- mustAllocate(t, a, owner(i))
		}()
	}
	start(0)
	<-entered
	for i := 1; i < n; i++ {
		start(i)
	}
	// Every caller has changed memory and queued for the file.
	queued.Wait()
	close(release)
	wg.Wait()
	close(results)
	seen := map[netip.Addr]bool{}
	for ip := range results {
		if seen[ip] {
			t.Fatalf("%s handed out twice", ip)
		}
		seen[ip] = true
	}
	mu.Lock()
	got := writes
	mu.Unlock()
	if got != 2 {
		t.Fatalf("%d writes for %d concurrent allocations, want 2 (the held one and one shared by the rest)", got, n)
	}
	b := newTestAllocator(t, "10.244.0.0/24", dir)
	if len(b.Allocations()) != n {
		t.Fatalf("%d allocations on disk, want %d", len(b.Allocations()), n)
	}
}
