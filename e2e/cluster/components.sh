# shellcheck shell=bash disable=SC2034 # sourced; the variables are used by its callers
# Starting the e2e cluster's components: background processes with PID
# files, waits with deadlines, hooks, certificates and the configuration
# files of containerd, kubelet and kube-proxy. Sourced by up.sh and node.sh
# after lib.sh; never run on its own.

# Components started by this shell, as the names start() took: waits give
# up as soon as one of them has died.
STARTED=()

# start NAME CMD...: run a component in the background, logging to
# $LOGS/NAME.log, its PID in $RUN/NAME.pid. NAME may be NODE/component.
start() {
	local name=$1
	shift
	mkdir -p "$(dirname "$RUN/$name")" "$(dirname "$LOGS/$name")"
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
	log "hook $1: $hook${E2E_HOOK_NODE:+ (node $E2E_HOOK_NODE)}"
	# Output goes to a file, not a pipe: a hook may leave a daemon running
	# that keeps its stdout open.
	local rc=0
	timeout "$E2E_TIMEOUT" "$hook" >"$LOGS/hook-$phase.log" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || return 0
	tail -n 25 "$LOGS/hook-$phase.log" >&2
	[ "$rc" -ne 124 ] || die "hook $1 ($hook) ran past E2E_TIMEOUT=${E2E_TIMEOUT}s; its output is in $LOGS/hook-$phase.log"
	die "hook $1 ($hook) exited with status $rc; its output is in $LOGS/hook-$phase.log"
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
	rm -f "$PKI/$name.csr" "$PKI/$name.ext"
	chmod 600 "$PKI/$name.key"
}

# write_kubeconfig FILE CERT [SERVER]: a kubeconfig for the client
# certificate CERT, for the API server at SERVER (default APISERVER_URL).
write_kubeconfig() {
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ovsnet-e2e
  cluster:
    certificate-authority: $PKI/ca.crt
    server: ${3:-$APISERVER_URL}
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

# write_containerd_config FILE DIR SOCK CNI_BIN CNI_CONF NETNS_UNDER_STATE
# [RUNC_ROOT]: containerd with its root, state and opt directory under DIR,
# runc's state in RUNC_ROOT (default DIR/runc), its gRPC socket SOCK, CNI
# from CNI_BIN and CNI_CONF; NETNS_UNDER_STATE true puts pod network
# namespaces under the state directory instead of /var/run/netns.
write_containerd_config() {
	local file=$1 dir=$2 sock=$3 cni_bin=$4 cni_conf=$5 netns_under_state=$6 runc_root=${7:-$2/runc}
	cat >"$file" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  disable_apparmor = true
  # Without CAP_SYS_RESOURCE runc cannot lower oom_score_adj below the
  # caller's; kubelet asks for negative values for its sandboxes.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = $netns_under_state
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$runc_root"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$cni_conf"
    max_conf_num = 1

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
}

# import_images SOCK: the local images (and E2E_EXTRA_IMAGES) into the
# containerd at SOCK, tagged with E2E_IMAGE_ALIASES.
import_images() {
	local sock=$1 img pair
	for img in "$IMAGE_DIR"/pause.tar "$IMAGE_DIR"/busybox.tar "$IMAGE_DIR"/nettool.tar "$IMAGE_DIR"/coredns.tar $E2E_EXTRA_IMAGES; do
		ctr --address "$sock" --namespace k8s.io images import "$img" >/dev/null ||
			die "could not import $img into the containerd at $sock; see its log in $LOGS"
	done
	for pair in $E2E_IMAGE_ALIASES; do
		ctr --address "$sock" --namespace k8s.io images tag --force "${pair%%=*}" "${pair#*=}" >/dev/null ||
			die "could not tag image ${pair%%=*} as ${pair#*=} in the containerd at $sock; see its log in $LOGS"
	done
}

# install_cni_plugins DIR: the CNI's binaries (E2E_CNI_PLUGINS of
# E2E_CNI_BIN_DIR; none when E2E_CNI_BIN_DIR is empty, for a CNI whose
# DaemonSet installs them) and the reference plugins into DIR.
install_cni_plugins() {
	local dir=$1 p plugins=$E2E_CNI_PLUGINS
	mkdir -p "$dir"
	if [ -n "$E2E_CNI_BIN_DIR" ]; then
		if [ -z "$plugins" ]; then
			plugins=$(find "$E2E_CNI_BIN_DIR" -maxdepth 1 -type f -perm -u+x -printf '%f\n')
		fi
		[ -n "$plugins" ] || die "no CNI plugin binaries in $E2E_CNI_BIN_DIR"
		for p in $plugins; do
			[ -f "$E2E_CNI_BIN_DIR/$p" ] || die "CNI plugin $p not found in $E2E_CNI_BIN_DIR"
			install -m 0755 "$E2E_CNI_BIN_DIR/$p" "$dir/$p"
		done
	fi
	# The reference plugins the CNI's directory does not bring itself:
	# containerd sets up every pod's loopback interface with loopback, and
	# portmap serves hostPort when the conflist chains it.
	for p in $E2E_CNI_REFERENCE_PLUGINS; do
		[ -f "$dir/$p" ] || install -m 0755 "/usr/lib/cni/$p" "$dir/$p"
	done
}

# install_cni_conflist DIR: the conflist, with ${E2E_*} placeholders filled
# in. containerd watches the directory and reports the network ready once
# it is there.
install_cni_conflist() {
	local dir=$1
	[ -n "$E2E_CNI_CONFLIST" ] || return 0
	# shellcheck disable=SC2016 # envsubst's list of the variables it may replace
	local vars='${E2E_LAB} ${E2E_POD_CIDR} ${E2E_CLUSTER_CIDR} ${E2E_SERVICE_CIDR} ${E2E_NODE_NAME}'
	local rendered
	rendered=$(envsubst "$vars" <"$E2E_CNI_CONFLIST")
	# Written in place with a single write, not renamed into the directory:
	# containerd 1.6 reloads its CNI configuration on write events only and
	# ignores files that merely appear.
	printf '%s\n' "$rendered" >"$dir/10-ovsnet-e2e.conflist"
}

# write_kubelet_config FILE ADDRESS CERT SOCK PODLOGS [CGROUP_ROOT]: kubelet
# serving on ADDRESS with the certificate $PKI/CERT.crt, the runtime at
# SOCK, pod logs in PODLOGS, pods' cgroups under CGROUP_ROOT (default: the
# root of each hierarchy).
write_kubelet_config() {
	local file=$1 address=$2 cert=$3 sock=$4 podlogs=$5 cgroot=${6:-}
	cat >"$file" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $address
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/$cert.crt
tlsPrivateKeyFile: $PKI/$cert.key
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
# Test machines may run cgroup v1 and no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP]
resolvConf: /etc/resolv.conf
podLogsDir: $podlogs
# Never evict or garbage-collect the local images: they cannot be pulled back.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
EOF
	[ -z "$cgroot" ] || echo "cgroupRoot: $cgroot" >>"$file"
}

# write_kube_proxy_config FILE KUBECONFIG NODE_NAME: kube-proxy in
# E2E_PROXY_MODE, NodePorts on the node address only, the conntrack sysctls
# left alone (0 = keep the kernel's values).
write_kube_proxy_config() {
	cat >"$1" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $2
hostnameOverride: $3
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
}

# proxy_healthy [CMD...]: kube-proxy's /healthz answers (through CMD, a
# namespace prefix such as in_node NODE, when given).
proxy_healthy() {
	"$@" busybox wget -q -O /dev/null "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
}
