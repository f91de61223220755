package agent

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	resync      prometheus.Histogram
	cniRequests *prometheus.CounterVec
	cniSeconds  *prometheus.HistogramVec
	addPhase    *prometheus.HistogramVec
	policyPass  prometheus.Histogram
}

func newMetrics(a *Agent, reg prometheus.Registerer) *metrics {
	m := &metrics{
		resync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ovsnet_flow_resync_seconds",
			Help:    "Time to install all flows on a new OpenFlow session.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	m.cniRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ovsnet_cni_requests_total",
		Help: "CNI requests served, by verb and result (ok, try-again-later, error).",
	}, []string{"verb", "result"})
	m.cniSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ovsnet_cni_request_seconds",
		Help:    "Time the agent spent on a CNI request, by verb.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"verb"})
	m.addPhase = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ovsnet_pod_add_phase_seconds",
		Help:    "Duration of each phase of a pod ADD (ipam, plumbing, ovsdb, port-ready, flows).",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
	}, []string{"phase"})
	m.policyPass = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ovsnet_policy_pass_seconds",
		Help:    "Time to compute the NetworkPolicy rules of the node's pods and install the flows that changed.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
	})
	reg.MustRegister(m.resync, m.cniRequests, m.cniSeconds, m.addPhase, m.policyPass, newPolicyCollector(a))
	a.handler.metrics = m
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
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ovsnet_pods",
		Help: "Pod interfaces attached to the bridge.",
	}, func() float64 {
		if p := a.podService(); p != nil {
			return float64(len(p.Attachments()))
		}
		return 0
	}))
	return m
}

func (a *Agent) nodeIP() netip.Addr {
	if a.cfg.NodeIP == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(a.cfg.NodeIP)
}
