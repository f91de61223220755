# shellcheck shell=bash disable=SC2034 # sourced; the variables are used by its callers
# The netns layout (E2E_LAYOUT=netns, any E2E_NODES): the control plane's
# network namespace with the underlay bridge, and the nodes, each with a
# network namespace, a mount namespace, a cgroup root, containerd, kubelet
# and kube-proxy of its own. Sourced by up.sh and node.sh (after lib.sh and
# components.sh) and by down.sh (after lib.sh: the teardown half only).
#
# What is whose is recorded under $RUN: the namespaces this harness made
# (netns.list, with their inodes, so that a process left in one is found
# even after its name is gone), the mount-namespace directory (ns-dir), and
# per node $RUN/NODE/*.pid. Nothing else is ever stopped or removed.

# node_dir NODE: the node's directory; $(node_dir NODE)/host holds what its
# mount namespace has at NODE_HOST_PATHS.
node_dir() { echo "$NODES_DIR/$1"; }

# node_sock NODE: the node's containerd socket (a host path too).
node_sock() { echo "$(node_dir "$1")/containerd.sock"; }

# lab_nodes: the nodes that exist in the lab, in the order of their index.
lab_nodes() {
	local f
	for f in "$NODES_DIR"/*/node.env; do
		[ -f "$f" ] || continue
		# shellcheck disable=SC1090 # written by node_create
		(. "$f" && echo "$N_INDEX $N_NAME")
	done | sort -n | awk '{print $2}'
}

# node_env NODE: sources the node's node.env (N_NAME, N_INDEX, N_IP).
node_env() {
	# shellcheck disable=SC1090,SC1091 # written by node_create
	. "$(node_dir "$1")/node.env"
}

# ns_inode PATH: the inode of the namespace a namespace file refers to.
ns_inode() {
	stat -L -c %i "$1" 2>/dev/null
}

# add_netns NAME: a network namespace of this harness, recorded before it
# exists so that a run killed halfway still removes it.
add_netns() {
	local name=$1
	[ ! -e "/run/netns/$name" ] || die "network namespace $name exists already: another cluster of this kind runs, or a killed one left it (run $E2E_DIR/down.sh)"
	echo "$name" >>"$RUN/netns.list"
	ip netns add "$name" || die "cannot create network namespace $name"
	echo "$name $(ns_inode "/run/netns/$name")" >>"$RUN/netns.inodes"
	ip -n "$name" link set lo up
}

# make_ns_dir: the directory of the nodes' mount namespace files, a private
# bind mount of itself (a persistent mount namespace must not be bound on a
# shared mount).
make_ns_dir() {
	mkdir -p "$NS_DIR"
	if ! awk -v d="$NS_DIR" '$5 == d {f = 1} END {exit !f}' /proc/self/mountinfo; then
		echo "$NS_DIR" >"$RUN/ns-dir"
		mount --bind "$NS_DIR" "$NS_DIR" || die "cannot bind-mount $NS_DIR on itself (for the nodes' mount namespaces)"
		mount --make-private "$NS_DIR" || die "cannot make $NS_DIR a private mount (needed for the nodes' mount namespaces)"
	fi
}

# make_underlay: the control plane's namespace with the underlay bridge
# every node's veth joins; the control plane's address is on the bridge.
make_underlay() {
	add_netns "$CP_NETNS"
	ip -n "$CP_NETNS" link add "$UNDERLAY_BRIDGE" type bridge || die "cannot create bridge $UNDERLAY_BRIDGE in $CP_NETNS"
	ip -n "$CP_NETNS" addr add "$CP_IP/24" dev "$UNDERLAY_BRIDGE"
	ip -n "$CP_NETNS" link set "$UNDERLAY_BRIDGE" up
	log "control plane namespace $CP_NETNS: $CP_IP on $UNDERLAY_BRIDGE"
}

# ensure_mountpoints: every NODE_HOST_PATHS exists on the host, to mount
# over in the nodes' namespaces. save_host_state recorded which of
# NODE_MOUNTPOINT_ROOTS existed before; down.sh removes the others.
ensure_mountpoints() {
	local p
	for p in "${NODE_HOST_PATHS[@]}"; do
		[ -d "$p" ] || mkdir -p "$p" || die "cannot create $p on the host (a mount point for the nodes)"
	done
}

# node_mounts HOSTDIR: run inside a new mount namespace (node_create):
# drops the copies of the host's namespace files (a copy keeps its
# namespace alive, and the host's include other users' network namespaces),
# puts HOSTDIR/PATH over every NODE_HOST_PATHS and makes the tree shared
# within the node, which mountPropagation (HostToContainer) needs.
node_mounts() {
	local host=$1 m p
	while read -r m; do
		umount -l "$m" || return 1
	done < <(awk '{for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "nsfs") print $5; break }}' /proc/self/mountinfo | sort -r)
	for p in "${NODE_HOST_PATHS[@]}"; do
		mount --bind "$host$p" "$p" || return 1
	done
	mount --make-rshared /
}

# node_cgroups NODE: the node's cgroup root /NODE in every hierarchy
# (kubelet's cgroupRoot must exist); a new cpuset starts without CPUs and
# memory nodes, so it gets its parent's.
node_cgroups() {
	local n=$1 c
	if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
		mkdir -p "/sys/fs/cgroup/$n"
		return
	fi
	for c in /sys/fs/cgroup/*/; do
		[ -L "${c%/}" ] && continue
		mkdir -p "$c$n" || die "cannot create cgroup $c$n"
	done
	if [ -d "/sys/fs/cgroup/cpuset/$n" ]; then
		cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$n/cpuset.cpus"
		cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$n/cpuset.mems"
	fi
}

