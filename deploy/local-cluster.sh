#!/usr/bin/env bash
# A one-machine Podium cluster: one manager and one agent as real processes on the local engine,
# running examples/web.yaml.
#
#   bash deploy/local-cluster.sh          start (or reuse) the cluster, deploy the example, show it
#   bash deploy/local-cluster.sh stop     remove the example, stop both processes, clean up
#
# State lives in var/ (gitignored): var/manager/, var/agent-1/ (data), var/*.log, var/*.pid.
# Start is idempotent: a manager or agent whose pid file names a live podium process is reused.
# The Docker engine is left running by `stop` (other work on this machine may be using it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
VAR=$REPO/var
MANAGER_ADDR=127.0.0.1:7070
NODE=local-1
SERVICE=web
MESH_PORT=8080  # the published port of examples/web.yaml
PODIUM_BIN=$REPO/.venv/bin/podium
PY=$REPO/.venv/bin/python
READY_TIMEOUT=${PODIUM_READY_TIMEOUT:-60}
PODIUM=("$PODIUM_BIN" --manager "$MANAGER_ADDR")

say() { printf 'local-cluster: %s\n' "$*"; }
die() { printf 'local-cluster: ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=deploy/lib.sh
source "$REPO/deploy/lib.sh"

# Pid from var/NAME.pid if it names a live podium process (not a recycled pid), else fail.
live_pid() {
    local pid
    pid=$(cat "$VAR/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q podium || return 1
    printf '%s\n' "$pid"
}

# start_process NAME ARGS...: run `podium ARGS...` detached, logging to var/NAME.log.
start_process() {
    local name=$1 pid
    shift
    if pid=$(live_pid "$name"); then
        say "$name already running (pid $pid): reusing it"
        return
    fi
    say "starting $name: podium $* (log: var/$name.log)"
    rm -f -- "$VAR/$name.pid"
    printf -- '--- %s: podium %s\n' "$(date -Is)" "$*" >>"$VAR/$name.log"
    # setsid: its own session, so Ctrl-C here or closing this terminal does not stop it. The pid is
    # written by the process that then execs podium, so it is podium's pid even if setsid forks.
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$VAR/$name.pid" "$PODIUM_BIN" "$@" \
        >>"$VAR/$name.log" 2>&1 </dev/null &
    local deadline=$((SECONDS + 5))
    until [[ -s $VAR/$name.pid ]]; do
        ((SECONDS < deadline)) || die "$name did not start (log: var/$name.log)"
        sleep 0.1
    done
}

# Fails (with the log's tail) if NAME is not running any more.
require_alive() {
    live_pid "$1" >/dev/null && return
    tail -n 20 "$VAR/$1.log" >&2 || true
    die "$1 exited (log above, full log: var/$1.log)"
}

manager_answers() {
    timeout 10 "${PODIUM[@]}" nodes -o json >/dev/null 2>&1
}

# Reads `podium nodes -o json` on stdin; succeeds when node $1 is ready, printing its id if any.
node_ready() {
    "$PY" -c '
import json, sys
for r in json.load(sys.stdin):
    if r.get("name") == sys.argv[1]:
        if str(r.get("state", "")).lower() == "ready":
            print(r.get("id") or "")
            sys.exit(0)
sys.exit(1)
' "$1"
}

wait_manager() {
    local deadline=$((SECONDS + READY_TIMEOUT))
    until manager_answers; do
        require_alive manager
        ((SECONDS < deadline)) || die "the manager does not answer after ${READY_TIMEOUT}s (log: var/manager.log)"
        sleep 0.3
    done
}

wait_node_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT)) out id
    say "waiting for node $NODE to be ready (up to ${READY_TIMEOUT}s)"
    while true; do
        if out=$(timeout 10 "${PODIUM[@]}" nodes -o json 2>/dev/null) &&
            id=$(node_ready "$NODE" <<<"$out"); then
            say "node $NODE is ready${id:+ (id $id)}"
            # For `stop`: this agent's containers carry io.podium.node.id=<id>.
            printf '%s\n' "$id" >"$VAR/agent-1.node-id"
            return
        fi
        require_alive manager
        require_alive agent-1
        if ((SECONDS >= deadline)); then
            "${PODIUM[@]}" nodes >&2 || true
            die "node $NODE not ready after ${READY_TIMEOUT}s (logs: var/manager.log, var/agent-1.log)"
        fi
        sleep 0.5
    done
}

