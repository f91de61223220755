#!/usr/bin/env bash
# ovsnet end to end on a real Kubernetes cluster (e2e/cluster/) whose only CNI
# is ovsnet, and the Go suite in e2e/suite/ drives the cluster. One node
# (E2E_NODES=1, the default): the node is the machine itself, and OVS
# (userspace datapath) and ovsnet-agent run on it as host processes
# configured as the DaemonSet would run them. E2E_NODES=N: every node in
# namespaces of its own, and ovsnet installed as users install it, the
# DaemonSet of deploy/ovsnet.yaml from the image of `make image`
# (E2E_OVSNET_DEPLOY=host runs the host processes in each node instead). See
# e2e/README.md.
#
# Usage: e2e/run.sh [all|up|test|down|bench|conformance|conformance-test]
#   all    (make e2e) build, up, test, down; always tears down and checks that
#          the host is as before; prints the time of each phase
#   up     build and start the cluster with ovsnet (E2E_CNI=bridge: the
#          reference plugins); leaves it running
#   test   run the suite against the running cluster (E2E_TEST_RUN=regexp
#          selects tests)
#   down   stop the cluster, remove ovsnet from the host
#   bench  (make bench-e2e, one node) pod Ready latency of 30 pods created at once,
#          with ovsnet and then with the reference bridge plugin as the floor
#   conformance
#          (make conformance) Kubernetes' own sig-network conformance tests
#          (e2e.test) on a cluster with ovsnet, or with E2E_CNI=bridge the
#          reference plugins: build, up, run, down, host check; the JUnit
#          report and a Markdown table go to $E2E_CONFORMANCE_OUT
#   conformance-test
#          the same tests against a cluster already up (run.sh up), which
#          stays up; E2E_CONFORMANCE_FOCUS picks others
#
# Needs root, the Debian packages of e2e/README.md, and `make build` (the
# binaries in bin/). Variables: those of e2e/cluster (E2E_LAB, E2E_TIMEOUT,
# OVSNET_E2E_CACHE, ...), BIN (default bin), E2E_BENCH_PODS (30),
# E2E_BENCH_ROUNDS (3 per cluster), E2E_BENCH_CYCLES (2: clusters ovsnet,
# bridge, bridge, ovsnet), E2E_BENCH_TARGET_MS (20), E2E_SUITE_TIMEOUT (20m),
# E2E_CNI_VERSION (the conflist's cniVersion; default: the shipped one, or
# 1.0.0 for containerd 1.x), E2E_CNI (custom = ovsnet, the default, or
# bridge), and for conformance E2E_CONFORMANCE_FOCUS, E2E_CONFORMANCE_SKIP,
# E2E_CONFORMANCE_PROCS (4), E2E_CONFORMANCE_TIMEOUT (90m),
# E2E_CONFORMANCE_OUT (bin/conformance/<cni>, bin/conformance/<cni>-<N>nodes),
# E2E_NODES (1), E2E_OVSNET_DEPLOY (host for one node, daemonset for more),
# E2E_OVSNET_TRAFFIC_MODE (the manifest's, geneve; daemonset only).
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
# Which CNI run.sh up and conformance bring up: ovsnet (custom) or bridge.
E2E_CNI=${E2E_CNI:-custom}
case $E2E_CNI in
custom | ovsnet) E2E_CNI=custom CNI_LABEL=ovsnet ;;
bridge) CNI_LABEL=bridge ;;
*) die "E2E_CNI=$E2E_CNI: want custom (ovsnet) or bridge" ;;
esac
# Kubernetes' sig-network conformance tests, all 45 of v1.34. The skip list
# is empty: each test that cannot run here would be named in it, with its
# reason in docs/conformance.md.
E2E_CONFORMANCE_FOCUS=${E2E_CONFORMANCE_FOCUS:-'\[sig-network\].*\[Conformance\]'}
E2E_CONFORMANCE_SKIP=${E2E_CONFORMANCE_SKIP:-}
E2E_CONFORMANCE_PROCS=${E2E_CONFORMANCE_PROCS:-4}
E2E_CONFORMANCE_TIMEOUT=${E2E_CONFORMANCE_TIMEOUT:-90m}
OUT_LABEL=$CNI_LABEL
[ "$E2E_NODES" = 1 ] || OUT_LABEL=$CNI_LABEL-${E2E_NODES}nodes
E2E_CONFORMANCE_OUT=$(realpath -m "${E2E_CONFORMANCE_OUT:-$BIN/conformance/$OUT_LABEL}")
# The upstream NetworkPolicy tests (the Netpol suite of e2e.test, 50 specs
# of v1.34), make conformance's second run, ovsnet only (the bridge plugin
# enforces no NetworkPolicy). E2E_NETPOL=0 leaves them out. What is
# skipped, and why, is in docs/conformance.md.
E2E_NETPOL=${E2E_NETPOL:-1}
E2E_NETPOL_FOCUS=${E2E_NETPOL_FOCUS:-'\[Feature:NetworkPolicy\]|Netpol'}
E2E_NETPOL_SKIP=${E2E_NETPOL_SKIP-'\[Feature:SCTPConnectivity\]'}
E2E_NETPOL_OUT=$(realpath -m "${E2E_NETPOL_OUT:-$BIN/conformance/$OUT_LABEL-netpol}")
# How ovsnet runs in the cluster: host (OVS and the agent as host processes
# in each node, configured from deploy/ovsnet.yaml: the way to debug them)
# or daemonset (kubectl apply -f deploy/ovsnet.yaml with the image of make
# image imported into every node: what users run). The DaemonSet's host
# paths need nodes with their own mount namespaces: the netns layout.
if [ -z "${E2E_OVSNET_DEPLOY:-}" ]; then
	E2E_OVSNET_DEPLOY=host
	[ "$E2E_LAYOUT" = host ] || E2E_OVSNET_DEPLOY=daemonset
