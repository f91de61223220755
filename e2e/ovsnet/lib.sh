# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this file
# Shared settings of the hooks that run ovsnet in the e2e cluster (see
# e2e/README.md, "ovsnet in the cluster"). Sourced, never run on its own.
#
# OVS and the agent run as host processes, configured as the DaemonSet in
# deploy/ovsnet.yaml configures them; only what must differ outside a pod
# moves into the lab:
#
#   $OVSNET_LAB/ovs      conf.db, db.sock, ovs-vswitchd's control and bridge sockets (/run/openvswitch)
#   $OVSNET_LAB/run      the CNI socket (/run/ovsnet)
#   $OVSNET_LAB/state    the IPAM state (/var/lib/ovsnet)
#   $OVSNET_LAB/bin      the binaries the cluster runs, copied at start
#   $OVSNET_LAB/ovsnet.yaml       the manifest the cluster was started with
#   $OVSNET_LAB/agent.yaml        agent.yaml of its ConfigMap ovsnet-config, as shipped
#   $OVSNET_LAB/agent.kubeconfig  a token of the ServiceAccount ovsnet-agent (the shipped RBAC)
#   $OVSNET_LAB/agent.args        the agent's command line, NUL-separated (start-agent reuses it)
#   $OVSNET_LAB/ovsnet.env        what the test suite needs (source it after cluster.env)

# shellcheck source=SCRIPTDIR/../cluster/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

OVSNET_LAB=$E2E_LAB/ovsnet
OVS_DIR=$OVSNET_LAB/ovs
OVSNET_RUN=$OVSNET_LAB/run
OVSNET_STATE=$OVSNET_LAB/state
OVSNET_LAB_BIN=$OVSNET_LAB/bin
LAB_MANIFEST=$OVSNET_LAB/ovsnet.yaml
AGENT_YAML=$OVSNET_LAB/agent.yaml
AGENT_KUBECONFIG=$OVSNET_LAB/agent.kubeconfig
AGENT_ARGS=$OVSNET_LAB/agent.args
OVSNET_ENV=$OVSNET_LAB/ovsnet.env
# The OVS runner is not a hook process: down.sh would stop it before the
# after-down hook could remove the bridge through it.
OVS_RUNNER_PID=$OVSNET_LAB/ovs-runner.pid
AGENT_PID=$RUN/hooks/ovsnet-agent.pid
OVS_DB=unix:$OVS_DIR/db.sock
AGENT_LOG=$LOGS/ovsnet-agent.log

MANIFEST=${OVSNET_E2E_MANIFEST:-$E2E_REPO/deploy/ovsnet.yaml}
# Where `make build` and e2e/run.sh put the binaries.
OVSNET_E2E_BIN=${OVSNET_E2E_BIN:-$E2E_REPO/bin}

# agent_config FIELD [DEFAULT]: a field of agent.yaml in the manifest the
# cluster was started with, or DEFAULT when the file does not set it.
agent_config() {
	local v
	v=$("$OVSNET_LAB_BIN/e2e-manifest" -f "$LAB_MANIFEST" -key agent.yaml -field "$1") || return 1
	echo "${v:-${2:-}}"
}

# ovs_vsctl ARGS...: ovs-vsctl against the lab's ovsdb-server.
ovs_vsctl() {
	ovs-vsctl --db="$OVS_DB" --timeout=10 "$@"
}

# agent_alive: the agent whose PID start-agent recorded runs.
agent_alive() {
	[ -f "$AGENT_PID" ] && is_ours "$(cat "$AGENT_PID")" "$OVSNET_LAB_BIN/ovsnet-agent"
}

# until_deadline SECONDS DESC CMD...: run CMD until it succeeds or SECONDS
# pass. For conditions only a query can tell (a socket answering, an HTTP
# endpoint ready), as up.sh's wait_up does.
until_deadline() {
	local secs=$1 desc=$2 deadline
	shift 2
	deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "error: timed out after ${secs}s waiting for $desc" >&2
			return 1
		fi
		sleep 0.1
	done
}

# agent_ready ADDR: the agent's readiness state is ready.
agent_ready() {
	"$OVSNET_LAB_BIN/ovsnetctl" --agent "$1" --json status 2>/dev/null | grep -q '"state": "ready"'
}
