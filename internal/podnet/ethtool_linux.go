package podnet

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is the kernel's struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its union used as a pointer, the form
// SIOCETHTOOL takes. The padding makes it at least as large as the kernel's
// struct ifreq on every architecture, so the kernel never reads past it.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24]byte
}

// ethtoolValueCmd issues one ETHTOOL_G*/S* command carrying a single value on
// the interface ifName in the namespace of socket fd.
func ethtoolValueCmd(fd int, ifName string, cmd, value uint32) (uint32, error) {
	v := &ethtoolValue{cmd: cmd, data: value}
	req := &ifreqData{data: unsafe.Pointer(v)}
	copy(req.name[:unix.IFNAMSIZ-1], ifName)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(req)))
	runtime.KeepAlive(req)
	runtime.KeepAlive(v)
	if errno != 0 {
		return 0, errno
	}
	return v.data, nil
}

// txChecksumEnabled reports whether TX checksum offload is on for ifName.
func txChecksumEnabled(fd int, ifName string) (bool, error) {
	on, err := ethtoolValueCmd(fd, ifName, unix.ETHTOOL_GTXCSUM, 0)
	if err != nil {
		return false, fmt.Errorf("read tx checksum offload (ETHTOOL_GTXCSUM): %w", err)
	}
	return on != 0, nil
}

// disableTxChecksum turns TX checksum offload off for ifName, so the kernel
// computes full checksums before a packet leaves the pod.
func disableTxChecksum(fd int, ifName string) error {
	if _, err := ethtoolValueCmd(fd, ifName, unix.ETHTOOL_STXCSUM, 0); err != nil {
		return fmt.Errorf("turn tx checksum offload off (ETHTOOL_STXCSUM): %w", err)
	}
	return nil
}