# node_cgroup_dirs NODE: the node's cgroup directories, deepest first.
node_cgroup_dirs() {
	local d
	for d in "/sys/fs/cgroup/$1" /sys/fs/cgroup/*/"$1"; do
		[ -d "$d" ] && [ ! -L "$d" ] && find "$d" -depth -type d
	done
	return 0
}

# node_create NODE INDEX: the node's directories, network namespace with its
# underlay veth (address, default route via the control plane), mount
# namespace and cgroups.
node_create() {
	local n=$1 i=$2 d ip p
	d=$(node_dir "$n")
	ip=$(node_ip "$i")
	mkdir -p "$d" "$RUN/$n/hooks" "$LOGS/$n"
	printf 'N_NAME=%q\nN_INDEX=%q\nN_IP=%q\n' "$n" "$i" "$ip" >"$d/node.env"
	for p in "${NODE_HOST_PATHS[@]}"; do
		mkdir -p "$d/host$p"
	done
	add_netns "$n"
	ip link add "$NODE_UPLINK" netns "$n" type veth peer name "$n" netns "$CP_NETNS" ||
		die "cannot create the underlay veth of node $n"
	ip -n "$CP_NETNS" link set "$n" master "$UNDERLAY_BRIDGE" up
	# The underlay stands for a wire, but a veth hands TCP segments over
	# with their checksum left for the hardware to fill in, and OVS's
	# userspace datapath, which reads the uplink of a node with tunnels
	# (the uplink bridge), forwards them so: the node's kernel then drops
	# every segment while ping works. Both ends finish their checksums.
	nsenter --net="/run/netns/$CP_NETNS" ethtool -K "$n" tx off >/dev/null ||
		die "cannot turn TX checksum offload off on $n in $CP_NETNS (ethtool)"
	nsenter --net="/run/netns/$n" ethtool -K "$NODE_UPLINK" tx off >/dev/null ||
		die "cannot turn TX checksum offload off on $NODE_UPLINK of node $n (ethtool)"
	ip -n "$n" addr add "$ip/24" dev "$NODE_UPLINK"
	ip -n "$n" link set "$NODE_UPLINK" up
	# Locally made packets to a Service address need a route before
	# kube-proxy's DNAT; nothing beyond the underlay answers.
	ip -n "$n" route add default via "$CP_IP" dev "$NODE_UPLINK"
	echo "$n" >>"$RUN/mountns.list"
	touch "$NS_DIR/$n"
	unshare --mount="$NS_DIR/$n" --propagation private true || die "cannot create the mount namespace of node $n"
	echo "$n $(ns_inode "$NS_DIR/$n")" >>"$RUN/mountns.inodes"
	# shellcheck disable=SC2016 # expanded by the inner bash
	nsenter --mount="$NS_DIR/$n" bash -c "$(declare -p NODE_HOST_PATHS); $(declare -f node_mounts); node_mounts \"\$1\"" _ "$d/host" ||
		die "cannot set up the mounts of node $n"
	echo "$n" >>"$RUN/cgroups.list"
	node_cgroups "$n"
	log "node $n: $ip on $NODE_UPLINK, network and mount namespaces, cgroup root /$n"
}

# node_start_runtime NODE: containerd in the node's namespaces.
node_start_runtime() {
	local n=$1 d
	d=$(node_dir "$n")
	mkdir -p "$d/containerd"
	# Pod network namespaces in the node's /var/run/netns, where a real
	# node has them and where the DaemonSet's agent sees them.
	write_containerd_config "$d/containerd/config.toml" "$d/containerd" "$(node_sock "$n")" \
		/opt/cni/bin /etc/cni/net.d false
	node_cmd "$n"
	start "$n/containerd" "${NODE_CMD[@]}" containerd --config "$d/containerd/config.toml"
}

# node_images NODE: waits for the node's containerd, imports the images and
# installs the CNI binaries the harness provides.
node_images() {
	local n=$1 d
	d=$(node_dir "$n")
	wait_up "containerd of node $n on $(node_sock "$n")" ctr --address "$(node_sock "$n")" version ||
		die "containerd of node $n did not start; see $LOGS/$n/containerd.log"
	import_images "$(node_sock "$n")"
	install_cni_plugins "$d/host/opt/cni/bin"
}

# node_hook_env NODE: exports what a hook sees about the node it runs for.
node_hook_env() {
	local n=$1 d
	d=$(node_dir "$n")
	node_env "$n"
	export E2E_HOOK_NODE=$n E2E_NODE_NAME=$n E2E_NODE_IP=$N_IP E2E_NODE_NETNS=/run/netns/$n
	export E2E_NODE_MOUNTNS=$NS_DIR/$n E2E_NODE_DIR=$d E2E_NODE_HOST_DIR=$d/host
	export E2E_CNI_INSTALL_BIN_DIR=$d/host/opt/cni/bin E2E_CNI_INSTALL_CONF_DIR=$d/host/etc/cni/net.d
	export E2E_HOOK_RUN_DIR=$RUN/$n/hooks E2E_LOG_DIR=$LOGS/$n
}

# node_start_kubelet NODE: kubelet of the node, registering as NODE with its
# underlay address, pods' cgroups under /NODE.
node_start_kubelet() {
	local n=$1 d
	d=$(node_dir "$n")
	node_env "$n"
	gen_cert "kubelet-$n" "/O=system:nodes/CN=system:node:$n" serverAuth,clientAuth \
		"DNS:$n,DNS:localhost,IP:127.0.0.1,IP:$N_IP"
	write_kubeconfig "$PKI/kubelet-$n.kubeconfig" "kubelet-$n"
	mkdir -p "$d/kubelet/pki"
	write_kubelet_config "$d/kubelet/config.yaml" "$N_IP" "kubelet-$n" "$(node_sock "$n")" /var/log/pods "/$n"
	node_cmd "$n"
	start "$n/kubelet" "${NODE_CMD[@]}" "$K8S_BIN/kubelet" --config="$d/kubelet/config.yaml" \
		--kubeconfig="$PKI/kubelet-$n.kubeconfig" \
		--root-dir=/var/lib/kubelet --cert-dir="$d/kubelet/pki" \
		--hostname-override="$n" --node-ip="$N_IP" --v=2
}

# node_start_proxy NODE: kube-proxy of the node, in its namespaces.
node_start_proxy() {
	local n=$1 d
	d=$(node_dir "$n")
	mkdir -p "$d/kube-proxy"
	write_kube_proxy_config "$d/kube-proxy/config.yaml" "$PKI/kube-proxy.kubeconfig" "$n"
	node_cmd "$n"
	start "$n/kube-proxy" "${NODE_CMD[@]}" "$K8S_BIN/kube-proxy" --config="$d/kube-proxy/config.yaml" --v=2
}

# node_pod_cidr NODE: waits for the node's pod CIDR, sets NODE_POD_CIDR to
# it and routes it from the control plane (whose API server reaches pods
# for its proxy) via the node. Not in a subshell: kwait waits on this
# shell's children.
node_pod_cidr() {
	local n=$1
	node_env "$n"
	kwait "a pod CIDR for node $n" --for=jsonpath='{.spec.podCIDR}' "node/$n" || return 1
	NODE_POD_CIDR=$(kubectl_admin get node "$n" -o jsonpath='{.spec.podCIDR}')
	ip -n "$CP_NETNS" route replace "$NODE_POD_CIDR" via "$N_IP" ||
		die "cannot route $NODE_POD_CIDR via node $n in $CP_NETNS"
}

# --- teardown (down.sh, node.sh remove) ---

# stop_pid PID NAME GRACE: SIGTERM, up to GRACE seconds to exit, then SIGKILL.
# GRACE 0 means SIGKILL at once.
stop_pid() {
	local pid=$1 name=$2 grace=$3 deadline
	is_ours "$pid" "$name" || return 0
	[ "$grace" -eq 0 ] || kill -TERM "$pid" 2>/dev/null
	deadline=$(($(date +%s) + grace))
	while is_ours "$pid" "$name"; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			[ "$grace" -eq 0 ] || log "$name (pid $pid) still running after ${grace}s: killing it"
			kill -KILL "$pid" 2>/dev/null
			deadline=$(($(date +%s) + 10))
			while is_ours "$pid" "$name"; do
				[ "$(date +%s)" -lt "$deadline" ] || {
					warn "$name (pid $pid) survived SIGKILL"
					return
				}
				sleep 0.1
			done
			return
		fi
		sleep 0.1
	done
}

# stop NAME [MATCH]: stop the component recorded in $RUN/NAME.pid.
stop() {
	local name=$1 match=${2:-${1##*/}} f=$RUN/$1.pid
	[ -f "$f" ] || return 0
	stop_pid "$(cat "$f")" "$match" 20
	rm -f "$f"
}

