#!/bin/bash
# make image-verify: runs the ovsnet image the way the DaemonSet of
# deploy/ovsnet.yaml does, without Kubernetes, in a private containerd, as
# root:
#
#   deploy/image/verify.sh [ARCHIVE]     (default: bin/image/ovsnet.tar)
#
# containerd runs with its own root, state, sockets and runc root in a
# temporary directory (no CRI: ctr is the only client); the system's
# containerd (/var/lib/containerd, /run/containerd) is not used. The
# containers' commands and volume mounts are read from the manifest
# (deploy/image/podspec), host paths replaced by temporary directories:
#
#   1. import: the archive imports and unpacks; every name in it is there;
#   2. install-cni (unprivileged, as in the manifest): ovsnet and portmap
#      land in the "host" /opt/cni/bin, no .new file left, the conflist in
#      /etc/cni/net.d is the ConfigMap's; on this host, both plugins answer
#      CNI_COMMAND=VERSION and support the conflist's cniVersion, and every
#      plugin type the conflist names is installed;
#   3. ovs (privileged, in a network namespace of its own, OVS_MODPROBE=no):
#      start-ovs.sh starts ovsdb-server and ovs-vswitchd; ovs-vsctl adds a
#      userspace bridge and returns once ovs-vswitchd applied it (it waits
#      for cur_cfg), the bridge has a datapath ID, ovs-ofctl reaches it over
#      OpenFlow, ovs-appctl version answers, and ovs-vsctl on this host sees
#      it through the socket in the shared /run/openvswitch;
#   4. agent (privileged, in the ovs container's network namespace, the
#      manifest's command plus --standalone --pod-cidr --datapath-type
#      netdev, as there is no API server): turns ready against that OVS,
#      creates br-int and nftables table ip ovsnet, clears
#      flow-restore-wait; ovsnetctl status answers;
#   5. ovsnet-agent --version names the image's version; ovsnetctl --help
#      runs;
#   6. SIGTERM (what the kubelet sends) stops the agent and the ovs container
#      (both daemons), each within the deadline.
#
# Everything it made goes on exit, also on failure or Ctrl-C: tasks and
# containers, containerd and its shims, their cgroups, mounts under the
# temporary directory, the directory itself. The network namespace of the
# containers (with OVS's tap devices) goes with their processes.
#
# Environment: OVSNET_VERIFY_TIMEOUT (60): deadline in seconds of each wait;
# OVSNET_VERIFY_MANIFEST (deploy/ovsnet.yaml): the manifest to follow;
# OVSNET_VERIFY_KEEP=1 keeps the temporary directory (logs) after cleanup.
set -euo pipefail
umask 022
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
archive=${1:-$repo/bin/image/ovsnet.tar}
manifest=${OVSNET_VERIFY_MANIFEST:-$repo/deploy/ovsnet.yaml}
TIMEOUT=${OVSNET_VERIFY_TIMEOUT:-60}
NS=ovsnet-verify
POD_CIDR=10.250.0.0/24

