#!/usr/bin/env bash
# Stops the e2e cluster that up.sh started and undoes what it changed on the
# host: processes, mounts, pod network namespaces and interfaces, the node
# address's interface, the iptables chains kubelet, kube-proxy and the CNI
# plugins created, kube-proxy's nftables tables, the sysctls they changed,
# the fixed host paths the runtime created, and the lab directory (logs/ is
# kept for inspection unless --purge is given). In the netns layout: every
# node's processes, its network and mount namespaces and cgroups, the
# control plane's namespace, the mount points made on the host.
#
# Idempotent and safe after a failed or partial up.sh: every step checks what
# is there, and only things up.sh recorded as its own are removed.
#
# Usage: down.sh [--purge]
set -uo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=SCRIPTDIR/nodes.sh
. "$E2E_DIR/nodes.sh"

PURGE=0
case ${1:-} in
--purge) PURGE=1 ;;
"") ;;
*) die "usage: $0 [--purge]" ;;
esac

failures=0
warn() {
	printf 'warning: %s\n' "$*" >&2
	failures=$((failures + 1))
}

# delete_workloads: workloads and pods deleted while kubelet and the CNI
# still run, so that every pod's network is torn down through CNI DEL. The
# CNI's own pods (E2E_CNI_POD_SELECTOR, a DaemonSet's) stay until the
# others are gone: their agent serves those DELs.
delete_workloads() {
	local keep=() all=(--all)
	pid_alive kube-apiserver || return 0
	if [ "${E2E_LAYOUT:-host}" = host ]; then
		pid_alive kubelet || return 0
	else
		local n alive=0
		for n in $(lab_nodes); do
			pid_alive "$n/kubelet" && alive=1
		done
		[ "$alive" = 1 ] || return 0
	fi
	if [ -n "${E2E_CNI_POD_SELECTOR:-}" ]; then
		# k=v -> k!=v: everything else, objects without the label too.
		keep=(-l "${E2E_CNI_POD_SELECTOR/=/!=}")
		all=()
	fi
	log "deleting workloads and pods (kubelet tears down their networks through CNI)${E2E_CNI_POD_SELECTOR:+; the pods of the CNI itself ($E2E_CNI_POD_SELECTOR) stay until the node stops}"
	kubectl_admin delete deployments,replicasets,statefulsets,jobs --all --all-namespaces --wait=false >/dev/null 2>&1
	kubectl_admin delete daemonsets "${all[@]}" "${keep[@]}" --all-namespaces --wait=false >/dev/null 2>&1
	kubectl_admin delete pods "${all[@]}" "${keep[@]}" --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1
	kubectl_admin wait --for=delete pods "${all[@]}" "${keep[@]}" --all-namespaces --timeout="${E2E_TIMEOUT}s" >/dev/null 2>&1 ||
		log "pods still present after ${E2E_TIMEOUT}s; removing their containers without CNI DEL"
}

# remove_containers: whatever containerd or runc still runs, gone. Normally
# nothing is left after delete_workloads.
remove_containers() {
	local t c id
	if pid_alive containerd; then
		for t in $(ctr_lab tasks ls -q 2>/dev/null); do
			ctr_lab tasks kill -s SIGKILL "$t" >/dev/null 2>&1
			ctr_lab tasks delete -f "$t" >/dev/null 2>&1
		done
		for c in $(ctr_lab containers ls -q 2>/dev/null); do
			ctr_lab containers delete "$c" >/dev/null 2>&1
		done
	fi
}

