package cnitest

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// ARPReplies broadcasts one ARP request for target from ifName in netns
// (with the interface's own MAC and address src) and returns the sender
// MAC of every reply that arrives within wait: more than one means two
// parties answer for the address.
func ARPReplies(ctx context.Context, netns, ifName string, src, target netip.Addr, wait time.Duration) ([]net.HardwareAddr, error) {
	var out []net.HardwareAddr
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		ifc, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		ll := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifc.Index}
		if err := unix.Bind(fd, ll); err != nil {
			return fmt.Errorf("bind to %s: %w", ifName, err)
		}
		frame := make([]byte, 0, 42)
		frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		frame = append(frame, ifc.HardwareAddr...)
		frame = binary.BigEndian.AppendUint16(frame, unix.ETH_P_ARP)
		frame = binary.BigEndian.AppendUint16(frame, 1)      // Ethernet
		frame = binary.BigEndian.AppendUint16(frame, 0x0800) // IPv4
		frame = append(frame, 6, 4)
		frame = binary.BigEndian.AppendUint16(frame, 1) // request
		frame = append(frame, ifc.HardwareAddr...)
		s4, t4 := src.As4(), target.As4()
		frame = append(frame, s4[:]...)
		frame = append(frame, 0, 0, 0, 0, 0, 0)
		frame = append(frame, t4[:]...)
		dst := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		if err := unix.Sendto(fd, frame, 0, dst); err != nil {
			return fmt.Errorf("send ARP request: %w", err)
		}
		deadline := time.Now().Add(wait)
		buf := make([]byte, 1500)
		for {
			left := time.Until(deadline)
			if left <= 0 || ctx.Err() != nil {
				return nil
			}
			tv := unix.NsecToTimeval(left.Nanoseconds())
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return err
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			// An ARP reply (op 2) whose sender address is the target.
			if n >= 42 && binary.BigEndian.Uint16(buf[20:22]) == 2 && netip.AddrFrom4([4]byte(buf[28:32])) == target {
				out = append(out, net.HardwareAddr(append([]byte(nil), buf[22:28]...)))
			}
		}
	})
	return out, err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