# pids_in_ns KIND INODE: processes whose KIND (net, mnt) namespace is INODE.
pids_in_ns() {
	local kind=$1 ino=$2 p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/$kind" 2>/dev/null)" = "$kind:[$ino]" ] && echo "${p#/proc/}"
	done
	return 0
}

# kill_ns_processes KIND INODE DESC: SIGKILL what still runs in a namespace
# of this harness (what containerd and kubelet left, after they stopped),
# and waits for it to be gone.
kill_ns_processes() {
	local kind=$1 ino=$2 desc=$3 pids deadline
	[ -n "$ino" ] || return 0
	pids=$(pids_in_ns "$kind" "$ino")
	[ -n "$pids" ] || return 0
	log "$desc: killing what is left in it: $(for p in $pids; do tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60; echo ';'; done | tr '\n' ' ')"
	# shellcheck disable=SC2086 # a list of PIDs
	kill -KILL $pids 2>/dev/null
	deadline=$(($(date +%s) + 10))
	while [ -n "$(pids_in_ns "$kind" "$ino")" ]; do
		[ "$(date +%s)" -lt "$deadline" ] || {
			warn "$desc: processes survive SIGKILL: $(pids_in_ns "$kind" "$ino" | tr '\n' ' ')"
			return
		}
		sleep 0.1
	done
}