fi
case $E2E_OVSNET_DEPLOY in
host) ;;
daemonset)
	[ "$E2E_LAYOUT" = netns ] || die "E2E_OVSNET_DEPLOY=daemonset needs nodes of their own (E2E_NODES=2, or E2E_LAYOUT=netns): the DaemonSet's host paths would be this machine's"
	;;
*) die "E2E_OVSNET_DEPLOY=$E2E_OVSNET_DEPLOY: want host or daemonset" ;;
esac
[ "$E2E_OVSNET_DEPLOY" = daemonset ] || [ "$E2E_LAYOUT" = host ] ||
	die "E2E_OVSNET_DEPLOY=host with E2E_LAYOUT=netns is not supported yet: use the DaemonSet (the default) for more than one node"
[ -z "${E2E_OVSNET_TRAFFIC_MODE:-}" ] || [ "$E2E_OVSNET_DEPLOY" = daemonset ] ||
	die "E2E_OVSNET_TRAFFIC_MODE applies to the DaemonSet (E2E_OVSNET_DEPLOY=daemonset) only"
# The DaemonSet's image, made by make image (deploy/image/build.sh).
IMAGE_OUT=$BIN/image
# Tests whose failure with this CNI is known and explained (one name a
# line, with the reason in a comment): make e2e and make conformance fail
# only on other failures, and say which known ones failed or now pass.
# E2E_KNOWN_FAILURES=none makes every failure count.
E2E_KNOWN_FAILURES=${E2E_KNOWN_FAILURES:-}
# 1: make conformance does not run the tests listed as known failures (CI:
# a failing test takes minutes to time out; the full run's table is in
# docs/conformance.md).
E2E_CONFORMANCE_SKIP_KNOWN=${E2E_CONFORMANCE_SKIP_KNOWN:-0}
known_failures_file() {
	local f=${E2E_KNOWN_FAILURES:-$E2E_ROOT/known-failures/$CNI_LABEL-$1.txt}
	[ "$f" != none ] && [ -f "$f" ] && echo "$f"
	return 0
}
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
			go build -o "$BIN/e2e-junit" ./e2e/junitreport &&
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

