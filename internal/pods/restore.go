package pods

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

// Restore rebuilds the attachments when the agent starts, before it serves
// CNI requests, from the two durable records:
//   - OVSDB: every port with ovsnet's external ids is an attachment. When
//     two ports claim one address, the one IPAM records as its owner (else
//     the newer) keeps it; the other is kept without flows, as a conflict
//     CHECK reports, until the runtime deletes it.
//   - IPAM: an address allocated on disk without a port is either an ADD
//     interrupted before its port existed (released), or a running pod
//     whose port was lost with conf.db: when the pod's interface in the
//     recorded namespace is still the one ovsnet made (podnet Check), the
//     attachment is re-adopted and its port re-created by the port restorer.
//
// OVSDB wins a disagreement about an address: it holds what the pod uses.
func (s *Service) Restore(ctx context.Context) error {
	ifaces, err := s.cfg.DB.Interfaces(func(i *vswitch.Interface) bool { return i.ExternalIDs[KeyContainerID] != "" })
	if err != nil {
		return fmt.Errorf("read pod ports from OVSDB: %w", err)
	}
	var found []attachments.Attachment
	for _, iface := range ifaces {
		a, err := fromExternalIDs(iface)
		if err != nil {
			s.log.Error("ignoring an OVS port with unreadable ovsnet external ids; delete it with ovs-vsctl del-port",
				"port", iface.Name, "err", err)
			continue
		}
		found = append(found, a)
	}
	var errs []error
	// Group by address to settle conflicts.
	byIP := map[netip.Addr][]attachments.Attachment{}
	for _, a := range found {
		byIP[a.IP.Addr()] = append(byIP[a.IP.Addr()], a)
	}
	for ip, group := range byIP {
		winner := s.addressOwner(ip, group)
		for i, a := range group {
			if i != winner {
				w := group[winner]
				a.Conflict = fmt.Sprintf("address %s is also held by container %s interface %s (port %s); this attachment gets no flows",
					ip, w.ContainerID, w.IfName, w.HostIfName)
				s.log.Error("two OVS ports claim one pod address; the other keeps it", "ip", ip,
					"port", a.HostIfName, "container", a.ContainerID, "keeps", w.HostIfName, "keeper_container", w.ContainerID)
			} else if err := s.reserveRestored(a); err != nil {
				errs = append(errs, err)
			}
			if _, err := s.store.Restore(a); err != nil {
				errs = append(errs, fmt.Errorf("restore attachment of port %s: %w", a.HostIfName, err))
			}
		}
	}
	adopted := s.adoptFromIPAM(ctx)
	released, err := s.cfg.IPAM.Retain(func(o ipam.Owner) bool { return s.store.Has(keyOf(o.ContainerID, o.IfName)) })
	if err != nil {
		errs = append(errs, err)
	}
	for _, al := range released {
		s.log.Info("released an address with no pod port (left by an interrupted ADD)", "ip", al.IP, "container", al.Owner.ContainerID)
	}
	s.log.Info("pod attachments restored", "from_ovsdb", len(found), "readopted_without_port", adopted,
		"leaked_addresses_released", len(released))
	s.kickRestorer()
	return errors.Join(errs...)
}

// addressOwner picks which of the attachments claiming ip keeps it: the one
// IPAM records, else the newest.
func (s *Service) addressOwner(ip netip.Addr, group []attachments.Attachment) int {
	for i, a := range group {
		if al, ok := s.cfg.IPAM.Lookup(ipamOwner(a.Key)); ok && al.IP == ip {
			return i
		}
	}
	best := 0
	for i, a := range group {
		if cmp.Compare(a.Created.UnixNano(), group[best].Created.UnixNano()) > 0 {
			best = i
		}
	}
	return best
}

