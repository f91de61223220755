// Package ipam hands out pod addresses from the node's pod CIDR and keeps the
// allocations on disk, so that no address is ever given to two pods, across
// agent restarts and crashes included.
//
// # Addresses
//
// For a pod CIDR such as 10.244.0.0/24 the first host address (10.244.0.1)
// is the node's gateway and is never given to a pod, nor are the network
// address and, for IPv4, the broadcast address; pods get 10.244.0.2 to
// 10.244.0.254. An IPv4 CIDR must therefore be /30 or larger. IPv6 prefixes
// work the same way (without a broadcast address; the subnet-router anycast
// address, the prefix itself, is excluded) and must be /126 or larger.
//
// Allocation is next-fit: the search starts after the last address handed out
// and wraps around at the end of the range. An address just released is thus
// not reused at once, which keeps stale ARP entries and conntrack state of
// the old pod away from the new one, while wrap-around still reuses released
// addresses when the range is full.
//
// # Owners
//
// An allocation belongs to an Owner, the CNI attachment (container id and
// interface name). Allocate is idempotent per owner: a retried CNI ADD gets
// the address it got before. Release is idempotent too. Meta (pod namespace
// and name) is stored beside for operators; ipam does not interpret it.
//
// # Persistence
//
// The allocations of one address family live in one JSON file in the state
// directory (ipam-v4.json, ipam-v6.json). Every change is written before the
// call returns: a temporary file in the same directory is written and synced,
// renamed over the old one and the directory synced. A crash leaves either
// the old or the new file, never a mix; leftover temporary files are removed
// at start. A file that cannot be read or fails validation is an error naming
// the file: ovsnet never guesses which addresses are in use and never resets
// the table silently.
//
// # A changed pod CIDR
//
// The file records the CIDR it was written for. If New is given a different
// CIDR of the same family and the file still holds allocations, New fails:
// the node's pods were addressed from the old CIDR, and mixing the two would
// route traffic wrongly. Drain the node, then remove the file (or move it
// aside) and restart the agent. If the file holds no allocations, the new
// CIDR is adopted and the change is logged.
//
// # Cost
//
// Allocate and Release are dominated by the two fsyncs of a persisted change
// (see BenchmarkAllocate). An Allocator serialises changes with one mutex;
// it is safe for concurrent use.
package ipam

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// DefaultStateDir is the default of the agent's --state-dir flag.
const DefaultStateDir = "/var/lib/ovsnet"

// Errors callers can test with errors.Is.
var (
	// ErrExhausted: every usable address of the pod CIDR is allocated.
	ErrExhausted = errors.New("pod CIDR exhausted")
	// ErrConflict: Reserve found the address or the owner bound otherwise.
	ErrConflict = errors.New("allocation conflict")
	// ErrNotUsable: the address is outside the pod CIDR or is one pods never
	// get (network, gateway, broadcast).
	ErrNotUsable = errors.New("address not usable for pods")
	// ErrCorrupt: the state file cannot be trusted.
	ErrCorrupt = errors.New("ipam state file corrupt")
	// ErrCIDRChanged: the state file holds allocations from another CIDR.
	ErrCIDRChanged = errors.New("pod CIDR changed")
)

// Owner is the CNI attachment an address belongs to.
type Owner struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

func (o Owner) String() string { return o.ContainerID + "/" + o.IfName }

func (o Owner) validate() error {
	if o.ContainerID == "" || o.IfName == "" {
		return fmt.Errorf("ipam owner %q needs both a container id and an interface name", o.String())
	}
	return nil
}

// Meta is stored with an allocation for operators and for the agent's
// restore (the netns lets it re-adopt a running pod whose OVS port was lost
// with conf.db); ipam does not use it.
type Meta struct {
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	PodUID       string `json:"podUID,omitempty"`
	Netns        string `json:"netns,omitempty"`
	Network      string `json:"network,omitempty"`
}