# build_image: the DaemonSet's image (make image), when the cluster runs it.
# Its Debian layer is cached beside the cluster's binaries and images, in
# $OVSNET_E2E_CACHE/ovsnet-image (OVSNET_IMAGE_CACHE chooses another).
build_image() {
	OVSNET_IMAGE_CACHE=${OVSNET_IMAGE_CACHE:-$OVSNET_E2E_CACHE/ovsnet-image} OVSNET_IMAGE_OUT=$IMAGE_OUT \
		"$E2E_REPO/deploy/image/build.sh"
}

# build_all: the phases every command that brings a cluster up needs.
build_all() {
	phase build-tools build_tools || return 1
	phase k8s-build "$E2E_ROOT/cluster/build.sh" || return 1
	[ "$E2E_OVSNET_DEPLOY" != daemonset ] || [ "$E2E_CNI" != custom ] || phase image build_image || return 1
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
	if [ "$E2E_OVSNET_DEPLOY" = daemonset ]; then
		up_ovsnet_daemonset
		return
	fi
	E2E_CNI=custom E2E_CNI_BIN_DIR=$BIN E2E_CNI_PLUGINS=ovsnet \
		E2E_CNI_CONFLIST=$BIN/e2e/10-ovsnet.conflist \
		E2E_BEFORE_KUBELET=$E2E_ROOT/ovsnet/before-kubelet \
		E2E_AFTER_NODE=$E2E_ROOT/ovsnet/after-node \
		E2E_AFTER_DOWN=$E2E_ROOT/ovsnet/after-down \
		OVSNET_E2E_BIN=$BIN \
		"$E2E_ROOT/cluster/up.sh"
}

# up_ovsnet_daemonset: nodes whose containerd has the image and only the
# loopback plugin; the DaemonSet's install-cni brings ovsnet, portmap and
# the conflist.
up_ovsnet_daemonset() {
	[ -f "$IMAGE_OUT/ovsnet.tar" ] || die "no image in $IMAGE_OUT/ovsnet.tar: run make image (run.sh all builds it)"
	E2E_CNI=custom E2E_CNI_BIN_DIR='' E2E_CNI_CONFLIST='' E2E_CNI_REFERENCE_PLUGINS=loopback \
		E2E_EXTRA_IMAGES="${E2E_EXTRA_IMAGES:+$E2E_EXTRA_IMAGES }$IMAGE_OUT/ovsnet.tar" \
		E2E_AFTER_NODES=$E2E_ROOT/ovsnet/daemonset E2E_CNI_POD_SELECTOR=app=ovsnet-agent \
		OVSNET_E2E_BIN=$BIN \
		"$E2E_ROOT/cluster/up.sh"
}

up_bridge() {
	E2E_CNI=bridge "$E2E_ROOT/cluster/up.sh"
}

# up_cni: the cluster with the CNI of E2E_CNI.
up_cni() {
	if [ "$E2E_CNI" = bridge ]; then up_bridge; else up_ovsnet; fi
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
	local args=(-test.v -test.count=1 "-test.timeout=$E2E_SUITE_TIMEOUT") rc=0 known log
	[ -z "${E2E_TEST_RUN:-}" ] || args+=("-test.run=$E2E_TEST_RUN")
	known=$(known_failures_file suite)
	log=$(mktemp)
	with_cluster_env "$BIN/e2e-suite.test" "${args[@]}" 2>&1 | tee "$log" || rc=$?
	if [ "$rc" -ne 0 ] && [ -n "$known" ]; then
		judge_go_failures "$log" "$known" && rc=0
	fi
	rm -f "$log"
	return "$rc"
}

