#!/usr/bin/env bash
# Checks a cluster started by up.sh end to end: two busybox pods get Running
# with an IP from the node's pod CIDR, one pings the other through
# `kubectl exec`, and `kubectl logs` returns what a pod printed. Removes its
# pods when done, also on failure. Prints how long the first pod took to run.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

[ -f "$E2E_LAB/cluster.env" ] || die "no cluster in $E2E_LAB: run up.sh first"
# shellcheck disable=SC1091 # written by up.sh
. "$E2E_LAB/cluster.env"

NS=ovsnet-e2e-smoke
PODS=(smoke-a smoke-b)

pod_manifest() {
	cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  namespace: $NS
spec:
  nodeName: $E2E_NODE_NAME
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $E2E_BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo smoke-marker-\$(hostname); trap 'exit 0' TERM; while :; do sleep 1; done"]
EOF
}

cleanup() {
	kubectl_admin delete namespace "$NS" --wait=true --timeout="${E2E_TIMEOUT}s" >/dev/null 2>&1 || true
}

# ip_in_cidr IP CIDR: IPv4 membership test.
ip_in_cidr() {
	local ip=$1 net=${2%/*} bits=${2#*/} a b c d
	IFS=. read -r a b c d <<<"$ip"
	local n=$(((a << 24) | (b << 16) | (c << 8) | d))
	IFS=. read -r a b c d <<<"$net"
	local m=$(((a << 24) | (b << 16) | (c << 8) | d))
	local mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
	[ $((n & mask)) -eq $((m & mask)) ]
}

main() {
	trap cleanup EXIT
	kubectl_admin create namespace "$NS" >/dev/null
	kubectl_admin wait --for=create serviceaccount/default --namespace "$NS" --timeout="${E2E_TIMEOUT}s" >/dev/null
	local t0 p ip
	t0=$(elapsed_ms)
	for p in "${PODS[@]}"; do
		pod_manifest "$p" | kubectl_admin apply -f - >/dev/null
	done
	kubectl_admin wait --for=condition=Ready "pod/${PODS[0]}" --namespace "$NS" --timeout="${E2E_TIMEOUT}s" >/dev/null
	log "first pod Running $(($(elapsed_ms) - t0)) ms after creation"
	kubectl_admin wait --for=condition=Ready "pod/${PODS[1]}" --namespace "$NS" --timeout="${E2E_TIMEOUT}s" >/dev/null
	log "both pods Running $(($(elapsed_ms) - t0)) ms after creation"

	local -A ips=()
	for p in "${PODS[@]}"; do
		ip=$(kubectl_admin get pod "$p" --namespace "$NS" -o jsonpath='{.status.podIP}')
		[ -n "$ip" ] || die "pod $p has no IP"
		ip_in_cidr "$ip" "$E2E_POD_CIDR" || die "pod $p IP $ip is outside the node's pod CIDR $E2E_POD_CIDR"
		ips[$p]=$ip
		log "pod $p: IP $ip"
	done

	kubectl_admin exec "${PODS[0]}" --namespace "$NS" -- ping -c 3 -W 2 "${ips[${PODS[1]}]}" >/dev/null ||
		die "ping from ${PODS[0]} to ${PODS[1]} (${ips[${PODS[1]}]}) failed"
	log "kubectl exec: ${PODS[0]} pings ${PODS[1]}"

	kubectl_admin logs "${PODS[1]}" --namespace "$NS" | grep -qx "smoke-marker-${PODS[1]}" ||
		die "kubectl logs ${PODS[1]} lacks the line the pod printed"
	log "kubectl logs: works"

	cleanup
	trap - EXIT
	log "smoke test passed"
}

main "$@"
