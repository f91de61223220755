#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster for the ovsnet end-to-end tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# kubelet and kube-proxy, with a pluggable CNI, and CoreDNS as the cluster
# DNS. kube-apiserver and kubelet listen on the node's address, on an
# interface of the cluster's own (e2e-node0, 172.31.250.1); everything else
# on 127.0.0.1 or unix sockets under $E2E_LAB. See e2e/README.md for the
# variables, the hooks and their order.
# On success the admin kubeconfig is $E2E_LAB/admin.kubeconfig and
# $E2E_LAB/cluster.env holds what tests need (source it).
# On failure it prints the logs of what broke and runs down.sh, unless
# E2E_KEEP_ON_FAILURE=1.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

E2E_CNI=${E2E_CNI:-bridge}
case $E2E_CNI in
bridge)
	E2E_CNI_BIN_DIR=${E2E_CNI_BIN_DIR:-/usr/lib/cni}
	E2E_CNI_CONFLIST=${E2E_CNI_CONFLIST:-$E2E_DIR/cni/bridge.conflist}
	E2E_CNI_PLUGINS=${E2E_CNI_PLUGINS:-bridge host-local}
	;;
custom)
	[ -n "${E2E_CNI_BIN_DIR:-}" ] || die "E2E_CNI=custom needs E2E_CNI_BIN_DIR, the directory of the CNI plugin binaries to install"
	E2E_CNI_CONFLIST=${E2E_CNI_CONFLIST:-}
	# Every executable of the directory.
	E2E_CNI_PLUGINS=${E2E_CNI_PLUGINS:-}
	;;
*)
	die "E2E_CNI=$E2E_CNI: want bridge (reference plugins) or custom (E2E_CNI_BIN_DIR, E2E_CNI_CONFLIST and hooks)"
	;;
esac
E2E_BEFORE_KUBELET=${E2E_BEFORE_KUBELET:-}
E2E_AFTER_NODE=${E2E_AFTER_NODE:-}
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

STARTED=()
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

# start NAME CMD...: run a component in the background, logging to $LOGS/NAME.log.
start() {
	local name=$1
	shift
	"$@" </dev/null >"$LOGS/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
	STARTED+=("$name")
}

# all_alive: every component started so far still runs. Waits give up at once
# when one has died instead of running into their deadline.
all_alive() {
	local name
	for name in "${STARTED[@]}"; do
		pid_alive "$name" || {
			echo "error: $name exited; see $LOGS/$name.log" >&2
			return 1
		}
	done
}

# wait_up DESC CMD...: run CMD until it succeeds, for conditions no watch can
# express (a socket answering, an endpoint ready). Gives up when E2E_TIMEOUT
# passes or a component dies.
wait_up() {
	local desc=$1
	shift
	local deadline=$(($(date +%s) + E2E_TIMEOUT))
	until "$@" >/dev/null 2>&1; do
		all_alive || return 1
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "error: timed out after ${E2E_TIMEOUT}s waiting for $desc" >&2
			return 1
		fi
		sleep 0.1
	done
}

# kwait DESC ARGS...: `kubectl wait ARGS` (a watch, with E2E_TIMEOUT as its
# deadline), given up as soon as a component exits: they are children of this
# shell, so one `wait -n` covers them and kubectl alike. A component that died
# earlier is no longer a job to wait for, hence the check before.
kwait() {
	local desc=$1
	shift
	all_alive || return 1
	# kubectl itself, not a function, so that $! is its PID.
	"$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" wait "$@" --timeout="${E2E_TIMEOUT}s" >/dev/null &
	local kpid=$! ended="" rc=0 name pids=()
	for name in "${STARTED[@]}"; do
		pids+=("$(cat "$RUN/$name.pid")")
	done
	wait -n -p ended "$kpid" "${pids[@]}" 2>/dev/null || rc=$?
	if [ "$ended" != "$kpid" ]; then
		kill "$kpid" 2>/dev/null
		wait "$kpid" 2>/dev/null || true
		all_alive || true
		echo "error: gave up waiting for $desc" >&2
		return 1
	fi
	[ "$rc" -eq 0 ] || {
		echo "error: $desc: not reached within ${E2E_TIMEOUT}s" >&2
		return 1
	}
}

