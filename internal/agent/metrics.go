package agent

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	resync prometheus.Histogram
}

func newMetrics(a *Agent, reg prometheus.Registerer) *metrics {
	m := &metrics{
		resync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ovsnet_flow_resync_seconds",
			Help:    "Time to install all flows on a new OpenFlow session.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	reg.MustRegister(m.resync)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ovsnet_openflow_ports",
		Help: "Ports on the integration bridge as seen over OpenFlow.",
	}, func() float64 { return float64(len(a.ports.Ports())) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ovsnet_openflow_sessions_total",
		Help: "OpenFlow sessions established with ovs-vswitchd.",
	}, func() float64 { return float64(a.of.Stats().Sessions) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ovsnet_openflow_port_status_total",
		Help: "PORT_STATUS messages received.",
	}, func() float64 { return float64(a.of.Stats().PortStatus) }))
	if a.pods != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ovsnet_pods",
			Help: "Pod interfaces attached to the bridge.",
		}, func() float64 { return float64(len(a.pods.Attachments())) }))
	}
	return m
}

func (a *Agent) nodeIP() netip.Addr {
	if a.cfg.NodeIP == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(a.cfg.NodeIP)
}
