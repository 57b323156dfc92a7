#!/usr/bin/env bash
# Idempotent set-up shared by deploy/local-cluster.sh and deploy/check.sh.
#
#   1. a virtualenv at .venv holding this repo installed in strict editable mode (so mypy sees
#      podium.manager / podium.agent); skipped while a stamp says nothing relevant changed;
#   2. a Docker engine that answers: the Debian packages are installed when missing, and dockerd is
#      started when nothing answers (systemd when it runs, else a detached dockerd). When this script
#      starts dockerd itself it writes its pid to var/dockerd.started-by-bootstrap, so a caller that
#      only needed the engine for its own run (check.sh) can stop it again;
#   3. Debian's chromium (headless, for the dashboard's browser tests) when it is missing;
#   4. the example image podium/web:latest (deploy/build-image.sh, which skips when present);
#   5. debootstrap, for the systemd lane's Debian root (deploy/systemd-test-image.sh), and etcd
#      (Debian's etcd-server), for the managers' shared store and the etcd lane.
#
# Works from any cwd and on a fresh machine: no engine, stale containers, every daemon stopped.
# Environment: PYTHON (default python3) creates the venv; PODIUM_ENGINE_TIMEOUT (default 60) bounds
# the wait for the engine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
VENV=$REPO/.venv
STAMP=$VENV/.podium-install-stamp
MARKER=$REPO/var/dockerd.started-by-bootstrap
DOCKERD_LOG=/var/log/podium-dockerd.log
PYTHON=${PYTHON:-python3}
ENGINE_TIMEOUT=${PODIUM_ENGINE_TIMEOUT:-60}

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$REPO/var"
# Two callers may run at once (a cluster being started while checks run): serialise them, or both
# would pip-install into the same venv and start two dockerds. fd 9 must not leak into dockerd
# (see start_dockerd), or the lock would be held for the engine's lifetime.
exec 9>"$REPO/var/.bootstrap.lock"
flock -w 900 9 || die "another bootstrap has held var/.bootstrap.lock for 15 minutes"

# ---------------------------------------------------------------------------------------------
# 1. virtualenv + strict editable install
# ---------------------------------------------------------------------------------------------

# What the strict editable install depends on: it links the files present at install time, so a
# module added (or removed) since then needs a reinstall; edits to existing files do not.
source_listing() {
    find manager agent client lab rules proto \( -name __pycache__ -prune \) -o \
        \( -name '*.py' -o -name '*.pyi' -o -name py.typed -o -path '*/static/*' \) -type f -print \
        2>/dev/null | LC_ALL=C sort
}

ensure_venv() {
    if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        return
    fi
    if [[ -e $VENV ]]; then
        # Typically the interpreter it was made from moved or was upgraded away.
        say "virtualenv at .venv is broken: recreating it"
        rm -rf -- "$VENV"
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11+)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is $("$PYTHON" -V 2>&1); Podium needs Python >= 3.11 (set PYTHON=...)"
    say "creating virtualenv .venv with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed (on Debian's own python: apt-get install python3-venv)"
}