# judge_go_failures LOG KNOWN: whether every failed test of a go test -v
# LOG is listed in the file KNOWN, or is a parent whose failed subtests
# all are (a parent failing on its own, with no failed subtest, is not).
judge_go_failures() {
	local log=$1 known=$2 f ok=0 listed
	listed=$(sed 's/#.*//; s/[[:space:]]*$//; /^$/d' "$known")
	grep -q -- '--- FAIL: ' "$log" || {
		echo "error: the suite failed without a failed test (build, timeout or panic); see above" >&2
		return 1
	}
	# shellcheck disable=SC2013 # go test names have no spaces
	for f in $(grep -oE -- '--- FAIL: [^ ]+' "$log" | awk '{print $3}' | sort -u); do
		if grep -qxF "$f" <<<"$listed"; then
			echo "known failure: $f (listed in $known)" >&2
		elif grep -oE -- '--- FAIL: [^ ]+' "$log" | awk '{print $3}' | grep -q "^$f/" &&
			! grep -oE -- '--- FAIL: [^ ]+' "$log" | awk '{print $3}' | grep "^$f/" | grep -vqxF "$listed"; then
			: # a parent whose failed subtests are all known
		else
			echo "UNEXPECTED FAILURE: $f" >&2
			ok=1
		fi
	done
	while read -r f; do
		grep -qE -- "--- PASS: $f " "$log" && echo "listed as a known failure but passed (remove it from $known): $f" >&2
	done <<<"$listed"
	[ "$ok" -eq 0 ] && log "the suite's failures are all known ($known)"
	return "$ok"
}

# host_state: what the cluster may change on the host and down.sh must put
# back, one line each: the KUBE-* and CNI-* iptables chains, kube-proxy's
# nftables tables and the sysctls up.sh saves.
host_state() {
	local ipt t k v
	for ipt in iptables ip6tables; do
		for t in filter nat mangle raw; do
			"$ipt" -t "$t" -S 2>/dev/null | awk -v ipt="$ipt" -v t="$t" '$1 == "-N" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) {print "chain", ipt, t, $2}'
		done
	done
	nft list tables 2>/dev/null | awk '$3 == "kube-proxy" {print "nftables", $0}'
	# The runtime's fixed paths (host layout) and the nodes' mount points
	# (netns layout): made by up.sh where missing, removed by down.sh.
	for k in "${FIXED_PATHS[@]}" "${NODE_MOUNTPOINT_ROOTS[@]}"; do
		[ ! -e "$k" ] || echo "path $k"
	done | sort -u
	for k in "${SAVED_SYSCTLS[@]}"; do
		v=$(sysctl -n "$k" 2>/dev/null) && echo "sysctl $k=$v"
	done
}

# record_host_state: the state before the first cluster of this run, in
# $HOST_STATE_BEFORE, for host_is_clean.
record_host_state() {
	HOST_STATE_BEFORE=$(host_state | sort)
}

