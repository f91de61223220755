# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this file
# Shared settings and helpers of the ovsnet end-to-end cluster scripts.
# Sourced by build.sh, up.sh and down.sh; never run on its own.

E2E_K8S_VERSION=${E2E_K8S_VERSION:-v1.34.12}
# CoreDNS, the cluster DNS: a release the Go module proxy serves.
E2E_COREDNS_VERSION=${E2E_COREDNS_VERSION:-v1.12.4}
OVSNET_E2E_CACHE=${OVSNET_E2E_CACHE:-/var/cache/ovsnet-e2e}
E2E_LAB=$(realpath -m "${E2E_LAB:-/var/tmp/ovsnet-e2e}")
# Deadline, in seconds, of every wait in up.sh and down.sh.
E2E_TIMEOUT=${E2E_TIMEOUT:-120}

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_REPO=$(cd "$E2E_DIR/../.." && pwd)

K8S_BIN=$OVSNET_E2E_CACHE/k8s-$E2E_K8S_VERSION/bin
IMAGE_DIR=$OVSNET_E2E_CACHE/images
PAUSE_IMAGE=ovsnet-e2e.local/pause:1
BUSYBOX_IMAGE=ovsnet-e2e.local/busybox:1
NETTOOL_IMAGE=ovsnet-e2e.local/nettool:1
COREDNS_IMAGE=ovsnet-e2e.local/coredns:$E2E_COREDNS_VERSION
COREDNS_BIN=$OVSNET_E2E_CACHE/coredns-$E2E_COREDNS_VERSION/coredns
# Kubernetes' e2e.test, ginkgo and the images of its sig-network tests, for
# make conformance (build.sh conformance).
CONFORMANCE_DIR=$OVSNET_E2E_CACHE/conformance-$E2E_K8S_VERSION
# The names Kubernetes' e2e suite gives its images
# (test/utils/image/manifest.go at E2E_K8S_VERSION). The first two are
# built from a Debian root file system with agnhost; the others are the
# local pause and busybox images, tagged with the upstream names when
# imported.
AGNHOST_IMAGE=registry.k8s.io/e2e-test-images/agnhost:2.56
JESSIE_DNSUTILS_IMAGE=registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7
CONFORMANCE_ALIASES=(
	"$BUSYBOX_IMAGE=registry.k8s.io/e2e-test-images/busybox:1.37.0-1"
	"$PAUSE_IMAGE=registry.k8s.io/pause:3.10.1"
)
CONFORMANCE_IMAGES=("$AGNHOST_IMAGE" "$JESSIE_DNSUTILS_IMAGE" "${CONFORMANCE_ALIASES[@]}")

# Layout of the lab directory. Everything the cluster writes lives here,
# except the few fixed host paths listed in FIXED_PATHS. down.sh empties the
# directory only if it carries LAB_MARKER, which up.sh puts in a new or
# empty one, so a mistyped E2E_LAB never costs anyone their files.
LAB_MARKER=$E2E_LAB/.ovsnet-e2e-lab
RUN=$E2E_LAB/run
LOGS=$E2E_LAB/logs
PKI=$E2E_LAB/pki
KUBECONFIG_ADMIN=$E2E_LAB/admin.kubeconfig
CTR_SOCK=$RUN/containerd.sock
CNI_BIN=$E2E_LAB/cni/bin
CNI_CONF=$E2E_LAB/cni/net.d

# The node's address: on an interface of its own (NODE_IFACE, made by
# up.sh, removed by down.sh), so that pods reach the API server, kubelet and
# NodePorts there as they reach a real node's address, while nothing of the
# cluster listens on the machine's own interfaces. kube-apiserver advertises
# it (the kubernetes Service's endpoint), kubelet reports it as the Node's
# InternalIP and serves on it, kube-proxy serves NodePorts on it.
NODE_IP=${E2E_NODE_IP:-172.31.250.1}
NODE_IFACE=${E2E_NODE_IFACE:-e2e-node0}
APISERVER_URL=https://$NODE_IP:6443

# Ports: kube-apiserver and kubelet on NODE_IP, the others on 127.0.0.1.
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
APISERVER_PORT=6443
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
CM_PORT=10257
SCHED_PORT=10259
PROXY_HEALTHZ_PORT=10256
PROXY_METRICS_PORT=10249

CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
SERVICE_APISERVER_IP=10.96.0.1
# The cluster DNS Service (kube-dns in kube-system, served by CoreDNS).
DNS_SERVICE_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local

# Sysctls that kubelet (and the bridge CNI plugin) set; up.sh saves them and
# down.sh puts them back.
# kube-proxy may set route_localnet (localhost NodePorts) and the conntrack
# limits (it is configured not to); the bridge baseline needs
# bridge-nf-call-iptables so that Service replies on the bridge are un-NATed.
SAVED_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward
	net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max
	net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait
	net.bridge.bridge-nf-call-iptables)

# How many nodes, and where they live. The host layout (E2E_NODES=1, the
# default) runs the one node on the machine itself, as described above.
# The netns layout (any E2E_NODES; the default for more than one) gives the
# control plane and every node a network namespace of their own, joined by
# an underlay bridge, and every node a mount namespace of its own with
# per-node directories over the host paths that containerd, kubelet and the
# CNI's DaemonSet use (NODE_HOST_PATHS): e2e/README.md, "More than one node".
E2E_NODES=${E2E_NODES:-1}
E2E_LAYOUT=${E2E_LAYOUT:-}
if [ -z "$E2E_LAYOUT" ]; then
	E2E_LAYOUT=host
	[ "$E2E_NODES" = 1 ] || E2E_LAYOUT=netns
fi

# The netns layout's names and addresses: every namespace, node and
# interface it makes starts with MN_PREFIX (the single-node harness uses
# e2e-node0 and 172.31.250.1, the suite e2ek-*, Go tests ovsnet-* and pn-*;
# none of them starts with it), the underlay is UNDERLAY_PREFIX.0/24, which
# exists only inside those namespaces.
MN_PREFIX=${E2E_NETNS_PREFIX:-e2emn}
CP_NETNS=$MN_PREFIX-cp
UNDERLAY_PREFIX=${E2E_UNDERLAY_PREFIX:-172.31.251}
CP_IP=$UNDERLAY_PREFIX.1
UNDERLAY_BRIDGE=$MN_PREFIX-br
# The node side of each node's underlay veth (inside the node's namespace).
NODE_UPLINK=ul0
# Host-side tools reach the API server in the control plane's namespace
# through this loopback address (e2e-forward).
APISERVER_FORWARD_PORT=${E2E_APISERVER_FORWARD_PORT:-16443}
NODES_DIR=$E2E_LAB/nodes
# The mount namespaces of the nodes are files here: a private bind mount,
# as persistent mount namespaces need.
NS_DIR=$E2E_LAB/ns
# What a node's mount namespace gets from its own directory
# ($NODES_DIR/NODE/host/PATH) instead of the host: the runtime's and
# kubelet's fixed paths, and every hostPath of ovsnet's DaemonSet.
NODE_HOST_PATHS=(/run/containerd /run/netns /run/openvswitch /run/ovsnet /var/lib/kubelet /var/lib/cni
	/var/lib/openvswitch /var/lib/ovsnet /var/log/pods /var/log/containers /var/log/openvswitch
	/etc/cni/net.d /opt/cni/bin /lib/modules)
# The topmost directories of NODE_HOST_PATHS that a host may lack: up.sh
# creates the missing ones as mount points and down.sh removes them again.
NODE_MOUNTPOINT_ROOTS=(/run/containerd /run/openvswitch /run/ovsnet /var/lib/kubelet /var/lib/cni
	/var/lib/openvswitch /var/lib/ovsnet /var/log/pods /var/log/containers /var/log/openvswitch
	/etc/cni /opt/cni /lib/modules)

# node_name I: the name of node I (1, 2, ...) of the netns layout: its
# Kubernetes Node, its network namespace and its cgroup root.
node_name() { echo "$MN_PREFIX-n$1"; }
# node_ip I: its address on the underlay.
node_ip() { echo "$UNDERLAY_PREFIX.$((10 + $1))"; }