// reserveRestored makes IPAM hold a restored attachment's address.
func (s *Service) reserveRestored(a attachments.Attachment) error {
	owner := ipamOwner(a.Key)
	meta := ipam.Meta{PodNamespace: a.Pod.Namespace, PodName: a.Pod.Name, PodUID: a.Pod.UID, Netns: a.Netns, Network: a.Network}
	if al, ok := s.cfg.IPAM.Lookup(owner); ok && al.IP != a.IP.Addr() {
		if _, err := s.cfg.IPAM.Release(owner); err != nil {
			return fmt.Errorf("restore %s: release its stale address %s: %w", a.HostIfName, al.IP, err)
		}
	}
	err := s.cfg.IPAM.Reserve(a.IP.Addr(), owner, meta)
	switch {
	case err == nil:
	case errors.Is(err, ipam.ErrConflict):
		// Another owner holds it on disk without a port (a leaked
		// allocation): the port is the truth.
		for _, al := range s.cfg.IPAM.Allocations() {
			if al.IP == a.IP.Addr() && al.Owner != owner {
				if _, rerr := s.cfg.IPAM.Release(al.Owner); rerr != nil {
					return fmt.Errorf("restore %s: free %s from %s: %w", a.HostIfName, al.IP, al.Owner, rerr)
				}
			}
		}
		if err := s.cfg.IPAM.Reserve(a.IP.Addr(), owner, meta); err != nil {
			return fmt.Errorf("restore %s: reserve %s: %w", a.HostIfName, a.IP, err)
		}
	default:
		s.log.Error("pod address not usable in the current pod CIDR; the pod keeps working until deleted",
			"port", a.HostIfName, "ip", a.IP, "err", err)
	}
	return nil
}

// adoptFromIPAM re-adopts running pods whose OVS port is gone (conf.db lost
// while the agent was down): an allocation with no port whose recorded
// namespace still holds ovsnet's interface for it.
func (s *Service) adoptFromIPAM(ctx context.Context) int {
	n := 0
	for _, al := range s.cfg.IPAM.Allocations() {
		k := keyOf(al.Owner.ContainerID, al.Owner.IfName)
		if s.store.Has(k) || al.Meta.Netns == "" {
			continue
		}
		a := attachments.Attachment{
			Key: k, Network: al.Meta.Network, Netns: al.Meta.Netns,
			Pod:        cniapi.PodRef{Namespace: al.Meta.PodNamespace, Name: al.Meta.PodName, UID: al.Meta.PodUID},
			HostIfName: podnet.HostIfName(k.ContainerID, k.IfName),
			IP:         netipPrefix(al, s.cfg.Network), MAC: podnet.MACFromIP(al.IP), Created: al.Since,
		}
		if err := s.cfg.Plumber.Check(ctx, s.podnetConfig(a)); err != nil {
			continue // not a running pod of ours: the allocation leaked
		}
		if _, err := s.store.Restore(a); err != nil {
			s.log.Warn("cannot re-adopt pod whose OVS port is gone", "container", k.ContainerID, "err", err)
			continue
		}
		s.log.Warn("re-adopted a running pod whose OVS port was lost (conf.db gone?); its port is re-created",
			"container", k.ContainerID, "ifname", k.IfName, "pod", a.Pod.String(), "ip", a.IP)
		n++
	}
	return n
}

func fromExternalIDs(iface vswitch.Interface) (attachments.Attachment, error) {
	ids := iface.ExternalIDs
	ip, err := netip.ParsePrefix(ids[KeyIP])
	if err != nil {
		return attachments.Attachment{}, err
	}
	mac, err := net.ParseMAC(ids[KeyMAC])
	if err != nil {
		return attachments.Attachment{}, err
	}
	if ids[KeyIfName] == "" {
		return attachments.Attachment{}, errors.New("no " + KeyIfName)
	}
	created := time.Time{}
	if sec, err := strconv.ParseInt(ids[KeyCreated], 10, 64); err == nil {
		created = time.Unix(sec, 0)
	}
	return attachments.Attachment{
		Key:     keyOf(ids[KeyContainerID], ids[KeyIfName]),
		Network: ids[KeyNetwork], Netns: ids[KeyNetns],
		Pod:        cniapi.PodRef{Namespace: ids[KeyPodNamespace], Name: ids[KeyPodName], UID: ids[KeyPodUID]},
		HostIfName: iface.Name, IP: ip, MAC: mac, Created: created,
		Port: ports.Existing(iface.Name, iface.UUID),
	}, nil
}

