package pods

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// Attachment is one pod interface on the bridge.
type Attachment struct {
	ContainerID string
	IfName      string
	Netns       string
	Pod         cniapi.PodRef
	HostIfName  string
	IP          netip.Prefix
	MAC         net.HardwareAddr
	Created     time.Time
	// Async: the interface is created after ADD returned.
	Async bool
	// Restored: found in OVSDB when the agent started.
	Restored bool
	// Timeline holds the duration of each ADD phase, in order.
	Timeline []Phase

	ref ports.Ref
	// What this attachment holds, for an exact rollback.
	allocated, ported, plumbed bool

	// observe receives each phase's duration (metrics); set at creation.
	observe func(phase string, d time.Duration)

	mu          sync.Mutex
	hostMACAddr net.HardwareAddr
	bgErr       error
	ready       time.Time
}

// Phase is one step of an ADD.
type Phase struct {
	Name     string
	Duration time.Duration
}

type phaseTimer struct {
	a     *Attachment
	name  string
	start time.Time
}

func (a *Attachment) phase(name string) phaseTimer {
	return phaseTimer{a: a, name: name, start: time.Now()}
}

func (t phaseTimer) end() {
	d := time.Since(t.start)
	t.a.mu.Lock()
	t.a.Timeline = append(t.a.Timeline, Phase{Name: t.name, Duration: d})
	observe := t.a.observe
	t.a.mu.Unlock()
	if observe != nil {
		observe(t.name, d)
	}
}

func (a *Attachment) owner() pipeline.Owner { return pipeline.PodOwner(a.ContainerID, a.IfName) }

func (a *Attachment) externalIDs() map[string]string {
	ids := map[string]string{
		KeyContainerID: a.ContainerID,
		KeyIfName:      a.IfName,
		KeyNetns:       a.Netns,
		KeyIP:          a.IP.String(),
		KeyMAC:         a.MAC.String(),
		KeyCreated:     strconv.FormatInt(a.Created.Unix(), 10),
	}
	if a.Pod.Namespace != "" {
		ids[KeyPodNamespace] = a.Pod.Namespace
		ids[KeyPodName] = a.Pod.Name
	}
	if a.Pod.UID != "" {
		ids[KeyPodUID] = a.Pod.UID
	}
	return ids
}

func (a *Attachment) hostMAC() net.HardwareAddr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hostMACAddr
}

func (a *Attachment) setPlumbed(mac net.HardwareAddr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hostMACAddr = mac
	a.plumbed = true
}

func (a *Attachment) setAsyncErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bgErr = err
}

func (a *Attachment) asyncErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bgErr
}

func (a *Attachment) markReady() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ready.IsZero() {
		a.ready = time.Now()
	}
}

// Info is a copy of an attachment's public state.
type Info struct {
	ContainerID, IfName, Netns string
	Pod                        cniapi.PodRef
	HostIfName                 string
	IP                         netip.Prefix
	MAC                        net.HardwareAddr
	Created                    time.Time
	Async, Restored            bool
	Timeline                   []Phase
	// ReadyAt is when ADD saw the port live and its flows in (zero for
	// asynchronous and restored attachments).
	ReadyAt time.Time
}

// snapshot copies the public fields under the lock.
func (a *Attachment) snapshot() Info {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Info{
		ContainerID: a.ContainerID, IfName: a.IfName, Netns: a.Netns, Pod: a.Pod, HostIfName: a.HostIfName,
		IP: a.IP, MAC: a.MAC, Created: a.Created, Async: a.Async, Restored: a.Restored,
		Timeline: append([]Phase(nil), a.Timeline...), ReadyAt: a.ready,
	}
}
