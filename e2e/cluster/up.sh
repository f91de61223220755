#!/usr/bin/env bash
# Starts a Kubernetes cluster for the ovsnet end-to-end tests: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, and per node
# containerd, kubelet and kube-proxy, with a pluggable CNI, and CoreDNS as
# the cluster DNS.
#
# With one node (E2E_NODES=1, the host layout) the node is the machine
# itself: kube-apiserver and kubelet listen on the node's address, on an
# interface of the cluster's own (e2e-node0, 172.31.250.1); everything else
# on 127.0.0.1 or unix sockets under $E2E_LAB. With E2E_NODES=N (the netns
# layout) the control plane and every node run in network namespaces of
# their own joined by an underlay bridge (172.31.251.0/24), every node also
# in a mount namespace of its own, and host-side tools reach the API server
# through 127.0.0.1:16443. See e2e/README.md for the variables, the hooks
# and their order.
# On success the admin kubeconfig is $E2E_LAB/admin.kubeconfig and
# $E2E_LAB/cluster.env holds what tests need (source it).
# On failure it prints the logs of what broke and runs down.sh, unless
# E2E_KEEP_ON_FAILURE=1.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=SCRIPTDIR/components.sh
. "$E2E_DIR/components.sh"
# shellcheck source=SCRIPTDIR/nodes.sh
. "$E2E_DIR/nodes.sh"

E2E_CNI=${E2E_CNI:-bridge}
case $E2E_CNI in
bridge)
	E2E_CNI_BIN_DIR=${E2E_CNI_BIN_DIR:-/usr/lib/cni}
	E2E_CNI_CONFLIST=${E2E_CNI_CONFLIST:-$E2E_DIR/cni/bridge.conflist}
	E2E_CNI_PLUGINS=${E2E_CNI_PLUGINS:-bridge host-local}
	;;
custom)
	# Empty for a CNI whose DaemonSet installs its binaries and conflist.
	E2E_CNI_BIN_DIR=${E2E_CNI_BIN_DIR:-}
	E2E_CNI_CONFLIST=${E2E_CNI_CONFLIST:-}
	[ -n "$E2E_CNI_BIN_DIR" ] || [ -z "$E2E_CNI_CONFLIST" ] ||
		die "E2E_CNI=custom with a conflist needs E2E_CNI_BIN_DIR, the directory of the CNI plugin binaries to install"
	# Every executable of the directory.
	E2E_CNI_PLUGINS=${E2E_CNI_PLUGINS:-}
	;;
*)
	die "E2E_CNI=$E2E_CNI: want bridge (reference plugins) or custom (E2E_CNI_BIN_DIR, E2E_CNI_CONFLIST and hooks)"
	;;
esac
E2E_BEFORE_KUBELET=${E2E_BEFORE_KUBELET:-}
E2E_AFTER_NODE=${E2E_AFTER_NODE:-}
# Once, when every node has registered with its pod CIDR, before the nodes
# must be Ready: where a CNI's DaemonSet is applied.
E2E_AFTER_NODES=${E2E_AFTER_NODES:-}
# Pods of the CNI itself (a label selector): down.sh deletes every other pod
# first, so that their CNI DEL still finds the CNI's agent.
E2E_CNI_POD_SELECTOR=${E2E_CNI_POD_SELECTOR:-}
# down.sh may run from another directory.
E2E_AFTER_DOWN=${E2E_AFTER_DOWN:+$(realpath "$E2E_AFTER_DOWN")}
E2E_KEEP_ON_FAILURE=${E2E_KEEP_ON_FAILURE:-0}
# Reference plugins from Debian's containernetworking-plugins installed
# beside the CNI's own: loopback (containerd sets up every pod's lo with it)
# and portmap (hostPort, chained after the CNI in its conflist).
E2E_CNI_REFERENCE_PLUGINS=${E2E_CNI_REFERENCE_PLUGINS:-loopback portmap}
E2E_PROXY_MODE=${E2E_PROXY_MODE:-iptables}
case $E2E_PROXY_MODE in
iptables | nftables) ;;
*) die "E2E_PROXY_MODE=$E2E_PROXY_MODE: want iptables or nftables" ;;
esac
# More images to import (OCI archives), and NAME=ALIAS pairs to tag after
# the import: make conformance brings Kubernetes' test images this way.
E2E_EXTRA_IMAGES=${E2E_EXTRA_IMAGES:-}
E2E_IMAGE_ALIASES=${E2E_IMAGE_ALIASES:-}
NODE_NAME=$(echo "${E2E_NODE_NAME:-$(hostname)}" | tr '[:upper:]' '[:lower:]')
[ "$E2E_LAYOUT" = host ] || NODE_NAME=$(node_name 1)

