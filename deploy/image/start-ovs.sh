#!/bin/bash
# Runs ovsdb-server and ovs-vswitchd in the foreground for the ovs container
# of the ovsnet DaemonSet (and for make e2e, which runs this very script on
# the host with its own directories). conf.db is kept, so a restarted
# container finds its bridges; the agent's bridge gate handles the window in
# which ovs-vswitchd is up but has not rebuilt them yet. Either daemon
# exiting ends the script; SIGTERM stops both.
#
# Before ovs-vswitchd starts, other_config:flow-restore-wait is set to true:
# the new ovs-vswitchd then processes no packet (and on the kernel datapath
# keeps forwarding with the datapath flows of the process it replaces) until
# the agent has installed its flows and removed the key. The key holds back
# every bridge of this ovs-vswitchd, and an agent that starts against it
# removes it after its first resync.
#
# Environment (defaults are the DaemonSet's):
#   OVS_RUNDIR    sockets and pidfiles    (/run/openvswitch)
#   OVS_DBDIR     conf.db                 (/var/lib/openvswitch)
#   OVS_LOGDIR    daemon logs             (/var/log/openvswitch)
#   OVS_MLOCKALL  lock ovs-vswitchd in memory, as distributions do (yes)
#   OVS_MODPROBE  try to load the openvswitch kernel module (yes)
#   OVS_FLOW_RESTORE_WAIT  set flow-restore-wait before ovs-vswitchd (yes)
#   OVS_USERSPACE_TSO  userspace datapath: other_config:userspace-tso-enable,
#                  read by ovs-vswitchd only at start (no); yes makes pods
#                  keep their offloads (several times faster TCP), for
#                  traffic-mode noencap only: OVS drops offloaded packets
#                  into a tunnel, and the agent refuses that combination
set -euo pipefail
export OVS_RUNDIR=${OVS_RUNDIR:-/run/openvswitch}
export OVS_DBDIR=${OVS_DBDIR:-/var/lib/openvswitch}
export OVS_LOGDIR=${OVS_LOGDIR:-/var/log/openvswitch}
DB=$OVS_DBDIR/conf.db
SCHEMA=${OVS_SCHEMA:-/usr/share/openvswitch/vswitch.ovsschema}
mkdir -p "$OVS_RUNDIR" "$OVS_DBDIR" "$OVS_LOGDIR"
if [ ! -e "$DB" ]; then
	ovsdb-tool create "$DB" "$SCHEMA"
elif [ "$(ovsdb-tool needs-conversion "$DB" "$SCHEMA")" = yes ]; then
	ovsdb-tool convert "$DB" "$SCHEMA"
fi
if [ "${OVS_MODPROBE:-yes}" = yes ]; then
	# Without the kernel module only the userspace datapath works
	# (datapath-type: netdev in the agent's configuration).
	modprobe openvswitch 2>/dev/null || echo "start-ovs: openvswitch kernel module not loaded: use datapath-type netdev" >&2
fi
mlock=()
[ "${OVS_MLOCKALL:-yes}" = yes ] && mlock=(--mlockall)

DBPID='' VSPID=''
stop() {
	if [ -n "$VSPID" ]; then
		kill -TERM "$VSPID" 2>/dev/null || true
		wait "$VSPID" 2>/dev/null || true
	fi
	kill -TERM "$DBPID" 2>/dev/null || true
	wait "$DBPID" 2>/dev/null || true
	exit "${1:-0}"
}
trap stop TERM INT

ovsdb-server "$DB" --remote="punix:$OVS_RUNDIR/db.sock" \
	--pidfile="$OVS_RUNDIR/ovsdb-server.pid" --unixctl="$OVS_RUNDIR/ovsdb-server.ctl" \
	--log-file="$OVS_LOGDIR/ovsdb-server.log" -vconsole:off --no-chdir &
DBPID=$!
settings=()
[ "${OVS_FLOW_RESTORE_WAIT:-yes}" = yes ] && settings+=(-- set Open_vSwitch . other_config:flow-restore-wait=true)
case ${OVS_USERSPACE_TSO:-no} in
yes) settings+=(-- set Open_vSwitch . other_config:userspace-tso-enable=true) ;;
*) settings+=(-- remove Open_vSwitch . other_config userspace-tso-enable) ;;
esac
# --retry: ovsdb-server may not listen yet. init creates the root row of a
# new conf.db. --no-wait: no ovs-vswitchd runs to acknowledge.
if ! ovs-vsctl --db="unix:$OVS_RUNDIR/db.sock" --retry --timeout=60 --no-wait -- init "${settings[@]}"; then
	echo "start-ovs: cannot write other_config (flow-restore-wait, userspace-tso-enable) in $DB; stopping" >&2
	stop 1
fi
ovs-vswitchd "unix:$OVS_RUNDIR/db.sock" --pidfile="$OVS_RUNDIR/ovs-vswitchd.pid" \
	--log-file="$OVS_LOGDIR/ovs-vswitchd.log" -vconsole:off --no-chdir "${mlock[@]}" &
VSPID=$!

while kill -0 "$DBPID" 2>/dev/null && kill -0 "$VSPID" 2>/dev/null; do
	wait -n 2>/dev/null || true
done
echo "start-ovs: ovsdb-server or ovs-vswitchd exited; stopping the other" >&2
stop
