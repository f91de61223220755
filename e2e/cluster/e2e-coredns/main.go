//go:build ignore

// Command coredns is CoreDNS with the plugins the e2e cluster's Corefile
// uses (and hosts, which a DNS conformance test's own Corefile uses) and
// nothing else, so that its cold build stays a few minutes instead
// of compiling every cloud provider's SDK. cluster/build.sh builds it in a
// module of its own in the cache, against the CoreDNS release named in
// lib.sh. The ignore build tag keeps it out of ovsnet's own module (go
// build, vet and mod tidy skip it); build.sh drops the tag from its copy.
//
// The plugins run in the order of upstream's plugin list; only the ones
// not linked in are left out of it.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

// linked are the plugins imported above, by the name a Corefile uses.
var linked = map[string]bool{
	"bind": true, "cache": true, "errors": true, "forward": true, "health": true,
	"hosts": true, "kubernetes": true, "loadbalance": true, "log": true, "loop": true,
	"prometheus": true, "ready": true, "reload": true, "template": true,
}

func init() {
	// Upstream's order, restricted to what is linked: a Corefile naming
	// another plugin fails to load with "unknown directive".
	var order []string
	for _, d := range dnsserver.Directives {
		if linked[d] {
			order = append(order, d)
		}
	}
	dnsserver.Directives = order
}

func main() {
	coremain.Run()
}