up_done=0

on_exit() {
	local rc=$? name
	[ "$up_done" = 1 ] && return
	echo "up.sh failed (exit $rc); component logs are in $LOGS" >&2
	for name in "${STARTED[@]}"; do
		if ! pid_alive "$name"; then
			echo "--- $name is not running; last lines of $LOGS/$name.log:" >&2
			tail -n 25 "$LOGS/$name.log" >&2 || true
		fi
	done
	if [ "$E2E_KEEP_ON_FAILURE" = 1 ]; then
		echo "E2E_KEEP_ON_FAILURE=1: leaving the cluster as it is; run $E2E_DIR/down.sh to clean up" >&2
	else
		"$E2E_DIR/down.sh" >&2 || echo "down.sh failed too; run it again" >&2
	fi
}
preflight() {
	require_root
	check_layout
	require_cmds containerd containerd-shim-runc-v2 runc ctr etcd openssl envsubst iptables ip ss timeout conntrack busybox
	[ "$E2E_PROXY_MODE" != nftables ] || require_cmds nft
	if pid_alive kube-apiserver || pid_alive kubelet || pid_alive containerd || pid_alive etcd; then
		die "a cluster is already running in $E2E_LAB; stop it with $E2E_DIR/down.sh first"
	fi
	if [ -e "$E2E_LAB" ] && [ ! -f "$LAB_MARKER" ] && [ -n "$(ls -A "$E2E_LAB")" ]; then
		die "E2E_LAB=$E2E_LAB is not empty and was not made by up.sh; choose a new or empty directory"
	fi
	if [ -d "$RUN" ]; then
		log "leftovers of an earlier run in $E2E_LAB: cleaning them with down.sh"
		"$E2E_DIR/down.sh"
	fi
	if [ "$E2E_LAYOUT" = host ]; then
		preflight_host
	else
		preflight_netns
	fi
	local p
	for p in $E2E_CNI_REFERENCE_PLUGINS; do
		[ -f "${E2E_CNI_BIN_DIR:-/usr/lib/cni}/$p" ] || [ -f "/usr/lib/cni/$p" ] ||
			die "the $p CNI plugin is in neither ${E2E_CNI_BIN_DIR:-/usr/lib/cni} nor /usr/lib/cni; install containernetworking-plugins"
	done
	[ -z "$E2E_CNI_CONFLIST" ] || [ -f "$E2E_CNI_CONFLIST" ] || die "E2E_CNI_CONFLIST=$E2E_CNI_CONFLIST does not exist"
	local hook
	for hook in E2E_BEFORE_KUBELET E2E_AFTER_NODE E2E_AFTER_NODES E2E_AFTER_DOWN; do
		[ -z "${!hook}" ] || [ -x "${!hook}" ] || die "$hook=${!hook} is not an executable file"
	done
}

preflight_host() {
	local port owner
	for port in $ETCD_CLIENT_PORT $ETCD_PEER_PORT $APISERVER_PORT $KUBELET_PORT $KUBELET_HEALTHZ_PORT $CM_PORT $SCHED_PORT \
		$PROXY_HEALTHZ_PORT $PROXY_METRICS_PORT; do
		owner=$(ss -Hltnp "sport = :$port" 2>/dev/null)
		[ -z "$owner" ] || die "TCP port $port is in use ($owner); the e2e cluster needs it"
	done
	# The node address must be the cluster's alone: a host that already has
	# it would be cut off from whatever it reaches there, and down.sh would
	# take it away.
	owner=$(ip -o -4 addr show to "$NODE_IP/32" 2>/dev/null | awk '{print $2}')
	[ -z "$owner" ] || die "the node address $NODE_IP is already on interface $owner; set E2E_NODE_IP to a private address this host does not use"
	! ip link show "$NODE_IFACE" >/dev/null 2>&1 ||
		die "interface $NODE_IFACE exists already; remove it (ip link del $NODE_IFACE) or set E2E_NODE_IFACE"
	owner=$(ip -o -4 route show match "$NODE_IP" 2>/dev/null | awk '$1 != "default"' | head -n 1)
	[ -z "$owner" ] || die "the node address $NODE_IP is inside a network this host already routes ($owner); set E2E_NODE_IP to a private address outside it"
}