remove_runc_leftovers() {
	local root=$RUN/runc/k8s.io id pid
	if [ -d "$root" ]; then
		for id in $(runc --root "$root" list -q 2>/dev/null); do
			runc --root "$root" delete --force "$id" >/dev/null 2>&1 || warn "runc could not delete container $id"
		done
	fi
	# Shims serving our containerd socket, in case containerd died first.
	# Their containers are gone; they hold nothing but a socket.
	# shellcheck disable=SC2013 # grep -l prints file names, one per matching process
	for pid in $(grep -lsF -- "$CTR_SOCK" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		if is_ours "$pid" "containerd-shim-runc-v2" && is_ours "$pid" "-address $CTR_SOCK "; then
			stop_pid "$pid" containerd-shim-runc-v2 0
		fi
	done
}

stop_hook_processes() {
	local f
	for f in "$RUN"/hooks/*.pid; do
		[ -f "$f" ] || continue
		stop_pid "$(cat "$f")" "" 20
		rm -f "$f"
	done
}

run_after_down_hook() {
	local hook=${E2E_AFTER_DOWN:-}
	[ -n "$hook" ] || return 0
	if [ ! -x "$hook" ]; then
		warn "E2E_AFTER_DOWN=$hook is not executable; skipped"
		return
	fi
	log "hook E2E_AFTER_DOWN: $hook"
	mkdir -p "$LOGS"
	E2E_LAB=$E2E_LAB E2E_LOG_DIR=$LOGS timeout "$E2E_TIMEOUT" "$hook" >"$LOGS/hook-after-down.log" 2>&1 ||
		warn "hook E2E_AFTER_DOWN ($hook) failed; see $LOGS/hook-after-down.log"
}

# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r
}

unmount_under() {
	local m
	for m in $(mounts_under "$1"); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || warn "cannot unmount $m"
	done
}

remove_pod_interfaces() {
	local bridge=e2e-cni0 veth
	[ "${E2E_CNI:-bridge}" = bridge ] || return 0
	ip link show "$bridge" >/dev/null 2>&1 || return 0
	# The host ends of pod veths normally vanish with their namespaces.
	for veth in $(ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
		ip link del "$veth" 2>/dev/null
	done
	ip link del "$bridge" 2>/dev/null || warn "cannot delete interface $bridge"
}

# remove_chains: the KUBE-* and CNI-* chains that did not exist when up.sh
# started. Jumps to them go first, then their rules, then the chains.
remove_chains() {
	local saved=$RUN/chains.saved ipt t c
	[ -f "$saved" ] || return 0
	local -a doomed=()
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		for t in filter nat mangle raw; do
			for c in $("$ipt" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) {print $2}'); do
				grep -qxF "$ipt $t $c" "$saved" || doomed+=("$ipt $t $c")
			done
		done
	done
	local entry rule
	for entry in "${doomed[@]}"; do
		read -r ipt t c <<<"$entry"
		"$ipt" -t "$t" -S 2>/dev/null | grep -E -- "-j $c( |\$)" | while read -r rule; do
			# shellcheck disable=SC2086 # the rule is a list of arguments
			eval "$ipt -t $t ${rule/#-A /-D }" 2>/dev/null
		done
	done
	for entry in "${doomed[@]}"; do
		read -r ipt t c <<<"$entry"
		"$ipt" -t "$t" -F "$c" 2>/dev/null
	done
	for entry in "${doomed[@]}"; do
		read -r ipt t c <<<"$entry"
		"$ipt" -t "$t" -X "$c" 2>/dev/null || warn "cannot delete $ipt chain $c in table $t"
	done
}

# remove_proxy_tables: the nftables tables of kube-proxy's nftables mode
# (ip and ip6 kube-proxy), when up.sh did not find them.
remove_proxy_tables() {
	local saved=$RUN/nft-tables.saved family
	[ -f "$saved" ] && command -v nft >/dev/null || return 0
	for family in ip ip6; do
		grep -qxF "table $family kube-proxy" "$saved" && continue
		nft list table "$family" kube-proxy >/dev/null 2>&1 || continue
		nft delete table "$family" kube-proxy || warn "cannot delete nftables table $family kube-proxy"
	done
}

# remove_node_iface: the interface up.sh made for the node address.
remove_node_iface() {
	local f=$RUN/node-iface iface
	[ -f "$f" ] || return 0
	iface=$(cat "$f")
	if ip link show "$iface" >/dev/null 2>&1; then
		ip link del "$iface" || {
			warn "cannot delete interface $iface (the node address)"
			return
		}
	fi
	rm -f "$f"
}

# remove_empty_tables: with the nftables backend, the first iptables call
# creates its table. Drop those the cluster brought in, once they are empty
# again (only base chains with no rules).
remove_empty_tables() {
	local saved=$RUN/nft-tables.saved ipt t family
	[ -f "$saved" ] && command -v nft >/dev/null || return 0
	for ipt in iptables ip6tables; do
		"$ipt" --version 2>/dev/null | grep -q nf_tables || continue
		family=ip
		[ "$ipt" = iptables ] || family=ip6
		for t in filter nat mangle raw; do
			grep -qxF "table $family $t" "$saved" && continue
			nft list table "$family" "$t" >/dev/null 2>&1 || continue
			! "$ipt" -t "$t" -S 2>/dev/null | grep -qv '^-P ' || continue
			nft delete table "$family" "$t" 2>/dev/null
		done
	done
}

restore_sysctls() {
	local saved=$RUN/sysctl.saved line
	[ -f "$saved" ] || return 0
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		sysctl -q -w "$line" >/dev/null || warn "cannot restore sysctl $line"
	done <"$saved"
}

# remove_cgroups: the kubepods hierarchy kubelet made (cgroupfs driver).
remove_cgroups() {
	local saved=$RUN/paths.saved d
	[ -f "$saved" ] || return 0
	for d in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
		[ -d "$d" ] || continue
		grep -qxF "$d" "$saved" && continue
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
		[ ! -d "$d" ] || warn "cgroup $d is still in use"
	done
}

# remove_fixed_paths: host paths outside the lab that the runtime always uses.
# Removed when up.sh found them absent; otherwise only our entries go.
remove_fixed_paths() {
	local saved=$RUN/paths.saved p f id
	[ -f "$saved" ] || return 0
	for p in "${FIXED_PATHS[@]}" "${NODE_MOUNTPOINT_ROOTS[@]}"; do
		[ -e "$p" ] || continue
		if ! grep -qxF "$p" "$saved"; then
			unmount_under "$p"
			rm -rf "$p"
		fi
	done
	if [ -d /var/log/containers ]; then
		for f in /var/log/containers/*.log; do
			[ -L "$f" ] || continue
			case $(readlink "$f") in "$E2E_LAB"/*) rm -f "$f" ;; esac
		done
	fi
	# libcni caches each attachment as <network>-<sandbox id>-<interface>;
	# CNI DEL removes it, so only sandboxes that skipped DEL leave one.
	if [ -d /var/lib/cni/results ]; then
		for id in $(sandbox_ids); do
			rm -f /var/lib/cni/results/*-"$id"-*
		done
	fi
}

# sandbox_ids: the pod sandboxes our containerd has known.
sandbox_ids() {
	local d
	for d in "$E2E_LAB"/containerd/root/io.containerd.grpc.v1.cri/sandboxes/* \
		"$E2E_LAB"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*; do
		[ -d "$d" ] && basename "$d"
	done | sort -u
}

remove_lab() {
	local entry
	unmount_under "$E2E_LAB"
	if [ "$PURGE" = 1 ]; then
		rm -rf "$E2E_LAB"
		return
	fi
	for entry in "$E2E_LAB"/* "$E2E_LAB"/.[!.]*; do
		[ -e "$entry" ] || continue
		[ "$entry" = "$LOGS" ] || [ "$entry" = "$LAB_MARKER" ] || rm -rf "$entry"
	done
}

# down_netns: the nodes, then the control plane and its namespace, the
# mount namespaces' directory; the host-side steps follow in main.
down_netns() {
	local n nodes c
	nodes=$(lab_nodes)
	for n in $nodes; do
		node_stop "$n"
	done
	stop kube-scheduler
	stop kube-controller-manager
	stop kube-apiserver
	stop etcd
	stop e2e-forward
	kill_ns_processes net "$(recorded_inode "$RUN/netns.inodes" "$CP_NETNS")" "network namespace $CP_NETNS"
	for n in $nodes; do
		node_destroy "$n"
	done
	# Namespaces recorded but never given a node directory (a run killed
	# while making them).
	if [ -f "$RUN/netns.list" ]; then
		while read -r n; do
			[ "$n" = "$CP_NETNS" ] && continue
			[ -e "/run/netns/$n" ] || continue
			kill_ns_processes net "$(recorded_inode "$RUN/netns.inodes" "$n")" "network namespace $n"
			ip netns del "$n" || warn "cannot delete network namespace $n"
		done <"$RUN/netns.list"
	fi
	if [ -f "$RUN/mountns.list" ]; then
		while read -r n; do
			[ -e "$NS_DIR/$n" ] || continue
			kill_ns_processes mnt "$(recorded_inode "$RUN/mountns.inodes" "$n")" "mount namespace $n"
			umount "$NS_DIR/$n" 2>/dev/null
			rm -f "$NS_DIR/$n" || warn "cannot remove $NS_DIR/$n"
		done <"$RUN/mountns.list"
	fi
	if [ -f "$RUN/cgroups.list" ]; then
		while read -r n; do
			for c in $(node_cgroup_dirs "$n"); do
				rmdir "$c" 2>/dev/null || warn "cgroup $c is still in use"
			done
		done < <(sort -u "$RUN/cgroups.list")
	fi
	if grep -qxF "$CP_NETNS" "$RUN/netns.list" 2>/dev/null && [ -e "/run/netns/$CP_NETNS" ]; then
		ip netns del "$CP_NETNS" || warn "cannot delete network namespace $CP_NETNS"
	fi
	if [ -f "$RUN/ns-dir" ]; then
		if awk -v d="$NS_DIR" '$5 == d {f = 1} END {exit !f}' /proc/self/mountinfo; then
			umount "$NS_DIR" || warn "cannot unmount $NS_DIR"
		fi
		rm -f "$RUN/ns-dir"
	fi
}

main() {
	require_root
	if [ ! -d "$E2E_LAB" ]; then
		log "nothing to stop: $E2E_LAB does not exist"
		return 0
	fi
	[ -f "$LAB_MARKER" ] || die "$E2E_LAB was not made by up.sh (no $(basename "$LAB_MARKER")); refusing to clean it"
	local saved_after_down=${E2E_AFTER_DOWN:-}
	# shellcheck disable=SC1091 # written by up.sh
	[ ! -f "$E2E_LAB/cluster.env" ] || . "$E2E_LAB/cluster.env"
	E2E_AFTER_DOWN=${saved_after_down:-${E2E_AFTER_DOWN:-}}
	# A run that failed before cluster.env recorded its layout.
	[ ! -f "$RUN/layout" ] || E2E_LAYOUT=$(cat "$RUN/layout")

	log "stopping the e2e cluster in $E2E_LAB (layout ${E2E_LAYOUT:-host})"
	delete_workloads
	if [ "${E2E_LAYOUT:-host}" = netns ]; then
		down_netns
	else
		stop kubelet
		remove_containers
		stop containerd
		remove_runc_leftovers
		stop_hook_processes
		run_after_down_hook
		stop kube-proxy
		stop kube-scheduler
		stop kube-controller-manager
		stop kube-apiserver
		stop etcd
	fi

	unmount_under "$E2E_LAB"
	remove_pod_interfaces
	remove_chains
	remove_proxy_tables
	remove_empty_tables
	remove_node_iface
	restore_sysctls
	remove_cgroups
	remove_fixed_paths
	if [ "$failures" -gt 0 ]; then
		# The records in $RUN stay, so that running down.sh again can finish.
		log "down finished with $failures problem(s), see the warnings above; $E2E_LAB is kept, run down.sh again"
		return 1
	fi
	remove_lab
	log "e2e cluster stopped and cleaned up in $(elapsed_ms) ms"
}

main "$@"