// Allocation is one address and whom it belongs to.
type Allocation struct {
	IP    netip.Addr `json:"ip"`
	Owner Owner      `json:"owner"`
	Meta  Meta       `json:"meta,omitzero"`
	// Since is when the address was allocated or reserved.
	Since time.Time `json:"since"`
}

// Config configures an Allocator.
type Config struct {
	// CIDR is the node's pod CIDR, e.g. 10.244.0.0/24. Host bits must be zero.
	CIDR netip.Prefix
	// StateDir holds the state file (flag --state-dir, DefaultStateDir). It
	// is created with mode 0700 if missing.
	StateDir string
	// Log receives notable events (a CIDR adopted, leftovers removed). Nil
	// discards them.
	Log *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Allocator hands out addresses of one pod CIDR. Create it with New.
type Allocator struct {
	cidr    netip.Prefix
	gateway netip.Addr
	first   netip.Addr // first address pods may get
	last    netip.Addr // last address pods may get
	usable  uint64     // number of addresses pods may get (saturated)
	store   *store
	log     *slog.Logger
	now     func() time.Time

	// saveMu serialises writes of the state file; it is taken before mu.
	// Allocate changes memory under mu alone and then joins a group commit
	// (flush): concurrent allocations share one fsync instead of queueing
	// for one each. Memory is ahead of disk only for allocations whose
	// Allocate has not returned yet.
	saveMu   sync.Mutex
	savedGen uint64 // gen of the state on disk; guarded by saveMu
	mu       sync.Mutex
	gen      uint64 // bumped by every change of the in-memory state
	// flushHook, set by tests only, runs when an allocation joins a flush.
	flushHook func()
	byIP      map[netip.Addr]Allocation
	byOwn     map[Owner]netip.Addr
	cursor    netip.Addr // last address handed out; the search starts after it
}

// New loads or creates the state for cfg.CIDR in cfg.StateDir.
func New(cfg Config) (*Allocator, error) {
	a, err := newRange(cfg.CIDR)
	if err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		return nil, errors.New("ipam needs a state directory (--state-dir)")
	}
	a.log = cfg.Log
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.now = cfg.Now
	if a.now == nil {
		a.now = time.Now
	}
	a.store = newStore(cfg.StateDir, a.cidr.Addr().Is4())
	if err := a.load(); err != nil {
		return nil, err
	}
	return a, nil
}

// newRange computes the usable range of cidr.
func newRange(cidr netip.Prefix) (*Allocator, error) {
	if !cidr.IsValid() {
		return nil, errors.New("ipam needs a valid pod CIDR")
	}
	if cidr.Addr().Is4In6() {
		return nil, fmt.Errorf("pod CIDR %s is an IPv4-mapped IPv6 prefix; give it as IPv4", cidr)
	}
	if cidr.Masked() != cidr {
		return nil, fmt.Errorf("pod CIDR %s has host bits set; did you mean %s?", cidr, cidr.Masked())
	}
	hostBits := cidr.Addr().BitLen() - cidr.Bits()
	if hostBits < 2 {
		return nil, fmt.Errorf("pod CIDR %s is too small: it needs room for the network address, the gateway and at least one pod (use /%d or larger)", cidr, cidr.Addr().BitLen()-2)
	}
	network := cidr.Addr()
	gw := network.Next()
	lastAddr := lastAddress(cidr)
	first := gw.Next()
	last := lastAddr
	usable := saturatingSize(hostBits) - 2 // network and gateway
	if network.Is4() {
		last = lastAddr.Prev() // broadcast
		usable--
	}
	return &Allocator{
		cidr:    cidr,
		gateway: gw,
		first:   first,
		last:    last,
		usable:  usable,
		byIP:    make(map[netip.Addr]Allocation),
		byOwn:   make(map[Owner]netip.Addr),
	}, nil
}