func (s *Service) kickRestorer() {
	select {
	case s.restorerKick <- struct{}{}:
	default:
	}
}

// restorePorts keeps an OVS port for every declared attachment: a port that
// disappears from OVSDB while its attachment lives (ovsdb-server restarted
// on an empty conf.db, someone ran ovs-vsctl del-port) is re-created with
// the same external ids, in the container's turn. It is level-triggered:
// every Interface change names a port to look at, every new OVSDB
// connection (its cache rebuilt from scratch) and every kick means a full
// pass, and a pass that failed is repeated on the next change.
func (s *Service) restorePorts(ctx context.Context) {
	var mu sync.Mutex
	names := map[string]struct{}{}
	wake := make(chan struct{}, 1)
	s.cfg.DB.OnInterfaceChange(func(name string) {
		mu.Lock()
		names[name] = struct{}{}
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	var lastSeq uint64
	full, failing := true, false
	pace := 100 * time.Millisecond
	for ctx.Err() == nil {
		changed := s.cfg.DB.Changed()
		if ok, _ := s.cfg.DB.Connected(); ok {
			if seq := s.cfg.DB.ConnectionSeq(); seq != lastSeq {
				lastSeq, full = seq, true
			}
			var check []attachments.Attachment
			mu.Lock()
			if full || failing {
				check = s.store.List()
			} else {
				for n := range names {
					if a, ok := s.store.ByHostIf(n); ok {
						check = append(check, a)
					}
				}
			}
			clear(names)
			mu.Unlock()
			full = false
			failing = s.restoreMissing(ctx, check) > 0
		}
		if failing {
			// A persistent failure (the bridge is missing until the
			// agent's gate re-creates it) is retried, paced so that it
			// does not spin.
			select {
			case <-time.After(pace):
			case <-ctx.Done():
			}
			pace = min(pace*2, 5*time.Second)
			continue
		}
		pace = 100 * time.Millisecond
		select {
		case <-changed:
		case <-wake:
		case <-s.restorerKick:
			full = true
		case <-ctx.Done():
		}
	}
}

// restoreMissing re-creates the ports of the attachments among check whose
// port is missing from OVSDB, and returns how many it failed to re-create.
func (s *Service) restoreMissing(ctx context.Context, check []attachments.Attachment) int {
	slices.SortFunc(check, func(a, b attachments.Attachment) int { return cmp.Compare(a.HostIfName, b.HostIfName) })
	failed := 0
	for _, a := range check {
		if !portWanted(a) {
			continue
		}
		if _, ok, err := s.cfg.DB.Interface(a.HostIfName); ok || err != nil {
			continue
		}
		err := s.inTurn(ctx, a.ContainerID, func() error {
			cur, ok := s.store.Get(a.Key)
			if !ok || cur.Incarnation != a.Incarnation || !portWanted(cur) {
				return nil
			}
			if _, ok, err := s.cfg.DB.Interface(cur.HostIfName); ok || err != nil {
				return err
			}
			ref := s.cfg.Ports.Expect(cur.HostIfName)
			added, err := s.cfg.DB.AddPort(ctx, s.cfg.Bridge, ovsdb.PortSpec{Name: cur.HostIfName, ExternalIDs: externalIDs(cur)})
			if err != nil {
				return fmt.Errorf("re-create OVS port %s: %w", cur.HostIfName, err)
			}
			ref.InterfaceUUID = added.InterfaceUUID
			_, err = s.store.Update(cur.Key, cur.Incarnation, func(e *attachments.Attachment) { e.Port = ref })
			s.log.Warn("re-created a pod's OVS port that had disappeared from OVSDB", "port", cur.HostIfName,
				"container", cur.ContainerID, "pod", cur.Pod.String())
			return err
		})
		if err != nil && ctx.Err() == nil {
			failed++
			s.log.Warn("cannot re-create a pod's missing OVS port yet", "port", a.HostIfName, "err", err)
		}
	}
	return failed
}

// portWanted: the attachment is declared and not going away, so its OVS
// port must exist.
func portWanted(a attachments.Attachment) bool {
	return a.State == attachments.Plumbed || a.State == attachments.Ready
}