# recorded_inode FILE NAME: the inode recorded for NAME in FILE.
recorded_inode() {
	[ -f "$1" ] && awk -v n="$2" '$1 == n {print $2}' "$1" | tail -n 1
}

# node_stop NODE: every process of the node gone: kubelet, the containers,
# containerd and its shims, hook processes (the node's after-down hook
# runs then), kube-proxy, and whatever else is left in its namespaces.
node_stop() {
	local n=$1 sock t c id pid root f
	sock=$(node_sock "$n")
	stop "$n/kubelet"
	if pid_alive "$n/containerd"; then
		for t in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1
			ctr --address "$sock" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1
		done
		for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
			ctr --address "$sock" -n k8s.io containers delete "$c" >/dev/null 2>&1
		done
	fi
	stop "$n/containerd"
	# Shims serving the node's containerd socket, in case containerd died first.
	# shellcheck disable=SC2013 # grep -l prints file names, one per matching process
	for pid in $(grep -lsF -- "$sock" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		if is_ours "$pid" "containerd-shim-runc-v2" && is_ours "$pid" "-address $sock "; then
			stop_pid "$pid" containerd-shim-runc-v2 0
		fi
	done
	for f in "$RUN/$n"/hooks/*.pid; do
		[ -f "$f" ] || continue
		stop_pid "$(cat "$f")" "" 20
		rm -f "$f"
	done
	if [ -n "${E2E_AFTER_DOWN:-}" ] && [ -x "${E2E_AFTER_DOWN:-}" ] && [ -d "$(node_dir "$n")" ]; then
		log "hook E2E_AFTER_DOWN: $E2E_AFTER_DOWN (node $n)"
		mkdir -p "$LOGS/$n"
		(node_hook_env "$n" && timeout "$E2E_TIMEOUT" "$E2E_AFTER_DOWN") >"$LOGS/$n/hook-after-down.log" 2>&1 ||
			warn "hook E2E_AFTER_DOWN ($E2E_AFTER_DOWN) failed for node $n; see $LOGS/$n/hook-after-down.log"
	fi
	stop "$n/kube-proxy"
	# runc's state of containers whose processes are gone.
	root=$(node_dir "$n")/containerd/runc/k8s.io
	if [ -d "$root" ]; then
		for id in $(runc --root "$root" list -q 2>/dev/null); do
			runc --root "$root" delete --force "$id" >/dev/null 2>&1
		done
	fi
	kill_ns_processes mnt "$(recorded_inode "$RUN/mountns.inodes" "$n")" "mount namespace of node $n"
	kill_ns_processes net "$(recorded_inode "$RUN/netns.inodes" "$n")" "network namespace of node $n"
}

# node_destroy NODE: after node_stop, the node's namespaces, cgroups and
# route, and its directory (its logs stay in $LOGS/NODE).
node_destroy() {
	local n=$1 d cidr c ok=1
	d=$(node_dir "$n")
	if grep -qxF "$n" "$RUN/mountns.list" 2>/dev/null && [ -e "$NS_DIR/$n" ]; then
		if awk -v f="$NS_DIR/$n" '$5 == f {m = 1} END {exit !m}' /proc/self/mountinfo; then
			umount "$NS_DIR/$n" || {
				warn "cannot unmount the mount namespace file $NS_DIR/$n"
				ok=0
			}
		fi
		[ "$ok" = 0 ] || rm -f "$NS_DIR/$n"
	fi
	if grep -qxF "$n" "$RUN/netns.list" 2>/dev/null && [ -e "/run/netns/$n" ]; then
		ip netns del "$n" || {
			warn "cannot delete network namespace $n"
			ok=0
		}
	fi
	if grep -qxF "$n" "$RUN/cgroups.list" 2>/dev/null; then
		for c in $(node_cgroup_dirs "$n"); do
			rmdir "$c" 2>/dev/null || {
				warn "cgroup $c is still in use"
				ok=0
			}
		done
	fi
	if [ -e "/run/netns/$CP_NETNS" ] && [ -f "$d/node.env" ]; then
		node_env "$n"
		for cidr in $(ip -n "$CP_NETNS" route show 2>/dev/null | awk -v gw="$N_IP" '$2 == "via" && $3 == gw {print $1}'); do
			ip -n "$CP_NETNS" route del "$cidr" 2>/dev/null
		done
	fi
	[ "$ok" = 1 ] || return 1
	rm -rf "$d" "${RUN:?}/$n"
}