// saturatingSize returns 2^bits, capped at MaxUint64.
func saturatingSize(bits int) uint64 {
	if bits >= 64 {
		return math.MaxUint64
	}
	return 1 << bits
}

func lastAddress(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	n := new(big.Int).SetBytes(b)
	hostBits := p.Addr().BitLen() - p.Bits()
	mask := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(hostBits)), big.NewInt(1))
	n.Or(n, mask)
	out := make([]byte, len(b))
	n.FillBytes(out)
	a, _ := netip.AddrFromSlice(out)
	return a
}

// CIDR returns the pod CIDR.
func (a *Allocator) CIDR() netip.Prefix { return a.cidr }

// Gateway returns the gateway address (the first host address).
func (a *Allocator) Gateway() netip.Addr { return a.gateway }

// Usable reports whether pods may get ip.
func (a *Allocator) Usable(ip netip.Addr) bool {
	return a.cidr.Contains(ip) && ip.Compare(a.first) >= 0 && ip.Compare(a.last) <= 0
}

// Allocate returns owner's address, allocating the next free one if owner
// has none. The allocation is on disk when Allocate returns.
func (a *Allocator) Allocate(owner Owner, meta Meta) (Allocation, error) {
	if err := owner.validate(); err != nil {
		return Allocation{}, err
	}
	a.mu.Lock()
	if ip, ok := a.byOwn[owner]; ok {
		al := a.byIP[ip]
		my := a.gen
		a.mu.Unlock()
		// It may be another call's allocation still on its way to disk.
		if err := a.flush(my); err != nil {
			return Allocation{}, fmt.Errorf("allocate %s for %s: %w", ip, owner, err)
		}
		return al, nil
	}
	if uint64(len(a.byIP)) >= a.usable {
		a.mu.Unlock()
		return Allocation{}, a.exhausted()
	}
	ip, ok := a.nextFree()
	if !ok {
		a.mu.Unlock()
		return Allocation{}, a.exhausted()
	}
	al := Allocation{IP: ip, Owner: owner, Meta: meta, Since: a.now().UTC()}
	a.byIP[ip], a.byOwn[owner] = al, ip
	prevCursor := a.cursor
	a.cursor = ip
	a.gen++
	my := a.gen
	a.mu.Unlock()

	if err := a.flush(my); err != nil {
		// Undo in memory what did not reach the disk, unless something has
		// already replaced it.
		a.mu.Lock()
		if cur, ok := a.byIP[ip]; ok && cur == al {
			delete(a.byIP, ip)
			delete(a.byOwn, owner)
			if a.cursor == ip {
				a.cursor = prevCursor
			}
			a.gen++
		}
		a.mu.Unlock()
		return Allocation{}, fmt.Errorf("allocate %s for %s: %w", ip, owner, err)
	}
	return al, nil
}

// flush writes the in-memory state to disk unless a write that already
// contains generation my has happened: the first of a group of concurrent
// callers writes for all of them.
func (a *Allocator) flush(my uint64) error {
	if a.flushHook != nil {
		a.flushHook()
	}
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	if a.savedGen >= my {
		return nil
	}
	a.mu.Lock()
	byIP := make(map[netip.Addr]Allocation, len(a.byIP))
	for k, v := range a.byIP {
		byIP[k] = v
	}
	cidr, cursor, gen := a.cidr, a.cursor, a.gen
	a.mu.Unlock()
	if err := a.store.save(cidr, cursor, byIP); err != nil {
		return err
	}
	a.savedGen = gen
	return nil
}

// Exhausted returns a non-nil error, wrapping ErrExhausted, when no address
// is left for a new pod.
func (a *Allocator) Exhausted() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if uint64(len(a.byIP)) >= a.usable {
		return a.exhausted()
	}
	return nil
}

