package pods

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
)

// Restore rebuilds the attachments from OVSDB, where they outlive the
// agent, and makes IPAM agree: an address recorded on a port is reserved for
// it; an address allocated on disk with no port (a crash before the port was
// added) is released. Call it once, before serving CNI requests.
func (s *Service) Restore(ctx context.Context) error {
	ifaces, err := s.cfg.DB.Interfaces(func(i *vswitch.Interface) bool { return i.ExternalIDs[KeyContainerID] != "" })
	if err != nil {
		return err
	}
	var errs []error
	for _, iface := range ifaces {
		a, err := fromExternalIDs(iface)
		if err != nil {
			s.log.Error("ignoring an OVS port with unreadable ovsnet external ids; delete it with ovs-vsctl del-port",
				"port", iface.Name, "err", err)
			continue
		}
		owner := ipam.Owner{ContainerID: a.ContainerID, IfName: a.IfName}
		meta := ipam.Meta{PodNamespace: a.Pod.Namespace, PodName: a.Pod.Name}
		if al, ok := s.cfg.IPAM.Lookup(owner); ok && al.IP != a.IP.Addr() {
			// OVSDB holds what the pod really uses.
			if _, err := s.cfg.IPAM.Release(owner); err != nil {
				errs = append(errs, err)
			}
		}
		if err := s.cfg.IPAM.Reserve(a.IP.Addr(), owner, meta); err != nil && !errors.Is(err, ipam.ErrConflict) {
			s.log.Error("pod address not usable in the current pod CIDR; the pod keeps working until deleted",
				"port", iface.Name, "ip", a.IP, "err", err)
		} else if err != nil {
			s.log.Error("pod address is held by another attachment in the IPAM state", "port", iface.Name, "ip", a.IP, "err", err)
		}
		s.register(a)
	}
	released, err := s.cfg.IPAM.Retain(func(o ipam.Owner) bool { return s.lookup(o.ContainerID, o.IfName) != nil })
	if err != nil {
		errs = append(errs, err)
	}
	for _, al := range released {
		s.log.Info("released an address with no pod port (left by an interrupted ADD)", "ip", al.IP, "container", al.Owner.ContainerID)
	}
	s.log.Info("pod attachments restored from OVSDB", "attachments", len(ifaces), "leaked_addresses_released", len(released))
	return errors.Join(errs...)
}

func fromExternalIDs(iface vswitch.Interface) (*Attachment, error) {
	ids := iface.ExternalIDs
	ip, err := netip.ParsePrefix(ids[KeyIP])
	if err != nil {
		return nil, err
	}
	mac, err := net.ParseMAC(ids[KeyMAC])
	if err != nil {
		return nil, err
	}
	if ids[KeyIfName] == "" {
		return nil, errors.New("no " + KeyIfName)
	}
	created := time.Time{}
	if sec, err := strconv.ParseInt(ids[KeyCreated], 10, 64); err == nil {
		created = time.Unix(sec, 0)
	}
	return &Attachment{
		ContainerID: ids[KeyContainerID], IfName: ids[KeyIfName], Netns: ids[KeyNetns],
		Pod:        cniapi.PodRef{Namespace: ids[KeyPodNamespace], Name: ids[KeyPodName], UID: ids[KeyPodUID]},
		HostIfName: iface.Name, IP: ip, MAC: mac, Created: created, Restored: true,
		ref: ports.Existing(iface.Name, iface.UUID), allocated: true, ported: true, plumbed: true,
	}, nil
}