t0=$(date +%s%N)
log() {
	printf '[%6.1fs] verify: %s\n' "$((($(date +%s%N) - t0) / 1000000))e-3" "$*" >&2
}
fail() {
	echo "verify: FAILED: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (it starts containerd and privileged containers): sudo make image-verify"
for c in containerd ctr runc go tar awk; do
	command -v "$c" >/dev/null || fail "$c not found; install it with: apt-get install containerd runc (and Go, the version in go.mod)"
done
[ -f "$archive" ] || fail "no image archive at $archive; build it with: make image"
archive=$(realpath "$archive")

# The names in the archive; the one that is not :latest carries the version.
mapfile -t names < <(tar -xOf "$archive" index.json | grep -o '"io.containerd.image.name":"[^"]*"' | cut -d'"' -f4)
[ ${#names[@]} -gt 0 ] || fail "$archive has no image name in index.json; is it an archive from make image?"
image=${names[0]} version=
for n in "${names[@]}"; do
	[[ $n == *:latest ]] || version=${n##*:}
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ovsnet-verify.XXXXXX")
sock=$tmp/containerd.sock
cg=/ovsnet-verify-${tmp##*.}
ctrd_pid=
# The containers this script runs.
ids=(install-cni ovs agent version help)
run_ctrd_existed=
[ ! -e /run/containerd ] || run_ctrd_existed=1

c() {
	ctr --address "$sock" --namespace "$NS" "$@"
}

# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r
}

# cgroup_dirs: our cgroup directories in every hierarchy, deepest first.
cgroup_dirs() {
	local d
	for d in /sys/fs/cgroup"$cg" /sys/fs/cgroup/*"$cg"; do
		[ -d "$d" ] && find "$d" -depth -type d
	done
	return 0
}

cleanup() {
	local rc=$? id pid d m deadline
	set +e
	trap - EXIT INT TERM
	log "cleaning up"
	if [ -n "$ctrd_pid" ] && kill -0 "$ctrd_pid" 2>/dev/null; then
		for id in $(c task ls -q 2>/dev/null); do
			c task delete --force "$id" >/dev/null 2>&1
		done
		for id in $(c containers ls -q 2>/dev/null); do
			c containers delete "$id" >/dev/null 2>&1
		done
		log "cleanup: tasks and containers gone; stopping containerd"
		kill -TERM "$ctrd_pid" 2>/dev/null
		deadline=$((SECONDS + 20))
		while kill -0 "$ctrd_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
			sleep 0.1
		done
		kill -KILL "$ctrd_pid" 2>/dev/null
		wait "$ctrd_pid" 2>/dev/null
	fi
	# Whatever survived containerd: shims of this containerd (their command
	# line names its socket, which is ours alone), then the processes in
	# our cgroups, each by PID.
	for pid in $(pgrep -f -- "-address $sock" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null
	done
	for d in $(cgroup_dirs); do
		[ -f "$d/cgroup.procs" ] || continue
		while read -r pid; do
			kill -KILL "$pid" 2>/dev/null
		done <"$d/cgroup.procs"
	done
	deadline=$((SECONDS + 10))
	for d in $(cgroup_dirs); do
		while ! rmdir "$d" 2>/dev/null && [ -d "$d" ] && [ $SECONDS -lt $deadline ]; do
			sleep 0.1
		done
		[ ! -d "$d" ] || echo "verify: could not remove cgroup $d (processes left in it?)" >&2
	done
	log "cleanup: containerd stopped"
	for m in $(mounts_under "$tmp"); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	# A shim that was killed leaves its socket; containerd 1.6 names it
	# sha256(address/namespace/id), so only ours are removed.
	for id in "${ids[@]}"; do
		rm -f "/run/containerd/s/$(printf '%s' "$sock/$NS/$id" | sha256sum | cut -d' ' -f1)"
	done
	if [ -z "$run_ctrd_existed" ]; then
		# The shims' sockets live in /run/containerd/s whatever the
		# configuration says; only empty directories are removed, as
		# another containerd may have started meanwhile.
		rmdir /run/containerd/s /run/containerd 2>/dev/null
	fi
	if [ -n "$(mounts_under "$tmp")" ]; then
		echo "verify: mounts left under $tmp; not removing it" >&2
	elif [ "${OVSNET_VERIFY_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
		[ "$rc" -eq 0 ] || show_logs
		rm -rf "$tmp/root" "$tmp/state"
		echo "verify: logs kept in $tmp (remove it with rm -rf $tmp)" >&2
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
show_logs() {
	local f
	for f in "$tmp"/logs/*; do
		[ -s "$f" ] || continue
		echo "----- last lines of $f" >&2
		tail -n 15 "$f" >&2
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$tmp/logs" "$tmp/fifo" "$tmp/runc" "$tmp/host" "$tmp/configmap"

# podspec: reads the DaemonSet of the manifest.
log "building podspec"
(cd "$repo" && CGO_ENABLED=0 go build -buildvcs=false -o "$tmp/podspec" ./deploy/image/podspec) ||
	fail "go build ./deploy/image/podspec failed (output above)"
"$tmp/podspec" -f "$manifest" -configmap ovsnet-config -write-dir "$tmp/configmap" ||
	fail "cannot read ConfigMap ovsnet-config from $manifest"

# 0. A private containerd.
cat >"$tmp/config.toml" <<EOF
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$tmp/opt"
EOF
log "starting containerd in $tmp"
containerd --config "$tmp/config.toml" >"$tmp/logs/containerd.log" 2>&1 &
ctrd_pid=$!
deadline=$((SECONDS + TIMEOUT))
until c version >/dev/null 2>&1; do
	kill -0 "$ctrd_pid" 2>/dev/null || fail "containerd exited at start (its log follows)"
	[ $SECONDS -lt $deadline ] || fail "containerd did not answer on $sock within ${TIMEOUT}s"
	sleep 0.1
done

# 1. Import.
log "importing $archive"
c images import "$archive" >"$tmp/logs/import.log" 2>&1 || fail "ctr images import $archive failed (log follows)"
imported=$(c images ls -q) || fail "ctr images ls failed"
for n in "${names[@]}"; do
	grep -qxF "$n" <<<"$imported" || fail "image $n not in containerd after the import"
done
content_mb=$(du -sm "$tmp/root/io.containerd.content.v1.content" | cut -f1)
unpacked_mb=$(du -sm "$tmp/root/io.containerd.snapshotter.v1.overlayfs" | cut -f1)
log "ok: imported ${names[*]} (content store ${content_mb} MiB, unpacked ${unpacked_mb} MiB)"

# run_opts CONTAINER: --mount options for the container's volume mounts,
# host paths under $tmp/host, ConfigMaps from $tmp/configmap, read-only as
# Kubernetes mounts them.
run_opts() {
	local path kind src mode opts mounts env
	mounts=$("$tmp/podspec" -f "$manifest" -container "$1" -mounts) || fail "cannot read the mounts of container $1 from $manifest"
	env=$("$tmp/podspec" -f "$manifest" -container "$1" -env) || fail "cannot read the environment of container $1 from $manifest"
	while IFS=$'\t' read -r path kind src mode; do
		[ -n "$path" ] || continue
		opts=rbind:$mode
		case $kind in
		hostPath)
			src=$tmp/host$src
			mkdir -p "$src"
			;;
		configMap)
			src=$tmp/configmap
			opts=rbind:ro
			;;
		*) fail "volume at $path is neither hostPath nor configMap: verify.sh cannot provide it" ;;
		esac
		echo "--mount=type=bind,src=$src,dst=$path,options=$opts"
	done <<<"$mounts"
	while read -r kv; do
		[ -z "$kv" ] || echo "--env=$kv"
	done <<<"$env"
}
# opts_of CONTAINER: run_opts into the array opts.
opts_of() {
	local out
	out=$(run_opts "$1") || exit 1
	mapfile -t opts <<<"$out"
}
# command_of CONTAINER: its command, into the array cmd.
command_of() {
	mapfile -d '' -t cmd < <("$tmp/podspec" -f "$manifest" -container "$1" -command)
	[ ${#cmd[@]} -gt 0 ] || fail "no command for container $1 in $manifest"
}
common=(--runc-root "$tmp/runc" --fifo-dir "$tmp/fifo")

# wait_task ID STATUS: until the task's status is STATUS, within the deadline.
wait_task() {
	local deadline=$((SECONDS + TIMEOUT)) st
	while :; do
		st=$(c task ls | awk -v id="$1" '$1 == id {print $3}')
		[ "$st" != "$2" ] || return 0
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}
# inside ID CMD...: runs CMD in the running container ID.
execs=0
inside() {
	local id=$1
	shift
	execs=$((execs + 1))
	c task exec --fifo-dir "$tmp/fifo" --exec-id "verify-$execs" "$id" "$@"
}

# 2. install-cni.
log "running install-cni"
command_of install-cni
opts_of install-cni
mkdir -p "$tmp/host/opt/cni/bin"
echo old >"$tmp/host/opt/cni/bin/ovsnet"
c run --rm "${common[@]}" --cgroup "$cg/install-cni" "${opts[@]}" "$image" install-cni "${cmd[@]}" \
	>"$tmp/logs/install-cni.log" 2>&1 || fail "install-cni failed (log follows)"
bin=$tmp/host/opt/cni/bin
for p in ovsnet portmap; do
	if [ ! -f "$bin/$p" ] || [ ! -x "$bin/$p" ]; then
		fail "install-cni left no executable $p in /opt/cni/bin"
	fi
done
left=$(find "$bin" "$tmp/host/etc/cni/net.d" -name '*.new')
[ -z "$left" ] || fail "install-cni left temporary files: $left"
conflist=$tmp/host/etc/cni/net.d/10-ovsnet.conflist
cmp -s "$conflist" "$tmp/configmap/10-ovsnet.conflist" || fail "the installed conflist differs from the ConfigMap's 10-ovsnet.conflist"
cni_version=$(grep -o '"cniVersion": *"[^"]*"' "$conflist" | head -n 1 | cut -d'"' -f4)
[ -n "$cni_version" ] || fail "the conflist names no cniVersion"
for p in ovsnet portmap; do
	out=$(CNI_COMMAND=VERSION "$bin/$p" </dev/null 2>&1) || fail "$p from the image does not run on this host: $out"
	grep -q "\"$cni_version\"" <<<"$out" || fail "$p supports $out, not the conflist's cniVersion $cni_version"
done
while read -r t; do
	[ -x "$bin/$t" ] || fail "the conflist chains plugin $t, which install-cni did not install"
done < <(grep -o '"type": *"[^"]*"' "$conflist" | cut -d'"' -f4)
log "ok: install-cni put ovsnet, portmap and the conflist (cniVersion $cni_version) in place; both plugins run here"

# 3. ovs.
log "starting the ovs container"
command_of ovs
opts_of ovs
c run -d --privileged "${common[@]}" --cgroup "$cg/ovs" --log-uri "file://$tmp/logs/ovs.log" \
	"${opts[@]}" --env OVS_MODPROBE=no "$image" ovs "${cmd[@]}" >/dev/null ||
	fail "ctr run of the ovs container failed"
wait_task ovs RUNNING || fail "the ovs container is not running"
ovs_pid=$(c task ls | awk '$1 == "ovs" {print $2}')
ovsrun=$tmp/host/run/openvswitch
deadline=$((SECONDS + TIMEOUT))
until [ -S "$ovsrun/db.sock" ]; do
	wait_task ovs RUNNING || fail "the ovs container stopped before ovsdb-server listened"
	[ $SECONDS -lt $deadline ] || fail "no $ovsrun/db.sock within ${TIMEOUT}s"
	sleep 0.1
done
# ovs-vsctl without --no-wait returns once ovs-vswitchd has applied the
# change (cur_cfg), so this waits for a working ovs-vswitchd.
inside ovs ovs-vsctl --timeout="$TIMEOUT" --retry add-br br-verify -- set Bridge br-verify datapath_type=netdev ||
	fail "ovs-vswitchd did not apply a new bridge within ${TIMEOUT}s"
dpid=$(inside ovs ovs-vsctl --timeout=10 get Bridge br-verify datapath_id | tr -d '"')
if [ -z "$dpid" ] || [ "$dpid" = "[]" ]; then
	fail "bridge br-verify has no datapath_id"
fi
inside ovs ovs-ofctl show br-verify >"$tmp/logs/ofctl.log" || fail "ovs-ofctl cannot reach br-verify over OpenFlow"
ovs_version=$(inside ovs ovs-appctl -t ovs-vswitchd version | head -n 1) || fail "ovs-appctl version got no answer from ovs-vswitchd"
if command -v ovs-vsctl >/dev/null; then
	shown=$(ovs-vsctl --db="unix:$ovsrun/db.sock" --timeout=10 show) ||
		fail "ovs-vsctl on this host cannot talk to ovsdb-server through $ovsrun/db.sock"
	grep -q 'Bridge br-verify' <<<"$shown" || fail "ovs-vsctl on this host does not see br-verify through $ovsrun/db.sock"
fi
inside ovs ovs-vsctl --timeout=10 del-br br-verify || fail "cannot delete br-verify"
log "ok: $ovs_version answers; bridge applied (datapath id $dpid), OpenFlow reachable, socket shared with the host"

# 4. agent, in the ovs container's network namespace.
log "starting the agent container"
command_of agent
opts_of agent
c run -d --privileged "${common[@]}" --cgroup "$cg/agent" --log-uri "file://$tmp/logs/agent.log" \
	--with-ns "network:/proc/$ovs_pid/ns/net" "${opts[@]}" --env NODE_NAME=verify "$image" agent \
	"${cmd[@]}" --standalone --pod-cidr "$POD_CIDR" --datapath-type netdev >/dev/null ||
	fail "ctr run of the agent container failed"
deadline=$((SECONDS + TIMEOUT))
until status=$(inside agent ovsnetctl status 2>&1) && grep -q '^state:[[:space:]]*ready' <<<"$status"; do
	wait_task agent RUNNING || fail "the agent container stopped (its log follows)"
	[ $SECONDS -lt $deadline ] || fail "the agent was not ready within ${TIMEOUT}s: $status"
	sleep 0.2
done
inside ovs ovs-vsctl --timeout=10 br-exists br-int || fail "the ready agent has no br-int"
inside agent nft list table ip ovsnet >/dev/null || fail "the ready agent has no nftables table ip ovsnet"
frw=$(inside ovs ovs-vsctl --timeout=10 get Open_vSwitch . other_config)
if grep -q flow-restore-wait <<<"$frw"; then
	fail "flow-restore-wait is still set after the agent turned ready: $frw"
fi
log "ok: agent ready against the image's OVS: $(grep -E '^(bridge|pod cidr):' <<<"$status" | tr '\t\n' ' ')"

# 5. Binaries.
got=$(c run --rm "${common[@]}" --cgroup "$cg/version" "$image" version ovsnet-agent --version 2>&1) ||
	fail "ovsnet-agent --version failed: $got"
[ -z "$version" ] || [ "$got" = "ovsnet-agent version $version" ] ||
	fail "ovsnet-agent --version says \"$got\", the image is tagged $version"
c run --rm "${common[@]}" --cgroup "$cg/help" "$image" help ovsnetctl --help >"$tmp/logs/ovsnetctl-help.log" 2>&1 ||
	fail "ovsnetctl --help failed (log follows)"
log "ok: $got; ovsnetctl --help runs"

# 6. SIGTERM, as the kubelet stops a pod.
for id in agent ovs; do
	c task kill -s TERM "$id" || fail "cannot signal the $id container"
	wait_task "$id" STOPPED || fail "the $id container did not stop within ${TIMEOUT}s of SIGTERM"
	c task delete "$id" >/dev/null
	c containers delete "$id"
done
log "ok: agent and ovs stop on SIGTERM"
log "PASSED: $image${version:+ ($version)}"