func (a *Allocator) exhausted() error {
	return fmt.Errorf("pod CIDR %s is exhausted: %d addresses in use, %d usable (gateway %s reserved); release stale pods (CNI DEL or GC) or give the node a larger pod CIDR: %w",
		a.cidr, len(a.byIP), a.usable, a.gateway, ErrExhausted)
}

// nextFree finds the first free address after the cursor, wrapping around.
// The caller has checked that one exists.
func (a *Allocator) nextFree() (netip.Addr, bool) {
	start := a.first
	if a.cursor.IsValid() && a.Usable(a.cursor) && a.cursor != a.last {
		start = a.cursor.Next()
	}
	// At most len(byIP)+1 probes: every occupied address is passed once.
	ip := start
	for range len(a.byIP) + 1 {
		if _, used := a.byIP[ip]; !used {
			return ip, true
		}
		if ip == a.last {
			ip = a.first
		} else {
			ip = ip.Next()
		}
	}
	return netip.Addr{}, false
}

// Lookup returns owner's allocation, if any.
func (a *Allocator) Lookup(owner Owner) (Allocation, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.byOwn[owner]
	if !ok {
		return Allocation{}, false
	}
	return a.byIP[ip], true
}

// Release frees owner's address and reports it; releasing an owner without
// an address does nothing and is not an error.
func (a *Allocator) Release(owner Owner) (netip.Addr, error) {
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.byOwn[owner]
	if !ok {
		return netip.Addr{}, nil
	}
	if err := a.commit(func(s *snapshot) { s.remove(ip) }); err != nil {
		return netip.Addr{}, fmt.Errorf("release %s of %s: %w", ip, owner, err)
	}
	return ip, nil
}

// Allocations lists the allocations in address order.
func (a *Allocator) Allocations() []Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sortedLocked()
}

func (a *Allocator) sortedLocked() []Allocation {
	out := make([]Allocation, 0, len(a.byIP))
	for _, al := range a.byIP {
		out = append(out, al)
	}
	slices.SortFunc(out, func(x, y Allocation) int { return x.IP.Compare(y.IP) })
	return out
}

// Retain keeps the allocations whose owner keep accepts and releases the
// others in one write (CNI GC and the agent's periodic clean-up). It returns
// what it released, in address order.
func (a *Allocator) Retain(keep func(Owner) bool) ([]Allocation, error) {
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	var drop []Allocation
	for _, al := range a.sortedLocked() {
		if !keep(al.Owner) {
			drop = append(drop, al)
		}
	}
	if len(drop) == 0 {
		return nil, nil
	}
	if err := a.commit(func(s *snapshot) {
		for _, al := range drop {
			s.remove(al.IP)
		}
	}); err != nil {
		return nil, fmt.Errorf("release %d stale allocations: %w", len(drop), err)
	}
	return drop, nil
}

// Reserve records that owner holds ip, as found outside ipam (the agent
// imports the addresses of existing pod ports from OVSDB at start, so disk
// and OVSDB agree). It is a no-op if the allocation already exists. It fails
// with ErrNotUsable for an address pods never get, and with ErrConflict if
// ip belongs to another owner or owner holds another address; the caller
// decides which side is right and may Release and Reserve again.
func (a *Allocator) Reserve(ip netip.Addr, owner Owner, meta Meta) error {
	if err := owner.validate(); err != nil {
		return err
	}
	ip = ip.Unmap()
	if !a.Usable(ip) {
		return fmt.Errorf("reserve %s for %s: not a pod address of %s (gateway %s): %w", ip, owner, a.cidr, a.gateway, ErrNotUsable)
	}
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.byIP[ip]; ok {
		if cur.Owner == owner {
			return nil
		}
		return fmt.Errorf("reserve %s for %s: it belongs to %s (pod %s/%s) since %s: %w",
			ip, owner, cur.Owner, cur.Meta.PodNamespace, cur.Meta.PodName, cur.Since.Format(time.RFC3339), ErrConflict)
	}
	if other, ok := a.byOwn[owner]; ok {
		return fmt.Errorf("reserve %s for %s: the owner already holds %s: %w", ip, owner, other, ErrConflict)
	}
	al := Allocation{IP: ip, Owner: owner, Meta: meta, Since: a.now().UTC()}
	if err := a.commit(func(s *snapshot) { s.put(al) }); err != nil {
		return fmt.Errorf("reserve %s for %s: %w", ip, owner, err)
	}
	return nil
}