# host_is_clean: nothing of ovsnet or of the cluster is left on the host,
# and what the cluster may change is as record_host_state found it.
host_is_clean() {
	local dirty=0 n pid
	if [ -n "${HOST_STATE_BEFORE+x}" ]; then
		local diff
		diff=$(diff <(echo "$HOST_STATE_BEFORE") <(host_state | sort) | grep '^[<>]') || true
		if [ -n "$diff" ]; then
			echo "error: the host differs from before the cluster (< before, > now):" >&2
			echo "$diff" >&2
			dirty=1
		fi
	fi
	if ip link show "$NODE_IFACE" >/dev/null 2>&1; then
		echo "error: interface $NODE_IFACE (the node address) is still there" >&2
		dirty=1
	fi
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
	for n in $(ip netns list 2>/dev/null | awk -v p="$MN_PREFIX-" 'index($1, p) == 1 {print $1}'); do
		echo "error: network namespace $n (a node or the control plane of the netns layout) is still there" >&2
		dirty=1
	done
	for n in /sys/fs/cgroup/"$MN_PREFIX"-* /sys/fs/cgroup/*/"$MN_PREFIX"-*; do
		[ -e "$n" ] || continue
		echo "error: cgroup $n (a node's cgroup root) is still there" >&2
		dirty=1
	done
	if awk -v d="$E2E_LAB" '$5 == d || index($5, d "/") == 1 {f = 1} END {exit !f}' /proc/self/mountinfo; then
		echo "error: something is still mounted under $E2E_LAB" >&2
		dirty=1
	fi
	# shellcheck disable=SC2013 # grep -l prints file names, one per process
	for pid in $(grep -lsF -- "$E2E_LAB/" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		[ "$pid" = $$ ] && continue
		if is_ours "$pid" "$E2E_LAB/"; then
			echo "error: process $pid still runs: $(tr '\0' ' ' <"/proc/$pid/cmdline")" >&2
			dirty=1
		fi
	done
	[ "$dirty" -eq 0 ] && log "host restored: no ovsnet devices, node interface, nftables table, cluster processes, namespaces, cgroups or mounts left; chains, kube-proxy tables, fixed paths and sysctls as before"
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
	if ! build_all; then
		print_phases
		return 1
	fi
	# From here on the cluster is torn down whatever happens.
	trap interrupted INT TERM
	record_host_state
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
	[ "$E2E_LAYOUT" = host ] || die "make bench-e2e runs on one node (E2E_NODES=1)"
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
	record_host_state
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

# up_conformance: the cluster of E2E_CNI with the conformance test images
# imported and tagged with the names the suite asks for.
up_conformance() {
	E2E_EXTRA_IMAGES="$CONFORMANCE_DIR/images/agnhost.tar $CONFORMANCE_DIR/images/jessie-dnsutils.tar" \
		E2E_IMAGE_ALIASES="${CONFORMANCE_ALIASES[*]}" up_cni
}

# up_dev: run.sh up: the cluster of E2E_CNI, with the conformance images
# when build.sh conformance has made them (so that conformance-test can run
# against it), without building them.
up_dev() {
	if [ -f "$CONFORMANCE_DIR/images/stamp" ]; then
		up_conformance
	else
		log "no conformance images in $CONFORMANCE_DIR (build.sh conformance): starting the cluster without them"
		up_cni
	fi
}

# run_ginkgo NAME FOCUS SKIP OUT: e2e.test through ginkgo
# (E2E_CONFORMANCE_PROCS parallel processes; ginkgo runs [Serial] tests
# alone at the end) against the cluster up; the JUnit report, the log and
# the Markdown table go to OUT; known failures are those of
# known-failures/<cni>-NAME.txt. Fails if a test failed.
run_ginkgo() {
	local name=$1 focus=$2 skipre=$3 out=$4 rc=0 skip=()
	[ -x "$CONFORMANCE_DIR/bin/e2e.test" ] || die "no $CONFORMANCE_DIR/bin/e2e.test: run $E2E_ROOT/cluster/build.sh conformance"
	rm -rf "$out"
	mkdir -p "$out"
	local known_list
	known_list=$(known_failures_file "$name")
	if [ "$E2E_CONFORMANCE_SKIP_KNOWN" = 1 ] && [ -n "$known_list" ]; then
		# Each listed name as a literal regular expression, joined with |.
		local re
		# shellcheck disable=SC2016 # a sed expression, not shell
		re=$(sed 's/#.*//; s/[[:space:]]*$//; /^$/d; s/[][\.*^$(){}?+|/]/\\&/g' "$known_list" | paste -sd '|')
		if [ -n "$re" ]; then
			skipre=${skipre:+$skipre|}$re
			log "$name: not running the $(sed 's/#.*//; /^[[:space:]]*$/d' "$known_list" | wc -l) known failures of $known_list (E2E_CONFORMANCE_SKIP_KNOWN=1)"
		fi
	fi
	[ -z "$skipre" ] || skip=("--skip=$skipre")
	log "$name ($CNI_LABEL): focus $focus${skipre:+, skip $skipre}, $E2E_CONFORMANCE_PROCS processes; log in $out/e2e.log"
	with_cluster_env "$CONFORMANCE_DIR/bin/ginkgo" --procs="$E2E_CONFORMANCE_PROCS" --timeout="$E2E_CONFORMANCE_TIMEOUT" \
		--focus="$focus" "${skip[@]}" --no-color --silence-skips \
		"$CONFORMANCE_DIR/bin/e2e.test" -- \
		--kubeconfig="$E2E_LAB/admin.kubeconfig" --provider=skeleton --num-nodes="$E2E_NODES" \
		--report-dir="$out" --dump-logs-on-failure=false 2>&1 | tee "$out/e2e.log" || rc=$?
	if [ -f "$out/junit_01.xml" ]; then
		local jrc=0 args=(-label "$CNI_LABEL")
		[ -z "$known_list" ] || args+=(-known "$known_list")
		"$BIN/e2e-junit" "${args[@]}" "$out/junit_01.xml" >"$out/table.md" || jrc=$?
		tail -n 1 "$out/table.md"
		if [ "$jrc" -eq 3 ] || { [ "$jrc" -eq 0 ] && [ -z "$known_list" ] && [ "$rc" -ne 0 ]; }; then
			rc=1
		elif [ "$jrc" -ne 0 ]; then
			echo "error: could not read $out/junit_01.xml" >&2
			rc=1
		elif [ "$rc" -ne 0 ] && ! grep -qE '\| FAIL \|' "$out/table.md"; then
			echo "error: e2e.test failed without a failed test (setup, timeout or interrupt); see $out/e2e.log" >&2
		else
			[ -z "$known_list" ] || log "$name: no failure beyond the known ones of $known_list"
			rc=0
		fi
	else
		echo "error: e2e.test wrote no JUnit report in $out; see $out/e2e.log" >&2
		rc=1
	fi
	return "$rc"
}

