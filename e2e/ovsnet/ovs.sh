#!/usr/bin/env bash
# Runs ovsdb-server and ovs-vswitchd in the foreground, as the ovs container of
# the ovsnet DaemonSet does (deploy/image/start-ovs.sh), with every file in
# the directory given instead of /run/openvswitch and /var/lib/openvswitch.
# conf.db is kept across restarts of this script. Either daemon exiting ends
# it; SIGTERM stops both.
#
# Usage: ovs.sh DIR LOGDIR
set -eu
DIR=$1
LOGDIR=$2
DB=$DIR/conf.db
SCHEMA=${OVS_SCHEMA:-/usr/share/openvswitch/vswitch.ovsschema}
export OVS_RUNDIR=$DIR OVS_DBDIR=$DIR OVS_LOGDIR=$LOGDIR
mkdir -p "$DIR" "$LOGDIR"
if [ ! -e "$DB" ]; then
	ovsdb-tool create "$DB" "$SCHEMA"
elif [ "$(ovsdb-tool needs-conversion "$DB" "$SCHEMA")" = yes ]; then
	ovsdb-tool convert "$DB" "$SCHEMA"
fi

ovsdb-server "$DB" --remote="punix:$DIR/db.sock" \
	--pidfile="$DIR/ovsdb-server.pid" --unixctl="$DIR/ovsdb-server.ctl" \
	--log-file="$LOGDIR/ovsdb-server.log" -vconsole:off --no-chdir &
DBPID=$!
# Without the OVS kernel module only the userspace datapath works; the agent
# is told so with --datapath-type netdev.
ovs-vswitchd "unix:$DIR/db.sock" --pidfile="$DIR/ovs-vswitchd.pid" \
	--log-file="$LOGDIR/ovs-vswitchd.log" -vconsole:off --no-chdir &
VSPID=$!

stop() {
	kill -TERM "$VSPID" 2>/dev/null || true
	wait "$VSPID" 2>/dev/null || true
	kill -TERM "$DBPID" 2>/dev/null || true
	wait "$DBPID" 2>/dev/null || true
	exit 0
}
trap stop TERM INT
while kill -0 "$DBPID" 2>/dev/null && kill -0 "$VSPID" 2>/dev/null; do
	wait -n 2>/dev/null || true
done
echo "ovs.sh: ovsdb-server or ovs-vswitchd exited; stopping the other" >&2
stop