// snapshot is the state being changed by commit.
type snapshot struct {
	byIP   map[netip.Addr]Allocation
	cursor netip.Addr
}

func (s *snapshot) put(al Allocation) { s.byIP[al.IP] = al }
func (s *snapshot) remove(ip netip.Addr) {
	delete(s.byIP, ip)
}

// commit applies change to a copy of the state, writes the copy and only then
// makes it current, so a failed write leaves memory and disk unchanged. The
// caller holds saveMu and mu.
func (a *Allocator) commit(change func(*snapshot)) error {
	s := &snapshot{byIP: make(map[netip.Addr]Allocation, len(a.byIP)+1), cursor: a.cursor}
	for k, v := range a.byIP {
		s.byIP[k] = v
	}
	change(s)
	if err := a.store.save(a.cidr, s.cursor, s.byIP); err != nil {
		return err
	}
	a.install(s)
	a.gen++
	a.savedGen = a.gen
	return nil
}

func (a *Allocator) install(s *snapshot) {
	a.byIP = s.byIP
	a.byOwn = make(map[Owner]netip.Addr, len(s.byIP))
	for ip, al := range s.byIP {
		a.byOwn[al.Owner] = ip
	}
	a.cursor = s.cursor
}

// load reads the state file, validates it against the range, and creates it
// when missing so that an unwritable state directory fails at start rather
// than at the first pod.
func (a *Allocator) load() error {
	if n, err := a.store.removeLeftovers(); err != nil {
		return err
	} else if n > 0 {
		a.log.Info("removed leftover temporary ipam files from an interrupted write", "dir", a.store.dir, "count", n)
	}
	st, found, err := a.store.read()
	if err != nil {
		return err
	}
	if !found {
		return a.commit(func(*snapshot) {})
	}
	if st.CIDR != a.cidr {
		if len(st.Allocations) > 0 {
			return fmt.Errorf("%s was written for pod CIDR %s and holds %d allocations, but the node's pod CIDR is now %s; drain the node, then remove or move aside %s and restart the agent: %w",
				a.store.path, st.CIDR, len(st.Allocations), a.cidr, a.store.path, ErrCIDRChanged)
		}
		a.log.Warn("pod CIDR changed; adopting the new one (no allocations were recorded)", "file", a.store.path, "old", st.CIDR, "new", a.cidr)
		return a.commit(func(*snapshot) {})
	}
	s := &snapshot{byIP: make(map[netip.Addr]Allocation, len(st.Allocations))}
	owners := make(map[Owner]netip.Addr, len(st.Allocations))
	for i, al := range st.Allocations {
		bad := func(why string) error {
			return a.store.corrupt(fmt.Errorf("allocation %d (%s for %s): %s", i, al.IP, al.Owner, why))
		}
		switch {
		case !al.IP.IsValid():
			return bad("no address")
		case !a.Usable(al.IP):
			return bad("not a pod address of " + a.cidr.String())
		case al.Owner.validate() != nil:
			return bad("incomplete owner")
		}
		if _, dup := s.byIP[al.IP]; dup {
			return bad("address listed twice")
		}
		if prev, dup := owners[al.Owner]; dup {
			return bad("owner also holds " + prev.String())
		}
		s.byIP[al.IP] = al
		owners[al.Owner] = al.IP
	}
	if st.Cursor.IsValid() && a.Usable(st.Cursor) {
		s.cursor = st.Cursor
	}
	a.install(s)
	return nil
}