# Reads `podium ps web -o json` on stdin; prints one curl line per published host port.
print_curl_lines() {
    "$PY" -c '
import json, sys
seen = []
for task in json.load(sys.stdin):
    for mapping in task.get("ports") or []:
        # "0.0.0.0:32768->80/tcp" or ":::32768->80/tcp": the host port ends the left side.
        host = str(mapping).split("->", 1)[0]
        port = host.rsplit(":", 1)[-1]
        if port.isdigit() and port not in seen:
            seen.append(port)
for port in seen:
    print(f"    curl http://127.0.0.1:{port}/")
sys.exit(0 if seen else 1)
'
}

start() {
    bash deploy/bootstrap.sh
    [[ -x $PODIUM_BIN ]] || die ".venv/bin/podium is missing after bootstrap"
    mkdir -p "$VAR/manager" "$VAR/agent-1"

    # The manager writes the local admin's credentials (~/.config/podium/credentials) at start,
    # which the podium commands below use; the agent joins with the token it prints.
    start_process manager manager --listen "$MANAGER_ADDR" --data-dir var/manager
    wait_manager
    (umask 077 && "${PODIUM[@]}" token agent >"$VAR/agent.token")
    start_process agent-1 agent --join "$MANAGER_ADDR" --name "$NODE" --data-dir var/agent-1 \
        --token-file var/agent.token
    wait_node_ready

    say "deploying examples/web.yaml"
    "${PODIUM[@]}" deploy -f examples/web.yaml
    echo
    "${PODIUM[@]}" ps
    echo

    local tasks
    tasks=$("${PODIUM[@]}" ps "$SERVICE" -o json)
    say "the $SERVICE service answers through the mesh (any node, spread over the replicas) at:"
    echo "    curl http://127.0.0.1:$MESH_PORT/"
    say "and each replica directly at:"
    print_curl_lines <<<"$tasks" || say "(no published ports found in 'podium ps $SERVICE -o json')"
    echo
    say "manager pid $(live_pid manager), agent pid $(live_pid agent-1); logs in var/*.log"
    say "stop everything with: bash deploy/local-cluster.sh stop"
}

# stop_process NAME: TERM, up to 10 s of grace, then KILL.
stop_process() {
    local name=$1 pid
    if ! pid=$(live_pid "$name"); then
        rm -f -- "$VAR/$name.pid"
        return
    fi
    say "stopping $name (pid $pid)"
    terminate_pid "$name" "$pid" 10
    rm -f -- "$VAR/$name.pid"
}

# Containers of this cluster's agent: those labelled with its node id when known (so containers of
# other Podium clusters on this engine, e.g. tests', are left alone), else any Podium container.
leftover_containers() {
    local id
    id=$(cat "$VAR/agent-1.node-id" 2>/dev/null || true)
    timeout 20 docker ps -aq --filter "label=io.podium.node.id${id:+=$id}" 2>/dev/null
}

stop() {
    if [[ -x $PODIUM_BIN ]] && manager_answers; then
        say "removing service $SERVICE"
        timeout 60 "${PODIUM[@]}" rm "$SERVICE" || say "'podium rm $SERVICE' failed: continuing"
        # Give the agent the chance to remove its containers itself before it is stopped.
        if live_pid agent-1 >/dev/null; then
            local deadline=$((SECONDS + 15))
            while [[ -n "$(leftover_containers)" ]] && ((SECONDS < deadline)); do sleep 0.5; done
        fi
    fi
    stop_process agent-1
    stop_process manager
    # The agent keeps its secrets tmpfs mounted across its own restarts; a stopped cluster lets go
    # of it, so that the clone can be removed.
    if mountpoint -q "$VAR/agent-1/secrets" 2>/dev/null; then
        umount "$VAR/agent-1/secrets" || say "could not unmount $VAR/agent-1/secrets"
    fi

    if timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
        local leftovers
        leftovers=$(leftover_containers || true)
        if [[ -n $leftovers ]]; then
            say "removing $(wc -w <<<"$leftovers") leftover container(s) of node $NODE"
            # shellcheck disable=SC2086 # one id per word
            docker rm -f $leftovers >/dev/null
        fi
        local engine=""
        if [[ -f $VAR/dockerd.started-by-bootstrap ]]; then
            engine=" (started by deploy/bootstrap.sh, pid $(cat "$VAR/dockerd.started-by-bootstrap"))"
        fi
        say "stopped; the Docker engine$engine is left running"
    else
        say "stopped; no Docker engine answers, so no containers to clean up"
    fi
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
-h | --help | help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" ;;
*)
    echo "usage: $0 [start|stop]" >&2
    exit 2
    ;;
esac
