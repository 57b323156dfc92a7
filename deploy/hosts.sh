#!/usr/bin/env bash
# A demo cluster of simulated hosts on this machine: one manager and N hosts, each host a network
# namespace with its own Docker engine and its own agent (see tests/multihost.py for the layout).
#
#   sudo deploy/hosts.sh up [N]            start the manager and N hosts (default 3), print how to use them
#   sudo deploy/hosts.sh status            hosts, links, processes and `podium nodes`
#   sudo deploy/hosts.sh crash h2          kill h2's agent, engine and containers (its kernel still answers)
#   sudo deploy/hosts.sh power-off h2      a power cut: h2's link down first, then crash (no FIN goes out)
#   sudo deploy/hosts.sh restart h2        boot a crashed host again (same engine and agent data)
#   sudo deploy/hosts.sh partition h2      take h2's link down; `heal h2` brings it back up
#   sudo deploy/hosts.sh stop-agent h2     stop only the agent; `start-agent h2` starts it again
#   sudo deploy/hosts.sh kill-agent h2     kill -9 only the agent
#   sudo deploy/hosts.sh pause-agent h2    SIGSTOP the agent (a hung host); `resume-agent h2`
#   deploy/hosts.sh env                    print `export PODIUM_MANAGER=...`
#   deploy/hosts.sh podium ARGS...         run the podium CLI against this cluster's manager
#   sudo deploy/hosts.sh down              stop everything and remove the namespaces and the data
#
# State and data live in var/hosts/ (gitignored). Everything the script creates is named
# podium-<run id>-...; the Docker engine at /var/run/docker.sock is only read (its copy of
# podium/web:latest is saved and loaded into each host's engine) and never changed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
PY=$REPO/.venv/bin/python
DIR=$REPO/var/hosts
SCRIPT=deploy/hosts.sh

die() { printf 'hosts: ERROR: %s\n' "$*" >&2; exit 1; }

multihost() {
    "$PY" -m tests.multihost --dir "$DIR" --script "$SCRIPT" "$@"
}
# exec: Ctrl-C and SIGTERM then reach the Python process, which tears down a half-started cluster.
exec_multihost() {
    exec "$PY" -m tests.multihost --dir "$DIR" --script "$SCRIPT" "$@"
}

[[ -x $PY ]] || die "no virtualenv at $REPO/.venv (run deploy/bootstrap.sh)"
command=${1-}
[[ -n $command ]] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
shift

case $command in
    env)
        multihost env
        ;;
    podium)
        manager=$(multihost env) || exit 1
        PODIUM_MANAGER=${manager#export PODIUM_MANAGER=} exec "$PY" -m podium.client.cli "$@"
        ;;
    up|down|status|crash|power-off|restart|partition|heal|stop-agent|kill-agent|start-agent|pause-agent|resume-agent)
        ((EUID == 0)) || die "$command needs root (network namespaces, dockerd)"
        for tool in ip dockerd docker; do
            command -v "$tool" >/dev/null || die "$tool not found (apt-get install docker.io iproute2)"
        done
        exec_multihost "$command" "$@"
        ;;
    *)
        die "unknown command $command (run $SCRIPT without arguments for the list)"
        ;;
esac