# preflight_netns: nothing of the netns layout's names is taken. The
# cluster's own ports are inside its namespaces; only the forwarder's is on
# the host.
preflight_netns() {
	local n owner
	require_cmds nsenter unshare stat ethtool
	[ "$E2E_CNI" = custom ] || [ "$E2E_NODES" -eq 1 ] ||
		die "E2E_CNI=bridge runs on one node only: the bridge plugin has no routes between nodes (use E2E_CNI=custom, ovsnet)"
	for n in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		case $n in "$MN_PREFIX"-*) die "network namespace $n exists: another cluster of the netns layout runs, or a killed one left it; run $E2E_DIR/down.sh (with its E2E_LAB) or ip netns del $n" ;; esac
	done
	for n in /sys/fs/cgroup/"$MN_PREFIX"-* /sys/fs/cgroup/*/"$MN_PREFIX"-*; do
		[ ! -e "$n" ] || die "cgroup $n exists: another cluster of the netns layout runs, or a killed one left it; stop it first"
	done
	owner=$(ss -Hltnp "sport = :$APISERVER_FORWARD_PORT" 2>/dev/null)
	[ -z "$owner" ] || die "TCP port $APISERVER_FORWARD_PORT is in use ($owner); the API server's loopback forwarder needs it (E2E_APISERVER_FORWARD_PORT chooses another)"
	local sock
	sock="$NODES_DIR/$(node_name "$E2E_NODES")/host/run/openvswitch/br-int.mgmt"
	[ ${#sock} -le 100 ] || die "E2E_LAB=$E2E_LAB is too long for the nodes' unix sockets ($sock); choose a shorter path"
}

# save_host_state records what down.sh must restore or may remove, once:
# after a failed run the first record, taken before any change, stays.
save_host_state() {
	local k v p ipt t
	mkdir -p "$RUN"
	if [ ! -f "$RUN/layout" ]; then
		echo "$E2E_LAYOUT" >"$RUN/layout"
	fi
	if [ ! -f "$RUN/sysctl.saved" ]; then
		for k in "${SAVED_SYSCTLS[@]}"; do
			# A key the kernel lacks (no bridge netfilter) is nobody's to restore.
			v=$(sysctl -n "$k" 2>/dev/null) && echo "$k=$v"
		done >"$RUN/sysctl.saved.tmp"
		mv "$RUN/sysctl.saved.tmp" "$RUN/sysctl.saved"
	fi
	if [ ! -f "$RUN/paths.saved" ]; then
		for p in "${FIXED_PATHS[@]}" "${NODE_MOUNTPOINT_ROOTS[@]}"; do
			[ ! -e "$p" ] || echo "$p"
		done | sort -u >"$RUN/paths.saved.tmp"
		mv "$RUN/paths.saved.tmp" "$RUN/paths.saved"
	fi
	if [ ! -f "$RUN/chains.saved" ]; then
		for ipt in iptables ip6tables; do
			for t in filter nat mangle raw; do
				"$ipt" -t "$t" -S 2>/dev/null | awk -v ipt="$ipt" -v t="$t" '$1 == "-N" {print ipt, t, $2}'
			done
		done >"$RUN/chains.saved.tmp"
		mv "$RUN/chains.saved.tmp" "$RUN/chains.saved"
	fi
	if [ ! -f "$RUN/nft-tables.saved" ] && command -v nft >/dev/null; then
		nft list tables >"$RUN/nft-tables.saved.tmp" 2>/dev/null || true
		mv "$RUN/nft-tables.saved.tmp" "$RUN/nft-tables.saved"
	fi
}

# make_pki: a throw-away CA and one certificate per component (kubelets of
# the netns layout get theirs as their node is made). EC keys make this
# take well under a second.
make_pki() {
	mkdir -p "$PKI"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-keyout "$PKI/ca.key" -subj "/CN=ovsnet-e2e-ca" -out "$PKI/ca.crt" 2>/dev/null
	chmod 600 "$PKI/ca.key"
	gen_cert apiserver "/CN=kube-apiserver" serverAuth \
		"DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$APISERVER_IP,IP:$SERVICE_APISERVER_IP"
	gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
	gen_cert admin "/O=system:masters/CN=ovsnet-e2e-admin" clientAuth
	if [ "$E2E_LAYOUT" = host ]; then
		gen_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth,clientAuth \
			"DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
		write_kubeconfig "$PKI/kubelet.kubeconfig" kubelet
	fi
	gen_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
	gen_cert scheduler "/CN=system:kube-scheduler" clientAuth
	# The user the default ClusterRoleBinding system:node-proxier names.
	gen_cert kube-proxy "/CN=system:kube-proxy" clientAuth
	# Service account tokens are signed with an ES256 key.
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key"
	openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	chmod 600 "$PKI"/*.key
	write_kubeconfig "$KUBECONFIG_ADMIN" admin "$ADMIN_APISERVER_URL"
	write_kubeconfig "$PKI/controller-manager.kubeconfig" controller-manager
	write_kubeconfig "$PKI/scheduler.kubeconfig" scheduler
	write_kubeconfig "$PKI/kube-proxy.kubeconfig" kube-proxy
}

# CP: how the control plane's processes start: on the host, or in the
# control plane's network namespace.
CP=()
[ "$E2E_LAYOUT" = host ] || CP=(nsenter --net="/run/netns/$CP_NETNS" --)

start_etcd() {
	start etcd "${CP[@]}" etcd --name ovsnet-e2e --data-dir "$E2E_LAB/etcd" --logger zap \
		--listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "ovsnet-e2e=http://127.0.0.1:$ETCD_PEER_PORT"
}

# node_address: the node's address on an interface of its own. A dummy
# device where the kernel has the driver; otherwise an ifb device, which
# holds an address just as well (neither sends anything anywhere).
node_address() {
	ip link add "$NODE_IFACE" type dummy 2>/dev/null || ip link add "$NODE_IFACE" type ifb ||
		die "cannot create interface $NODE_IFACE (neither the dummy nor the ifb driver is available)"
	# down.sh removes the interface only when this record says it is ours.
	echo "$NODE_IFACE" >"$RUN/node-iface"
	ip addr add "$NODE_IP/32" dev "$NODE_IFACE"
	ip link set "$NODE_IFACE" up
	log "node address $NODE_IP on $NODE_IFACE ($(ip -d -o link show "$NODE_IFACE" | grep -oE ' (dummy|ifb) ' | tr -d ' '))"
}

start_apiserver() {
	# Bound to and advertised on the node address (host layout) or the
	# control plane's (netns layout): the default (lease) endpoint
	# reconciler publishes it as the endpoint of Service default/kubernetes,
	# which pods reach through its ClusterIP.
	start kube-apiserver "${CP[@]}" "$K8S_BIN/kube-apiserver" \
		--bind-address="$APISERVER_IP" --secure-port="$APISERVER_PORT" --advertise-address="$APISERVER_IP" \
		--etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--api-audiences=https://kubernetes.default.svc.cluster.local \
		--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--allow-privileged=true --profiling=false
}

# start_forwarder: host-side tools' way to the API server of the netns
# layout, 127.0.0.1:APISERVER_FORWARD_PORT (the admin kubeconfig's).
start_forwarder() {
	local bin=$E2E_LAB/bin/e2e-forward
	mkdir -p "$E2E_LAB/bin"
	(cd "$E2E_REPO" && GOFLAGS=-mod=readonly go build -buildvcs=false -o "$bin" ./e2e/cluster/e2e-forward) ||
		die "cannot build e2e/cluster/e2e-forward (output above)"
	start e2e-forward "$bin" -listen "127.0.0.1:$APISERVER_FORWARD_PORT" -netns "/run/netns/$CP_NETNS" \
		-to "$APISERVER_IP:$APISERVER_PORT"
}

start_containerd() {
	mkdir -p "$E2E_LAB/containerd" "$CNI_BIN" "$CNI_CONF"
	# Pod network namespaces under the state directory, not /var/run/netns.
	write_containerd_config "$E2E_LAB/containerd/config.toml" "$E2E_LAB/containerd" "$CTR_SOCK" "$CNI_BIN" "$CNI_CONF" true "$RUN/runc"
	start containerd containerd --config "$E2E_LAB/containerd/config.toml"
}

start_controllers() {
	start kube-controller-manager "${CP[@]}" "$K8S_BIN/kube-controller-manager" \
		--kubeconfig="$PKI/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$PKI/controller-manager.kubeconfig" --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port="$CM_PORT" \
		--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
		--use-service-account-credentials=true \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--leader-elect=false --controllers='*,-cloud-node-lifecycle'
	start kube-scheduler "${CP[@]}" "$K8S_BIN/kube-scheduler" \
		--kubeconfig="$PKI/scheduler.kubeconfig" \
		--authentication-kubeconfig="$PKI/scheduler.kubeconfig" --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --leader-elect=false
}

start_kubelet() {
	mkdir -p "$E2E_LAB/kubelet/root" "$E2E_LAB/kubelet/pod-logs"
	write_kubelet_config "$E2E_LAB/kubelet/config.yaml" "$NODE_IP" kubelet "$CTR_SOCK" "$E2E_LAB/kubelet/pod-logs"
	start kubelet "$K8S_BIN/kubelet" --config="$E2E_LAB/kubelet/config.yaml" \
		--kubeconfig="$PKI/kubelet.kubeconfig" \
		--root-dir="$E2E_LAB/kubelet/root" --cert-dir="$E2E_LAB/kubelet/pki" \
		--hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=2
}

# start_kube_proxy: kube-proxy as a host process (see e2e/README.md for why
# not a DaemonSet).
start_kube_proxy() {
	mkdir -p "$E2E_LAB/kube-proxy"
	write_kube_proxy_config "$E2E_LAB/kube-proxy/config.yaml" "$PKI/kube-proxy.kubeconfig" "$NODE_NAME"
	start kube-proxy "$K8S_BIN/kube-proxy" --config="$E2E_LAB/kube-proxy/config.yaml" --v=2
}

# start_coredns: the cluster DNS as users deploy it: a Deployment of CoreDNS
# behind Service kube-dns in kube-system, with the image built by build.sh.
start_coredns() {
	# shellcheck disable=SC2016 # envsubst's list of the variables it may replace
	local vars='${COREDNS_IMAGE} ${DNS_SERVICE_IP} ${CLUSTER_DOMAIN}'
	COREDNS_IMAGE=$COREDNS_IMAGE DNS_SERVICE_IP=$DNS_SERVICE_IP CLUSTER_DOMAIN=$CLUSTER_DOMAIN \
		envsubst "$vars" <"$E2E_DIR/addons/coredns.yaml" | kubectl_admin apply -f - >/dev/null ||
		die "could not apply the CoreDNS manifest $E2E_DIR/addons/coredns.yaml"
}

write_cluster_env() {
	{
		echo "# Written by up.sh: the running e2e cluster. Source it."
		printf 'export %s=%q\n' \
			KUBECONFIG "$KUBECONFIG_ADMIN" \
			E2E_LAB "$E2E_LAB" \
			E2E_KUBECTL "$K8S_BIN/kubectl" \
			E2E_NODE_NAME "$NODE_NAME" \
			E2E_POD_CIDR "${E2E_POD_CIDR:-}" \
			E2E_CLUSTER_CIDR "$CLUSTER_CIDR" \
			E2E_SERVICE_CIDR "$SERVICE_CIDR" \
			E2E_PAUSE_IMAGE "$PAUSE_IMAGE" \
			E2E_BUSYBOX_IMAGE "$BUSYBOX_IMAGE" \
			E2E_NETTOOL_IMAGE "$NETTOOL_IMAGE" \
			E2E_NODE_IP "$NODE_IP" \
			E2E_NODE_IFACE "$NODE_IFACE" \
			E2E_APISERVER_URL "$APISERVER_URL" \
			E2E_DNS_SERVICE_IP "$DNS_SERVICE_IP" \
			E2E_CLUSTER_DOMAIN "$CLUSTER_DOMAIN" \
			E2E_PROXY_MODE "$E2E_PROXY_MODE" \
			E2E_CNI "$E2E_CNI" \
			E2E_AFTER_DOWN "$E2E_AFTER_DOWN" \
			E2E_LAYOUT "$E2E_LAYOUT" \
			E2E_NODES "$E2E_NODES" \
			E2E_CNI_POD_SELECTOR "$E2E_CNI_POD_SELECTOR"
		if [ "$E2E_LAYOUT" = netns ]; then
			# What node.sh needs to add a node like the others, and
			# what tests need to reach into the nodes.
			printf 'export %s=%q\n' \
				E2E_NODE_NAMES "$(lab_nodes | tr '\n' ' ' | sed 's/ $//')" \
				E2E_NODES_DIR "$NODES_DIR" \
				E2E_NODE_MOUNTNS_DIR "$NS_DIR" \
				E2E_CP_NETNS "$CP_NETNS" \
				E2E_NODE_CTL "$E2E_DIR/node.sh" \
				E2E_CNI_BIN_DIR "$E2E_CNI_BIN_DIR" \
				E2E_CNI_PLUGINS "$E2E_CNI_PLUGINS" \
				E2E_CNI_CONFLIST "$E2E_CNI_CONFLIST" \
				E2E_CNI_REFERENCE_PLUGINS "$E2E_CNI_REFERENCE_PLUGINS" \
				E2E_BEFORE_KUBELET "$E2E_BEFORE_KUBELET" \
				E2E_AFTER_NODE "$E2E_AFTER_NODE" \
				E2E_EXTRA_IMAGES "$E2E_EXTRA_IMAGES" \
				E2E_IMAGE_ALIASES "$E2E_IMAGE_ALIASES"
		fi
	} >"$E2E_LAB/cluster.env.tmp"
	mv "$E2E_LAB/cluster.env.tmp" "$E2E_LAB/cluster.env"
}

# hook_env: what every hook sees about the cluster.
hook_env() {
	export KUBECONFIG=$KUBECONFIG_ADMIN E2E_LAB E2E_NODE_NAME=$NODE_NAME E2E_KUBECTL=$K8S_BIN/kubectl
	export E2E_CNI_INSTALL_BIN_DIR=$CNI_BIN E2E_CNI_INSTALL_CONF_DIR=$CNI_CONF
	export E2E_LOG_DIR=$LOGS E2E_HOOK_RUN_DIR=$RUN/hooks
	export E2E_CLUSTER_CIDR=$CLUSTER_CIDR E2E_SERVICE_CIDR=$SERVICE_CIDR
	export E2E_NODE_IP=$NODE_IP E2E_APISERVER_URL=$APISERVER_URL E2E_LAYOUT E2E_NODES
}

# the cluster's last steps, whatever the layout: the kubernetes Service's
# endpoint, CoreDNS, the default service account.
finish() {
	kwait "the kubernetes Service's endpoint at $APISERVER_IP:$APISERVER_PORT (endpoint reconciler)" \
		--for=jsonpath='{.endpoints[0].addresses[0]}'="$APISERVER_IP" endpointslice/kubernetes --namespace default
	start_coredns
	kwait "CoreDNS (deployment kube-system/coredns) to be available; see its pod's events and logs" \
		--for=condition=Available deployment/coredns --namespace kube-system
	log "CoreDNS available behind Service kube-system/kube-dns ($DNS_SERVICE_IP)"
	kwait "the default service account" --for=create serviceaccount/default --namespace default
	all_alive
	up_done=1
	log "cluster up in $(elapsed_ms) ms; KUBECONFIG=$KUBECONFIG_ADMIN (see $E2E_LAB/cluster.env)"
}

# main_host: the one node is the machine itself.
main_host() {
	make_pki
	node_address
	write_cluster_env

	start_etcd
	start_apiserver
	start_containerd
	wait_up "containerd on $CTR_SOCK" ctr --address "$CTR_SOCK" version
	import_images "$CTR_SOCK"
	log "containerd up, images imported"
	wait_up "kube-apiserver /readyz" kubectl_admin get --raw=/readyz
	log "kube-apiserver ready"
	start_controllers
	install_cni_plugins "$CNI_BIN"

	hook_env
	run_hook E2E_BEFORE_KUBELET before-kubelet

	if [ "$E2E_CNI" = bridge ]; then
		# Replies of a Service's endpoint to a client on the same bridge
		# never reach the host's routing: without this, they skip the
		# reverse NAT of kube-proxy's DNAT (Kubernetes' documented
		# requirement for bridge plugins).
		sysctl -q -w net.bridge.bridge-nf-call-iptables=1 ||
			die "cannot set net.bridge.bridge-nf-call-iptables=1, which the bridge CNI needs for Services (is br_netfilter available?)"
	fi
	start_kubelet
	kwait "node $NODE_NAME to register" --for=create "node/$NODE_NAME"
	log "node $NODE_NAME registered"
	start_kube_proxy
	wait_up "kube-proxy /healthz on 127.0.0.1:$PROXY_HEALTHZ_PORT (its first sync of the rules)" proxy_healthy
	log "kube-proxy ($E2E_PROXY_MODE) serving Services"
	kwait "a pod CIDR for node $NODE_NAME" --for=jsonpath='{.spec.podCIDR}' "node/$NODE_NAME"
	E2E_POD_CIDR=$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.spec.podCIDR}')
	export E2E_POD_CIDR
	write_cluster_env
	log "node pod CIDR $E2E_POD_CIDR"

	run_hook E2E_AFTER_NODE after-node
	run_hook E2E_AFTER_NODES after-nodes
	install_cni_conflist "$CNI_CONF"
	kwait "node $NODE_NAME to be Ready" --for=condition=Ready "node/$NODE_NAME"
	log "node $NODE_NAME Ready"
	finish
}

# main_netns: the control plane and E2E_NODES nodes in namespaces of their
# own.
main_netns() {
	local i n nodes=() pids=()
	for ((i = 1; i <= E2E_NODES; i++)); do
		nodes+=("$(node_name "$i")")
	done
	NODE_IP=$(node_ip 1)
	make_pki
	make_ns_dir
	ensure_mountpoints
	make_underlay
	for ((i = 1; i <= E2E_NODES; i++)); do
		node_create "${nodes[i - 1]}" "$i"
	done
	write_cluster_env

	start_etcd
	start_apiserver
	start_forwarder
	for n in "${nodes[@]}"; do
		node_start_runtime "$n"
	done
	# The nodes' imports in parallel: most of the time is each containerd
	# unpacking the same archives.
	for n in "${nodes[@]}"; do
		node_images "$n" &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[i]}" || die "images or CNI binaries of node ${nodes[i]} failed (output above)"
	done
	log "containerd up on ${#nodes[@]} nodes, images imported"
	wait_up "kube-apiserver /readyz through 127.0.0.1:$APISERVER_FORWARD_PORT" kubectl_admin get --raw=/readyz
	log "kube-apiserver ready"
	start_controllers

	hook_env
	for n in "${nodes[@]}"; do
		(node_hook_env "$n" && run_hook E2E_BEFORE_KUBELET "before-kubelet-$n")
	done
	for n in "${nodes[@]}"; do
		node_start_kubelet "$n"
	done
	for n in "${nodes[@]}"; do
		kwait "node $n to register" --for=create "node/$n"
		node_start_proxy "$n"
	done
	log "nodes registered: ${nodes[*]}"
	for n in "${nodes[@]}"; do
		wait_up "kube-proxy /healthz of node $n (its first sync of the rules)" proxy_healthy in_node "$n"
	done
	log "kube-proxy ($E2E_PROXY_MODE) serving Services on every node"
	for n in "${nodes[@]}"; do
		node_pod_cidr "$n"
		log "node $n pod CIDR $NODE_POD_CIDR"
		[ "$n" != "$NODE_NAME" ] || E2E_POD_CIDR=$NODE_POD_CIDR
	done
	export E2E_POD_CIDR
	write_cluster_env

	for n in "${nodes[@]}"; do
		(
			node_hook_env "$n"
			E2E_POD_CIDR=$(kubectl_admin get node "$n" -o jsonpath='{.spec.podCIDR}')
			export E2E_POD_CIDR
			run_hook E2E_AFTER_NODE "after-node-$n"
			install_cni_conflist "$(node_dir "$n")/host/etc/cni/net.d"
		)
	done
	run_hook E2E_AFTER_NODES after-nodes
	for n in "${nodes[@]}"; do
		kwait "node $n to be Ready" --for=condition=Ready "node/$n"
	done
	log "nodes Ready: ${nodes[*]}"
	finish
}

main() {
	preflight
	trap on_exit EXIT
	"$E2E_DIR/build.sh"
	log "starting the e2e cluster in $E2E_LAB (layout $E2E_LAYOUT, $E2E_NODES node(s), CNI $E2E_CNI)"

	mkdir -p "$E2E_LAB"
	touch "$LAB_MARKER"
	save_host_state
	rm -rf "$LOGS"
	mkdir -p "$LOGS" "$RUN/hooks"
	if [ "$E2E_LAYOUT" = host ]; then
		main_host
	else
		main_netns
	fi
}

main "$@"
