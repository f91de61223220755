#!/usr/bin/env bash
# ovsnet end to end on a real single-node Kubernetes cluster (e2e/cluster/):
# OVS (userspace datapath) and ovsnet-agent run on the host as the DaemonSet
# would run them, the ovsnet plugin is containerd's only CNI, and the Go suite
# in e2e/suite/ drives the cluster. See e2e/README.md.
#
# Usage: e2e/run.sh [all|up|test|down|bench]
#   all    (make e2e) build, up, test, down; always tears down and checks that
#          the host is as before; prints the time of each phase
#   up     build and start the cluster with ovsnet; leaves it running
#   test   run the suite against the running cluster (E2E_TEST_RUN=regexp
#          selects tests)
#   down   stop the cluster, remove ovsnet from the host
#   bench  (make bench-e2e) pod Ready latency of 30 pods created at once,
#          with ovsnet and then with the reference bridge plugin as the floor
#
# Needs root, the Debian packages of e2e/README.md, and `make build` (the
# binaries in bin/). Variables: those of e2e/cluster (E2E_LAB, E2E_TIMEOUT,
# OVSNET_E2E_CACHE, ...), BIN (default bin), E2E_BENCH_PODS (30),
# E2E_BENCH_ROUNDS (3 per cluster), E2E_BENCH_CYCLES (2: clusters ovsnet,
# bridge, bridge, ovsnet), E2E_BENCH_TARGET_MS (20), E2E_SUITE_TIMEOUT (20m),
# E2E_CNI_VERSION (the conflist's cniVersion; default: the shipped one, or
# 1.0.0 for containerd 1.x).
set -euo pipefail
E2E_ROOT=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/cluster/lib.sh
. "$E2E_ROOT/cluster/lib.sh"

BIN=$(realpath -m "${BIN:-$E2E_REPO/bin}")
E2E_BENCH_PODS=${E2E_BENCH_PODS:-30}
E2E_BENCH_ROUNDS=${E2E_BENCH_ROUNDS:-3}
E2E_BENCH_CYCLES=${E2E_BENCH_CYCLES:-2}
E2E_BENCH_TARGET_MS=${E2E_BENCH_TARGET_MS:-20}
E2E_SUITE_TIMEOUT=${E2E_SUITE_TIMEOUT:-20m}
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

PHASES=()
# phase NAME CMD...: run CMD, recording how long it took, and whether it failed.
phase() {
	local name=$1 t0 rc=0
	shift
	t0=$(date +%s%N)
	log "phase $name: start"
	"$@" || rc=$?
	local ms=$((($(date +%s%N) - t0) / 1000000)) result=ok
	[ "$rc" -eq 0 ] || result="FAILED (exit $rc)"
	PHASES+=("$(printf '%-14s %8.1f s  %s' "$name" "${ms}e-3" "$result")")
	log "phase $name: $result in ${ms} ms"
	return "$rc"
}

