#!/usr/bin/env bash
# Adds a node to, or removes one from, a running cluster of the netns
# layout (up.sh with E2E_NODES > 1), the way a node joins and leaves a real
# cluster: the end-to-end tests check that traffic elsewhere does not
# notice.
#
#   node.sh add [NAME]   a node like the others (next free index when NAME
#                        is not given): namespaces, containerd with the
#                        cluster's images, kubelet, kube-proxy, the CNI's
#                        hooks; returns once the node is Ready. Prints NAME.
#   node.sh remove NAME  its pods deleted (CNI DEL through its agent), then
#                        kubelet, its containers, containerd and kube-proxy
#                        stopped, the Node object deleted, its namespaces,
#                        cgroups and directories removed.
#
# Reads the cluster's settings from $E2E_LAB/cluster.env. down.sh removes
# an added node like any other.
set -euo pipefail
# The cluster's settings first: lib.sh derives the layout's from them.
lab=$(realpath -m "${E2E_LAB:-/var/tmp/ovsnet-e2e}")
if [ ! -f "$lab/cluster.env" ]; then
	echo "error: no cluster in $lab: run up.sh (or e2e/run.sh up) first" >&2
	exit 1
fi
# shellcheck disable=SC1091 # written by up.sh
. "$lab/cluster.env"
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
[ "${E2E_LAYOUT:-host}" = netns ] || die "node.sh needs a cluster of the netns layout (E2E_NODES > 1); $E2E_LAB runs the host layout"
# shellcheck source=SCRIPTDIR/components.sh
. "$E2E_DIR/components.sh"
# shellcheck source=SCRIPTDIR/nodes.sh
. "$E2E_DIR/nodes.sh"

failures=0
warn() {
	printf 'warning: %s\n' "$*" >&2
	failures=$((failures + 1))
}

E2E_PROXY_MODE=${E2E_PROXY_MODE:-iptables}

# next_index: the smallest node index no node of the lab has.
next_index() {
	local i=1
	while [ -e "$(node_dir "$(node_name "$i")")" ]; do
		i=$((i + 1))
	done
	echo "$i"
}

add() {
	local n=${1:-} i cidr
	if [ -z "$n" ]; then
		i=$(next_index)
		n=$(node_name "$i")
	else
		case $n in
		"$MN_PREFIX"-n[0-9]*) i=${n#"$MN_PREFIX"-n} ;;
		*) die "node name $n: want $MN_PREFIX-nI (I a number), as the cluster's nodes are named" ;;
		esac
	fi
	[ ! -e "$(node_dir "$n")" ] || die "node $n exists already"
	log "adding node $n"
	# A node that fails halfway is removed again.
	trap 'rc=$?; [ "$rc" -eq 0 ] || { echo "node.sh add $n failed; removing what was made" >&2; remove_node "$n" >&2 || true; }' EXIT
	node_create "$n" "$i"
	node_start_runtime "$n"
	node_images "$n"
	(node_hook_env "$n" && run_hook E2E_BEFORE_KUBELET "before-kubelet-$n")
	node_start_kubelet "$n"
	kwait "node $n to register" --for=create "node/$n"
	node_start_proxy "$n"
	wait_up "kube-proxy /healthz of node $n" proxy_healthy in_node "$n"
	node_pod_cidr "$n"
	cidr=$NODE_POD_CIDR
	(
		node_hook_env "$n"
		E2E_POD_CIDR=$cidr
		export E2E_POD_CIDR
		run_hook E2E_AFTER_NODE "after-node-$n"
		install_cni_conflist "$(node_dir "$n")/host/etc/cni/net.d"
	)
	kwait "node $n to be Ready" --for=condition=Ready "node/$n"
	# Its processes outlive this script: down.sh (or node.sh remove) stops
	# them by their PID files.
	trap - EXIT
	log "node $n Ready (pod CIDR $cidr) in $(elapsed_ms) ms"
	echo "$n"
}

# remove_node NODE: as a node leaves for good. Like down.sh, it goes on
# past a step that fails (each says so), and fails at the end.
remove_node() {
	set +e
	local n=$1 sel=()
	[ -d "$(node_dir "$n")" ] || die "no node $n in $NODES_DIR"
	log "removing node $n"
	if pid_alive kube-apiserver && pid_alive "$n/kubelet"; then
		# Its pods first, but the CNI's own, whose agent serves their DELs.
		[ -z "${E2E_CNI_POD_SELECTOR:-}" ] || sel=(-l "${E2E_CNI_POD_SELECTOR/=/!=}")
		kubectl_admin delete pods --all-namespaces --field-selector "spec.nodeName=$n" "${sel[@]}" \
			--grace-period=1 --wait=false >/dev/null
		kubectl_admin wait --for=delete pods --all-namespaces --field-selector "spec.nodeName=$n" "${sel[@]}" \
			--timeout="${E2E_TIMEOUT}s" >/dev/null ||
			warn "pods of node $n still there after ${E2E_TIMEOUT}s; stopping it anyway"
	fi
	node_stop "$n"
	# With kubelet gone it cannot register the Node again.
	if pid_alive kube-apiserver; then
		kubectl_admin delete node "$n" --ignore-not-found --wait=true --timeout="${E2E_TIMEOUT}s" >/dev/null ||
			warn "cannot delete Node $n"
	fi
	node_destroy "$n"
	[ "$failures" -eq 0 ] || {
		echo "error: removing node $n: $failures problem(s), see the warnings above" >&2
		return 1
	}
	log "node $n removed in $(elapsed_ms) ms"
}

main() {
	require_root
	case ${1:-} in
	add) add "${2:-}" ;;
	remove)
		[ -n "${2:-}" ] || die "usage: $0 remove NAME"
		remove_node "$2"
		;;
	*) die "usage: $0 add [NAME] | remove NAME" ;;
	esac
}

main "$@"