run_conformance() {
	run_ginkgo conformance "$E2E_CONFORMANCE_FOCUS" "$E2E_CONFORMANCE_SKIP" "$E2E_CONFORMANCE_OUT"
}

run_netpol() {
	run_ginkgo netpol "$E2E_NETPOL_FOCUS" "$E2E_NETPOL_SKIP" "$E2E_NETPOL_OUT"
}

# netpol_wanted: the NetworkPolicy run applies (ovsnet, not turned off).
netpol_wanted() {
	[ "$E2E_NETPOL" = 1 ] && [ "$E2E_CNI" = custom ]
}

conformance() {
	local rc=0
	if ! build_all || ! phase conformance-build "$E2E_ROOT/cluster/build.sh" conformance; then
		print_phases
		return 1
	fi
	trap interrupted INT TERM
	record_host_state
	if phase up up_conformance; then
		phase conformance run_conformance || rc=1
		if netpol_wanted; then
			phase netpol run_netpol || rc=1
		fi
	else
		rc=1
	fi
	trap - INT TERM
	phase down down || rc=1
	phase host-check host_is_clean || rc=1
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
		[ "$E2E_OVSNET_DEPLOY" != daemonset ] || [ "$E2E_CNI" != custom ] || build_image
		up_dev
		;;
	test)
		build_tools
		run_suite
		;;
	down) down ;;
	bench) bench ;;
	conformance) conformance ;;
	conformance-test)
		build_tools
		run_conformance
		;;
	netpol-test)
		build_tools
		run_netpol
		;;
	*) die "usage: $0 [all|up|test|down|bench|conformance|conformance-test|netpol-test]" ;;
	esac
}

main "$@"
