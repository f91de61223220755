#!/bin/bash
# Runs ovsdb-server and ovs-vswitchd in the foreground for the ovs container
# of the ovsnet DaemonSet. conf.db is kept on the host, so a restarted
# container finds its bridges; the agent's bridge gate handles the window in
# which ovs-vswitchd is up but has not rebuilt them yet.
set -eu
DB=/var/lib/openvswitch/conf.db
SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
mkdir -p /run/openvswitch /var/log/openvswitch
if [ ! -e "$DB" ]; then
	ovsdb-tool create "$DB" "$SCHEMA"
elif [ "$(ovsdb-tool needs-conversion "$DB" "$SCHEMA")" = yes ]; then
	ovsdb-tool convert "$DB" "$SCHEMA"
fi
# Load the kernel module when it exists; without it only the userspace
# datapath (datapath-type: netdev) works.
modprobe openvswitch 2>/dev/null || echo "openvswitch kernel module not loaded: use datapath-type netdev" >&2

ovsdb-server "$DB" --remote=punix:/run/openvswitch/db.sock \
	--pidfile=/run/openvswitch/ovsdb-server.pid --unixctl=/run/openvswitch/ovsdb-server.ctl \
	--log-file=/var/log/openvswitch/ovsdb-server.log &
DBPID=$!
ovs-vswitchd unix:/run/openvswitch/db.sock --pidfile=/run/openvswitch/ovs-vswitchd.pid \
	--log-file=/var/log/openvswitch/ovs-vswitchd.log --mlockall &
VSPID=$!

stop() {
	kill -TERM "$VSPID" 2>/dev/null || true
	wait "$VSPID" 2>/dev/null || true
	kill -TERM "$DBPID" 2>/dev/null || true
	wait "$DBPID" 2>/dev/null || true
	exit 0
}
trap stop TERM INT
# Either daemon exiting ends the container, so the kubelet restarts both.
while kill -0 "$DBPID" 2>/dev/null && kill -0 "$VSPID" 2>/dev/null; do
	wait -n 2>/dev/null || true
done
stop