# in_node NODE CMD...: CMD in the node's network and mount namespaces (the
# same for every process of the node, so that containerd's and kubelet's
# mounts agree: nsenter, not ip netns exec, which makes a mount namespace
# per command).
in_node() {
	local n=$1
	shift
	nsenter --net="/run/netns/$n" --mount="$NS_DIR/$n" -- "$@"
}

# in_cp CMD...: CMD in the control plane's network namespace.
in_cp() {
	nsenter --net="/run/netns/$CP_NETNS" -- "$@"
}

# node_cmd NODE: sets NODE_CMD to in_node's prefix as a command, for
# start(): a background function would be a subshell whose PID is not the
# component's, while nsenter execs it in place.
node_cmd() {
	NODE_CMD=(nsenter --net="/run/netns/$1" --mount="$NS_DIR/$1" --)
}

# Where the API server listens: on the node address in the host layout; in
# the netns layout on the control plane's underlay address, which the nodes
# and the control plane use, while the admin kubeconfig (host-side tools)
# goes through the loopback forwarder.
if [ "$E2E_LAYOUT" = netns ]; then
	APISERVER_IP=$CP_IP
	APISERVER_URL=https://$CP_IP:$APISERVER_PORT
	ADMIN_APISERVER_URL=https://127.0.0.1:$APISERVER_FORWARD_PORT
else
	APISERVER_IP=$NODE_IP
	ADMIN_APISERVER_URL=$APISERVER_URL
fi

# Host paths that containerd, runc, kubelet or CNI use whatever their
# configuration says. up.sh records which of them already existed; down.sh
# removes only the ones the cluster created.
FIXED_PATHS=(/run/containerd /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni)

_e2e_t0=$(date +%s%N)

# log MSG...: a line on stderr with the seconds since the script started.
log() {
	local now
	now=$(date +%s%N)
	printf '[%7.2fs] %s\n' "$(((now - _e2e_t0) / 1000000))e-3" "$*" >&2
}

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# elapsed_ms: milliseconds since the script started.
elapsed_ms() {
	local now
	now=$(date +%s%N)
	echo $(((now - _e2e_t0) / 1000000))
}

# check_layout: E2E_NODES and E2E_LAYOUT make sense together.
check_layout() {
	case $E2E_NODES in
	'' | *[!0-9]* | 0) die "E2E_NODES=$E2E_NODES: want a number of nodes, 1 or more" ;;
	esac
	[ "$E2E_NODES" -le 200 ] || die "E2E_NODES=$E2E_NODES: at most 200 nodes fit the underlay's addresses"
	case $E2E_LAYOUT in
	host) [ "$E2E_NODES" -eq 1 ] || die "E2E_LAYOUT=host runs the one node on the machine itself; E2E_NODES=$E2E_NODES needs E2E_LAYOUT=netns" ;;
	netns) ;;
	*) die "E2E_LAYOUT=$E2E_LAYOUT: want host (one node, on the machine itself) or netns (nodes in namespaces of their own)" ;;
	esac
}

require_root() {
	[ "$(id -u)" -eq 0 ] || die "$(basename "$0") must run as root: it starts containerd and kubelet and changes host networking"
}

# require_cmds CMD...: fail with the Debian packages to install when a tool is missing.
require_cmds() {
	local c missing=()
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	[ ${#missing[@]} -eq 0 ] || die "missing commands: ${missing[*]}; install them with: apt-get install containerd runc etcd-server iptables conntrack socat busybox-static openssl gettext-base containernetworking-plugins"
}

# is_ours PID WORD: PID runs (a zombie does not count) and its command line
# contains WORD, so a recycled PID never passes for a component.
is_ours() {
	local state
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)
	case $state in Z | X | "") return 1 ;; esac
	tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$2"
}

# pid_alive NAME: the component whose PID is in $RUN/NAME.pid is running.
# NAME is a component (kubelet) or, for a node of the netns layout,
# NODE/component (e2emn-n1/kubelet): the component's name is what its
# command line must contain.
pid_alive() {
	local f=$RUN/$1.pid
	[ -f "$f" ] && is_ours "$(cat "$f")" "${1##*/}"
}

kubectl_admin() {
	"$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"
}

ctr_lab() {
	ctr --address "$CTR_SOCK" --namespace k8s.io "$@"
}
