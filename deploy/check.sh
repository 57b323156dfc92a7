#!/usr/bin/env bash
# Everything CI checks, in order, stopping at the first failure:
#   deploy/bootstrap.sh (venv, engine, example image), ruff check, mypy, pytest.
# Extra arguments go to pytest, e.g. `bash deploy/check.sh -k scheduler -x`.
#
# If no Docker engine answered before this run and bootstrap started one for it, that engine is
# stopped again on exit (success, failure or Ctrl-C): the machine is left as it was found.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
MARKER=var/dockerd.started-by-bootstrap

say() { printf 'check: %s\n' "$*"; }
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

engine_answers() {
    timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# The marker plus its mtime: bootstrap rewrites it each time it starts an engine, so a change
# across our bootstrap run means that run started it (a marker left by an earlier start does not).
marker_fingerprint() {
    if [[ -f $MARKER ]]; then
        printf '%s %s' "$(stat -c %y "$MARKER")" "$(cat "$MARKER")"
    fi
}

stop_our_engine() {
    local status=$? pid
    trap - EXIT INT TERM
    if [[ $engine_before == no && -f $MARKER && "$(marker_fingerprint)" != "$marker_before" ]]; then
        pid=$(cat "$MARKER")
        if [[ $pid == systemd ]]; then
            say "stopping the Docker engine this run started (systemctl stop docker)"
            systemctl stop docker docker.socket || true
        elif [[ $pid =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]]; then
            say "stopping the Docker engine this run started (dockerd pid $pid)"
            # dockerd stops its containers first (up to its 15 s shutdown timeout each batch).
            terminate_pid dockerd "$pid" 40
        fi
        rm -f -- "$MARKER"
    fi
    exit "$status"
}

engine_before=yes
engine_answers || engine_before=no
marker_before=$(marker_fingerprint)
# Installed before bootstrap runs: if bootstrap starts the engine and then fails, it still stops.
trap stop_our_engine EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash deploy/bootstrap.sh

VENV=.venv/bin
say "ruff check ."
"$VENV/ruff" check .
say "mypy -p podium.manager -p podium.agent -p podium.client -p podium.rules -p podium.lab"
"$VENV/mypy" -p podium.manager -p podium.agent -p podium.client -p podium.rules -p podium.lab
say "pytest -q $*"
"$VENV/pytest" -q "$@"
say "all checks passed"