# run_hook VAR PHASE: run the executable named by VAR, if any, with a deadline.
run_hook() {
	local hook=${!1} phase=$2
	[ -n "$hook" ] || return 0
	log "hook $1: $hook"
	# Output goes to a file, not a pipe: a hook may leave a daemon running
	# that keeps its stdout open.
	local rc=0
	timeout "$E2E_TIMEOUT" "$hook" >"$LOGS/hook-$phase.log" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || return 0
	tail -n 25 "$LOGS/hook-$phase.log" >&2
	[ "$rc" -ne 124 ] || die "hook $1 ($hook) ran past E2E_TIMEOUT=${E2E_TIMEOUT}s; its output is in $LOGS/hook-$phase.log"
	die "hook $1 ($hook) exited with status $rc; its output is in $LOGS/hook-$phase.log"
}

preflight() {
	require_root
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
	local port owner p
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
	for p in $E2E_CNI_REFERENCE_PLUGINS; do
		[ -f "$E2E_CNI_BIN_DIR/$p" ] || [ -f "/usr/lib/cni/$p" ] ||
			die "the $p CNI plugin is in neither $E2E_CNI_BIN_DIR nor /usr/lib/cni; install containernetworking-plugins"
	done
	[ -z "$E2E_CNI_CONFLIST" ] || [ -f "$E2E_CNI_CONFLIST" ] || die "E2E_CNI_CONFLIST=$E2E_CNI_CONFLIST does not exist"
	local hook
	for hook in E2E_BEFORE_KUBELET E2E_AFTER_NODE E2E_AFTER_DOWN; do
		[ -z "${!hook}" ] || [ -x "${!hook}" ] || die "$hook=${!hook} is not an executable file"
	done
}

# save_host_state records what down.sh must restore or may remove, once:
# after a failed run the first record, taken before any change, stays.
save_host_state() {
	local k v p ipt t
	mkdir -p "$RUN"
	if [ ! -f "$RUN/sysctl.saved" ]; then
		for k in "${SAVED_SYSCTLS[@]}"; do
			# A key the kernel lacks (no bridge netfilter) is nobody's to restore.
			v=$(sysctl -n "$k" 2>/dev/null) && echo "$k=$v"
		done >"$RUN/sysctl.saved.tmp"
		mv "$RUN/sysctl.saved.tmp" "$RUN/sysctl.saved"
	fi
	if [ ! -f "$RUN/paths.saved" ]; then
		for p in "${FIXED_PATHS[@]}"; do
			[ ! -e "$p" ] || echo "$p"
		done >"$RUN/paths.saved.tmp"
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

# gen_cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
gen_cert() {
	local name=$1 subject=$2 eku=$3 san=${4:-}
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=$eku"
		[ -z "$san" ] || echo "subjectAltName=$san"
	} >"$PKI/$name.ext"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 30 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
}

# write_kubeconfig FILE CERT: a kubeconfig for the client certificate CERT.
write_kubeconfig() {
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ovsnet-e2e
  cluster:
    certificate-authority: $PKI/ca.crt
    server: $APISERVER_URL
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: ovsnet-e2e
  context: {cluster: ovsnet-e2e, user: $2}
current-context: ovsnet-e2e
EOF
}