print_phases() {
	local p
	[ ${#PHASES[@]} -gt 0 ] || return 0
	echo "e2e phase timings:" >&2
	for p in "${PHASES[@]}"; do
		echo "  $p" >&2
	done
}

# build_tools: the e2e programs (the ovsnet binaries come from make build).
# Every step is checked explicitly: called as `phase ... || ...`, the
# function runs without errexit.
build_tools() {
	local b
	for b in ovsnet ovsnet-agent ovsnetctl; do
		[ -x "$BIN/$b" ] || die "$BIN/$b missing: run make build first (make e2e does)"
	done
	(
		cd "$E2E_REPO" &&
			go build -o "$BIN/" ./e2e/ovsnet/e2e-manifest &&
			go build -o "$BIN/e2e-podbench" ./e2e/podbench &&
			go test -c -race -tags e2e -o "$BIN/e2e-suite.test" ./e2e/suite
	) || return 1
	mkdir -p "$BIN/e2e" || return 1
	# The conflist of the shipped ConfigMap, pointed at the lab's agent
	# socket; up.sh fills in ${E2E_LAB} and installs it as the only one.
	# shellcheck disable=SC2016 # a placeholder for up.sh's envsubst
	"$BIN/e2e-manifest" -f "$E2E_REPO/deploy/ovsnet.yaml" -key 10-ovsnet.conflist \
		-agent-socket '${E2E_LAB}/ovsnet/run/cni.sock' -cni-version "$(runtime_cni_version)" \
		>"$BIN/e2e/10-ovsnet.conflist"
}

# runtime_cni_version: the newest CNI spec version the installed containerd
# reads results of, when it is older than the shipped conflist's; empty to
# keep the shipped one. containerd 1.6 (Debian 12's 1.6.20) rejects results
# of spec 1.1.0 after a successful ADD ("unsupported CNI result version"):
# its CNI library predates that spec, which containerd 2's reads. Every 1.x
# gets 1.0.0, which the plugin speaks as well. E2E_CNI_VERSION wins.
runtime_cni_version() {
	if [ -n "${E2E_CNI_VERSION+x}" ]; then
		echo "$E2E_CNI_VERSION"
		return
	fi
	local v
	v=$(containerd --version 2>/dev/null | awk '{print $3}')
	case ${v#v} in
	1.*)
		log "containerd $v reads CNI results up to 1.0.0: the conflist gets cniVersion 1.0.0"
		echo 1.0.0
		;;
	esac
}

up_ovsnet() {
	E2E_CNI=custom E2E_CNI_BIN_DIR=$BIN E2E_CNI_PLUGINS=ovsnet \
		E2E_CNI_CONFLIST=$BIN/e2e/10-ovsnet.conflist \
		E2E_BEFORE_KUBELET=$E2E_ROOT/ovsnet/before-kubelet \
		E2E_AFTER_NODE=$E2E_ROOT/ovsnet/after-node \
		E2E_AFTER_DOWN=$E2E_ROOT/ovsnet/after-down \
		OVSNET_E2E_BIN=$BIN \
		"$E2E_ROOT/cluster/up.sh"
}

up_bridge() {
	E2E_CNI=bridge "$E2E_ROOT/cluster/up.sh"
}

down() {
	"$E2E_ROOT/cluster/down.sh"
}

# with_cluster_env CMD...: CMD with the cluster's and ovsnet's settings exported.
with_cluster_env() {
	[ -f "$E2E_LAB/cluster.env" ] || die "no cluster in $E2E_LAB: run $0 up first"
	(
		# shellcheck disable=SC1091 # written by up.sh and before-kubelet
		. "$E2E_LAB/cluster.env"
		# shellcheck disable=SC1091
		[ ! -f "$E2E_LAB/ovsnet/ovsnet.env" ] || . "$E2E_LAB/ovsnet/ovsnet.env"
		export OVSNET_REPO=$E2E_REPO
		"$@"
	)
}

run_suite() {
	local args=(-test.v -test.count=1 "-test.timeout=$E2E_SUITE_TIMEOUT")
	[ -z "${E2E_TEST_RUN:-}" ] || args+=("-test.run=$E2E_TEST_RUN")
	with_cluster_env "$BIN/e2e-suite.test" "${args[@]}"
}

# host_is_clean: nothing of ovsnet or of the cluster is left on the host.
host_is_clean() {
	local dirty=0 n pid
	for n in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
		case $n in
		br-int | ovsnet-gw0 | ovs-netdev | ovsn* | e2e-cni0)
			echo "error: interface $n is still there" >&2
			dirty=1
			;;
		esac
	done
	if nft list table ip ovsnet >/dev/null 2>&1; then
		echo "error: nftables table ip ovsnet is still there" >&2
		dirty=1
	fi
	for n in $(ip netns list 2>/dev/null | awk '$1 ~ /^e2ek-/ {print $1}'); do
		echo "error: network namespace $n (made by the suite) is still there" >&2
		dirty=1
	done
	# shellcheck disable=SC2013 # grep -l prints file names, one per process
	for pid in $(grep -lsF -- "$E2E_LAB/" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		[ "$pid" = $$ ] && continue
		if is_ours "$pid" "$E2E_LAB/"; then
			echo "error: process $pid still runs: $(tr '\0' ' ' <"/proc/$pid/cmdline")" >&2
			dirty=1
		fi
	done
	[ "$dirty" -eq 0 ] && log "host restored: no ovsnet devices, nftables table or cluster processes left"
}

# interrupted: Ctrl-C or a CI timeout's SIGTERM while a cluster may run.
interrupted() {
	log "interrupted: tearing the cluster down"
	down >&2 || true
	host_is_clean || true
	print_phases
	exit 130
}

all() {
	local rc=0
	if ! phase build-tools build_tools || ! phase k8s-build "$E2E_ROOT/cluster/build.sh"; then
		print_phases
		return 1
	fi
	# From here on the cluster is torn down whatever happens.
	trap interrupted INT TERM
	if phase up up_ovsnet; then
		phase suite run_suite || rc=1
	else
		rc=1
	fi
	trap - INT TERM
	phase down down || rc=1
	phase host-check host_is_clean || rc=1
	print_phases
	return "$rc"
}

# bench_one CNI: a cluster with CNI, E2E_BENCH_ROUNDS measured rounds added
# to $BIN/bench-e2e/CNI.json, the cluster down again.
bench_one() {
	local cni=$1 rc=0 args=()
	[ "$cni" != ovsnet ] || args=(--agent "$(agent_addr)")
	phase "up-$cni" "up_$cni" || return 1
	phase "bench-$cni" with_cluster_env "$BIN/e2e-podbench" run --pods "$E2E_BENCH_PODS" \
		--rounds "$E2E_BENCH_ROUNDS" --label "$cni" --out "$BIN/bench-e2e/$cni.json" --append "${args[@]}" || rc=1
	phase "down-$cni" down || rc=1
	return "$rc"
}

bench() {
	local rc=0 cycle cni order
	if ! phase build-tools build_tools || ! phase k8s-build "$E2E_ROOT/cluster/build.sh"; then
		print_phases
		return 1
	fi
	mkdir -p "$BIN/bench-e2e"
	rm -f "$BIN/bench-e2e"/*.json
	trap interrupted INT TERM
	# Clusters alternate, and each cycle swaps which goes first, so that a
	# drift in the machine's load does not favour one CNI.
	for ((cycle = 1; cycle <= E2E_BENCH_CYCLES && rc == 0; cycle++)); do
		order=(ovsnet bridge)
		((cycle % 2)) || order=(bridge ovsnet)
		for cni in "${order[@]}"; do
			bench_one "$cni" || {
				rc=1
				break
			}
		done
	done
	trap - INT TERM
	phase host-check host_is_clean || rc=1
	if [ -f "$BIN/bench-e2e/ovsnet.json" ] && [ -f "$BIN/bench-e2e/bridge.json" ]; then
		"$BIN/e2e-podbench" compare --target-ms "$E2E_BENCH_TARGET_MS" \
			"$BIN/bench-e2e/ovsnet.json" "$BIN/bench-e2e/bridge.json" || rc=1
	fi
	print_phases
	return "$rc"
}

# agent_addr: the agent's health address from the shipped agent.yaml.
agent_addr() {
	local a
	a=$("$BIN/e2e-manifest" -f "$E2E_REPO/deploy/ovsnet.yaml" -key agent.yaml -field health-addr)
	echo "${a:-127.0.0.1:9364}"
}

main() {
	require_root
	case ${1:-all} in
	all) all ;;
	up)
		build_tools
		up_ovsnet
		;;
	test)
		build_tools
		run_suite
		;;
	down) down ;;
	bench) bench ;;
	*) die "usage: $0 [all|up|test|down|bench]" ;;
	esac
}

main "$@"