ensure_install() {
    local listing
    listing=$(source_listing)
    if [[ -f $STAMP && $STAMP -nt pyproject.toml && -x $VENV/bin/podium ]] &&
        [[ "$(cat "$STAMP")" == "$listing" ]]; then
        say "virtualenv up to date (.venv)"
        return
    fi
    say "installing podium[dev] into .venv (strict editable mode)"
    rm -f -- "$STAMP"
    # pip and setuptools are chatty on stderr even with --quiet: keep it in a log, show it on failure.
    local log=$REPO/var/bootstrap-pip.log
    if ! { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip &&
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --config-settings editable_mode=strict -e '.[dev]'; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "pip install failed (full log: var/bootstrap-pip.log)"
    fi
    # Written only after a successful install, from the listing taken before it started: a module
    # added meanwhile makes the next run reinstall rather than be missed.
    printf '%s\n' "$listing" >"$STAMP.tmp"
    mv -f -- "$STAMP.tmp" "$STAMP"
}

# ---------------------------------------------------------------------------------------------
# 2. Docker engine
# ---------------------------------------------------------------------------------------------

engine_answers() {
    # The server part: the client alone succeeds at `docker version --format {{.Client.Version}}`.
    timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

systemd_running() {
    # sd_booted(3): the directory exists only when PID 1 is systemd. `systemctl` may well be
    # installed without systemd running (as in containers and on the CI machines).
    [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null
}

ensure_packages() {
    local missing=()
    command -v dockerd >/dev/null && command -v docker >/dev/null || missing+=(docker.io)
    # build-image.sh copies busybox into an image: it must be the static build.
    if command -v dpkg-query >/dev/null; then
        dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
            missing+=(busybox-static)
    else
        command -v busybox >/dev/null || missing+=(busybox-static)
    fi
    command -v ip >/dev/null || missing+=(iproute2)
    ((${#missing[@]} == 0)) && return
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    ((EUID == 0)) || die "missing ${missing[*]}: run as root to install them"
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Pid of a dockerd that is alive, from its pid file (it may be alive but not answering yet).
live_dockerd_pid() {
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
    printf '%s\n' "$pid"
}

start_dockerd() {
    local pid
    if systemd_running && systemctl cat docker.service >/dev/null 2>&1; then
        say "starting the engine: systemctl start docker"
        systemctl start docker
        echo systemd >"$MARKER"
        return
    fi
    if pid=$(live_dockerd_pid); then
        # Started but not answering yet (or by someone else a moment ago): do not start a second one.
        say "dockerd (pid $pid) is running but not answering yet: waiting for it"
        return
    fi
    ((EUID == 0)) || die "no Docker engine answers and only root can start dockerd"
    # A pid file left by an engine that did not stop cleanly (e.g. a machine image taken while it
    # ran) makes dockerd refuse to start when that pid now belongs to another process.
    if [[ -f /var/run/docker.pid ]]; then
        say "removing stale /var/run/docker.pid"
        rm -f /var/run/docker.pid
    fi
    say "starting the engine: setsid dockerd (log: $DOCKERD_LOG)"
    # setsid: its own session, so neither Ctrl-C in this terminal nor its closing reaches it.
    # 9>&-: do not hand it the bootstrap lock.
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    STARTED_PID=$!
}

ensure_engine() {
    STARTED_PID=
    if engine_answers; then
        say "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        forget_stale_marker
        return
    fi
    ensure_packages
    # The packages' postinst may have started it (on a machine with systemd).
    engine_answers || start_dockerd
    local deadline=$((SECONDS + ENGINE_TIMEOUT))
    until engine_answers; do
        if [[ -n $STARTED_PID ]] && ! kill -0 "$STARTED_PID" 2>/dev/null &&
            ! live_dockerd_pid >/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited during start-up (log above, full log: $DOCKERD_LOG)"
        fi
        if ((SECONDS >= deadline)); then
            [[ -n $STARTED_PID ]] && { tail -n 20 "$DOCKERD_LOG" >&2 || true; }
            die "no Docker engine answered within ${ENGINE_TIMEOUT}s (log: $DOCKERD_LOG)"
        fi
        sleep 0.5
    done
    if [[ -n $STARTED_PID ]]; then
        # dockerd's own pid file is authoritative (setsid may have forked, making $! its parent).
        live_dockerd_pid >"$MARKER" || echo "$STARTED_PID" >"$MARKER"
        say "Docker engine started (pid $(cat "$MARKER")) and answers"
    else
        say "Docker engine answers"
    fi
}

# A marker whose dockerd is gone says nothing any more: drop it so no caller acts on it.
forget_stale_marker() {
    local pid
    [[ -f $MARKER ]] || return 0
    pid=$(cat "$MARKER" 2>/dev/null || true)
    if [[ $pid == systemd ]]; then
        return 0
    fi
    if ! [[ $pid =~ ^[0-9]+$ ]] || [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]]; then
        rm -f -- "$MARKER"
    fi
}

# ---------------------------------------------------------------------------------------------
# 3. headless Chromium, for the dashboard's browser tests (pytest -m browser)
# ---------------------------------------------------------------------------------------------

ensure_chromium() {
    if command -v chromium >/dev/null; then
        return
    fi
    if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
        say "WARNING: no chromium (Debian: apt-get install chromium): the browser tests will fail"
        return
    fi
    say "installing Debian's chromium (for the dashboard's browser tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

# ---------------------------------------------------------------------------------------------
# 4. example image
# ---------------------------------------------------------------------------------------------

ensure_image() {
    if [[ -f deploy/build-image.sh ]]; then
        say "building the example image (deploy/build-image.sh)"
        bash deploy/build-image.sh
    else
        say "WARNING: deploy/build-image.sh is missing: example image podium/web:latest not built"
    fi
}

# ---------------------------------------------------------------------------------------------
# 5. what the systemd and etcd lanes need besides the engine
# ---------------------------------------------------------------------------------------------

# ensure_debian_package COMMAND PACKAGE WHAT-NEEDS-IT: installs PACKAGE when COMMAND is missing.
ensure_debian_package() {
    local cmd=$1 package=$2 why=$3
    command -v "$cmd" >/dev/null || [[ -x /usr/sbin/$cmd ]] && return 0
    if ! command -v apt-get >/dev/null || ((EUID != 0)); then
        say "WARNING: $cmd is missing ($why needs it): apt-get install $package"
        return 0
    fi
    say "installing Debian package: $package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" \
        >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    }
}

ensure_venv
ensure_install
ensure_engine
ensure_chromium
ensure_image
ensure_debian_package debootstrap debootstrap "the systemd lane"
ensure_debian_package etcd etcd-server "the etcd lane"
say "ready"