# make_pki: a throw-away CA and one certificate per component. EC keys make
# this take well under a second.
make_pki() {
	mkdir -p "$PKI"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-keyout "$PKI/ca.key" -subj "/CN=ovsnet-e2e-ca" -out "$PKI/ca.crt" 2>/dev/null
	gen_cert apiserver "/CN=kube-apiserver" serverAuth \
		"DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_APISERVER_IP"
	gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
	gen_cert admin "/O=system:masters/CN=ovsnet-e2e-admin" clientAuth
	gen_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth,clientAuth \
		"DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
	gen_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
	gen_cert scheduler "/CN=system:kube-scheduler" clientAuth
	# The user the default ClusterRoleBinding system:node-proxier names.
	gen_cert kube-proxy "/CN=system:kube-proxy" clientAuth
	# Service account tokens are signed with an ES256 key.
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key"
	openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	rm -f "$PKI"/*.csr "$PKI"/*.ext
	chmod 600 "$PKI"/*.key
	write_kubeconfig "$KUBECONFIG_ADMIN" admin
	write_kubeconfig "$PKI/kubelet.kubeconfig" kubelet
	write_kubeconfig "$PKI/controller-manager.kubeconfig" controller-manager
	write_kubeconfig "$PKI/scheduler.kubeconfig" scheduler
	write_kubeconfig "$PKI/kube-proxy.kubeconfig" kube-proxy
}

start_etcd() {
	start etcd etcd --name ovsnet-e2e --data-dir "$E2E_LAB/etcd" --logger zap \
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
	# Bound to and advertised on the node address: the default (lease)
	# endpoint reconciler publishes it as the endpoint of Service
	# default/kubernetes, which pods reach through its ClusterIP.
	start kube-apiserver "$K8S_BIN/kube-apiserver" \
		--bind-address="$NODE_IP" --secure-port="$APISERVER_PORT" --advertise-address="$NODE_IP" \
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

start_containerd() {
	mkdir -p "$E2E_LAB/containerd" "$CNI_BIN" "$CNI_CONF"
	cat >"$E2E_LAB/containerd/config.toml" <<EOF
version = 2
root = "$E2E_LAB/containerd/root"
state = "$E2E_LAB/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$CTR_SOCK.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  disable_apparmor = true
  # Without CAP_SYS_RESOURCE runc cannot lower oom_score_adj below the
  # caller's; kubelet asks for negative values for its sandboxes.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$CNI_CONF"
    max_conf_num = 1

[plugins."io.containerd.internal.v1.opt"]
  path = "$E2E_LAB/containerd/opt"
EOF
	start containerd containerd --config "$E2E_LAB/containerd/config.toml"
}

import_images() {
	local img pair
	for img in "$IMAGE_DIR"/pause.tar "$IMAGE_DIR"/busybox.tar "$IMAGE_DIR"/nettool.tar "$IMAGE_DIR"/coredns.tar $E2E_EXTRA_IMAGES; do
		ctr_lab images import "$img" >/dev/null ||
			die "could not import $img into containerd; see $LOGS/containerd.log"
	done
	for pair in $E2E_IMAGE_ALIASES; do
		ctr_lab images tag --force "${pair%%=*}" "${pair#*=}" >/dev/null ||
			die "could not tag image ${pair%%=*} as ${pair#*=} in containerd; see $LOGS/containerd.log"
	done
}

start_controllers() {
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
		--kubeconfig="$PKI/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$PKI/controller-manager.kubeconfig" --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port="$CM_PORT" \
		--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
		--use-service-account-credentials=true \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--leader-elect=false --controllers='*,-cloud-node-lifecycle'
	start kube-scheduler "$K8S_BIN/kube-scheduler" \
		--kubeconfig="$PKI/scheduler.kubeconfig" \
		--authentication-kubeconfig="$PKI/scheduler.kubeconfig" --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --leader-elect=false
}

install_cni_plugins() {
	local p plugins=$E2E_CNI_PLUGINS
	if [ -z "$plugins" ]; then
		plugins=$(find "$E2E_CNI_BIN_DIR" -maxdepth 1 -type f -perm -u+x -printf '%f\n')
	fi
	[ -n "$plugins" ] || die "no CNI plugin binaries in $E2E_CNI_BIN_DIR"
	for p in $plugins; do
		[ -f "$E2E_CNI_BIN_DIR/$p" ] || die "CNI plugin $p not found in $E2E_CNI_BIN_DIR"
		install -m 0755 "$E2E_CNI_BIN_DIR/$p" "$CNI_BIN/$p"
	done
	# The reference plugins the CNI's directory does not bring itself:
	# containerd sets up every pod's loopback interface with loopback, and
	# portmap serves hostPort when the conflist chains it.
	for p in $E2E_CNI_REFERENCE_PLUGINS; do
		[ -f "$CNI_BIN/$p" ] || install -m 0755 "/usr/lib/cni/$p" "$CNI_BIN/$p"
	done
}

# install_cni_conflist: the conflist, with ${E2E_*} placeholders filled in.
# containerd watches the directory and reports the network ready once it is there.
install_cni_conflist() {
	[ -n "$E2E_CNI_CONFLIST" ] || return 0
	# shellcheck disable=SC2016 # envsubst's list of the variables it may replace
	local vars='${E2E_LAB} ${E2E_POD_CIDR} ${E2E_CLUSTER_CIDR} ${E2E_SERVICE_CIDR} ${E2E_NODE_NAME}'
	local rendered
	rendered=$(envsubst "$vars" <"$E2E_CNI_CONFLIST")
	# Written in place with a single write, not renamed into the directory:
	# containerd 1.6 reloads its CNI configuration on write events only and
	# ignores files that merely appear.
	printf '%s\n' "$rendered" >"$CNI_CONF/10-ovsnet-e2e.conflist"
}

start_kubelet() {
	mkdir -p "$E2E_LAB/kubelet/root" "$E2E_LAB/kubelet/pod-logs"
	cat >"$E2E_LAB/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
containerRuntimeEndpoint: unix://$CTR_SOCK
imageServiceEndpoint: unix://$CTR_SOCK
# Test machines may run cgroup v1 and no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP]
resolvConf: /etc/resolv.conf
podLogsDir: $E2E_LAB/kubelet/pod-logs
# Never evict or garbage-collect the local images: they cannot be pulled back.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
EOF
	start kubelet "$K8S_BIN/kubelet" --config="$E2E_LAB/kubelet/config.yaml" \
		--kubeconfig="$PKI/kubelet.kubeconfig" \
		--root-dir="$E2E_LAB/kubelet/root" --cert-dir="$E2E_LAB/kubelet/pki" \
		--hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=2
}

# start_kube_proxy: kube-proxy as a host process (see e2e/README.md for why
# not a DaemonSet), in E2E_PROXY_MODE, NodePorts on the node address only.
# It leaves the conntrack sysctls alone (0 = keep the kernel's values).
start_kube_proxy() {
	mkdir -p "$E2E_LAB/kube-proxy"
	cat >"$E2E_LAB/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $PKI/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: $E2E_PROXY_MODE
clusterCIDR: $CLUSTER_CIDR
detectLocalMode: ClusterCIDR
nodePortAddresses: [primary]
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
	start kube-proxy "$K8S_BIN/kube-proxy" --config="$E2E_LAB/kube-proxy/config.yaml" --v=2
}

proxy_healthy() {
	busybox wget -q -O /dev/null "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
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
			E2E_AFTER_DOWN "$E2E_AFTER_DOWN"
	} >"$E2E_LAB/cluster.env.tmp"
	mv "$E2E_LAB/cluster.env.tmp" "$E2E_LAB/cluster.env"
}

main() {
	preflight
	trap on_exit EXIT
	"$E2E_DIR/build.sh"
	log "starting the e2e cluster in $E2E_LAB (node $NODE_NAME, CNI $E2E_CNI)"

	mkdir -p "$E2E_LAB"
	touch "$LAB_MARKER"
	save_host_state
	rm -rf "$LOGS"
	mkdir -p "$LOGS" "$RUN/hooks"
	make_pki
	node_address
	write_cluster_env

	start_etcd
	start_apiserver
	start_containerd
	wait_up "containerd on $CTR_SOCK" ctr --address "$CTR_SOCK" version
	import_images
	log "containerd up, images imported"
	wait_up "kube-apiserver /readyz" kubectl_admin get --raw=/readyz
	log "kube-apiserver ready"
	start_controllers
	install_cni_plugins

	export KUBECONFIG=$KUBECONFIG_ADMIN E2E_LAB E2E_NODE_NAME=$NODE_NAME E2E_KUBECTL=$K8S_BIN/kubectl
	export E2E_CNI_INSTALL_BIN_DIR=$CNI_BIN E2E_CNI_INSTALL_CONF_DIR=$CNI_CONF
	export E2E_LOG_DIR=$LOGS E2E_HOOK_RUN_DIR=$RUN/hooks
	export E2E_CLUSTER_CIDR=$CLUSTER_CIDR E2E_SERVICE_CIDR=$SERVICE_CIDR
	export E2E_NODE_IP=$NODE_IP E2E_APISERVER_URL=$APISERVER_URL
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
	install_cni_conflist
	kwait "node $NODE_NAME to be Ready" --for=condition=Ready "node/$NODE_NAME"
	log "node $NODE_NAME Ready"
	kwait "the kubernetes Service's endpoint at $NODE_IP:$APISERVER_PORT (endpoint reconciler)" \
		--for=jsonpath='{.endpoints[0].addresses[0]}'="$NODE_IP" endpointslice/kubernetes --namespace default
	start_coredns
	kwait "CoreDNS (deployment kube-system/coredns) to be available; see its pod's events and logs" \
		--for=condition=Available deployment/coredns --namespace kube-system
	log "CoreDNS available behind Service kube-system/kube-dns ($DNS_SERVICE_IP)"
	kwait "the default service account" --for=create serviceaccount/default --namespace default
	all_alive
	up_done=1
	log "cluster up in $(elapsed_ms) ms; KUBECONFIG=$KUBECONFIG_ADMIN (see $E2E_LAB/cluster.env)"
}

main "$@"
