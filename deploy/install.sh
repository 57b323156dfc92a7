#!/usr/bin/env bash
# Install Podium on a server, idempotently: run it again after pulling a new version.
#
#   deploy/install.sh [--role manager|agent|both] [--manager HOST:PORT]
#                     [--token-file PATH | --token TOKEN] [--wheel FILE] [--start] [--dry-run]
#
#   --role        which service(s) this host runs (default: both, a single-host cluster)
#   --manager     the manager agents join, written to a new /etc/podium/agent.env
#                 (default: 127.0.0.1:7070 with --role both; to be edited in the file with --role agent)
#   --token-file  (agent, both) a file holding the cluster's join token (`podium token agent` on the
#                 manager host prints it): copied to /etc/podium/agent.token, mode 0600, owner podium
#   --token       (agent, both) the same, given on the command line (visible in the process list
#                 while this runs: prefer --token-file). The token is never printed.
#   --wheel       install this release wheel (deploy/release.sh builds it) instead of building
#                 this repository; the deploy/ files still come from here
#   --start       also enable the unit(s) at boot and start them now, restarting those whose parts
#                 changed (below); without it nothing is started
#   --dry-run     print what would be done, change nothing (needs neither root nor systemd)
#
# Typical use: on the manager host `install.sh --role manager --start`, then `(umask 077; podium
# token agent > token)` there, and on each agent host `install.sh --role agent --manager HOST:7070
# --token-file token --start` with a copy of that file. With --role both --start (one host), the token is fetched from the manager just
# started and written for the agent: no manual step. The agent needs the token only for its first
# join (and after its certificate lapsed); its certificate and key live in /var/lib/podium/agent.
#
# Firewall: the manager listens on 7070 (the API, mutual TLS) and 7071 (joins: TLS, a token needed).
# Open both to agent hosts and to users' machines only, never to the internet.
#
# What it does:
#   - creates the virtualenv /opt/podium/venv (Python >= 3.11; PYTHON=... to choose the interpreter)
#     and pip-installs this repository into it (a regular, non-editable install), or the --wheel;
#   - links /usr/local/bin/podium to the virtualenv's `podium` (unless that path is taken);
#   - creates the system user "podium" the services run as;
#   - writes /etc/podium/manager.env and/or /etc/podium/agent.env from deploy/example.env, only if
#     missing (your settings are never overwritten);
#   - manager: links /etc/podium/admin.credentials (the path the CLI falls back to for root) to
#     /var/lib/podium/manager/admin.credentials, the local admin's credentials file the manager
#     writes at start (0600, owned by podium: its unit keeps /etc read-only to it);
#   - agent: writes the join token to /etc/podium/agent.token (0600, owned by podium) when given;
#   - copies deploy/podium-{manager,agent}.service to /etc/systemd/system and runs
#     `systemctl daemon-reload` when they changed and systemd is running;
#   - with --start, (re)starts only the services whose parts changed since this script last
#     started them: the package (a digest of the repository's package sources, or of the --wheel),
#     the unit file, the env file, and for the agent the join token. Run again with nothing
#     changed, it says "no change detected" and restarts nothing (digests in /opt/podium/installed).
# The agent needs a Docker engine on the host (Debian: apt-get install docker.io) and the "docker"
# group it creates.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
PREFIX=/opt/podium
VENV=$PREFIX/venv
ETC=/etc/podium
UNIT_DIR=/etc/systemd/system
SERVICE_USER=podium
PYTHON=${PYTHON:-python3}

ROLE=both
MANAGER=
START=no
DRY_RUN=no
TOKEN=
TOKEN_FILE=
TOKEN_PATH=$ETC/agent.token
WHEEL=
ADMIN_LINK=$ETC/admin.credentials
ADMIN_CREDENTIALS=/var/lib/podium/manager/admin.credentials
# What was installed and started, as digests: `package DIGEST`, and `UNIT DIGEST` for each unit
# this script started with those parts (see service_digest).
RECORD=$PREFIX/installed
# Set by every step that changes something on this host.
CHANGED=no
# How long --role both --start waits for the manager it started to hand out the join token.
TOKEN_WAIT_S=${TOKEN_WAIT_S:-60}

say() { printf 'install: %s\n' "$*"; }
die() {
    printf 'install: ERROR: %s\n' "$*" >&2
    exit 1
}
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

while (($#)); do
    case $1 in
    --role)
        (($# >= 2)) || die "--role needs a value: manager, agent or both"
        ROLE=$2
        shift 2
        ;;
    --role=*)
        ROLE=${1#--role=}
        shift
        ;;
    --manager)
        (($# >= 2)) || die "--manager needs a value: HOST:PORT"
        MANAGER=$2
        shift 2
        ;;
    --manager=*)
        MANAGER=${1#--manager=}
        shift
        ;;
    --token)
        (($# >= 2)) || die "--token needs a value (or use --token-file PATH)"
        TOKEN=$2
        shift 2
        ;;
    --token=*)
        TOKEN=${1#--token=}
        shift
        ;;
    --token-file)
        (($# >= 2)) || die "--token-file needs a value: PATH"
        TOKEN_FILE=$2
        shift 2
        ;;
    --token-file=*)
        TOKEN_FILE=${1#--token-file=}
        shift
        ;;
    --wheel)
        (($# >= 2)) || die "--wheel needs a value: the path of a podium-*.whl"
        WHEEL=$2
        shift 2
        ;;
    --wheel=*)
        WHEEL=${1#--wheel=}
        shift
        ;;
    --start)
        START=yes
        shift
        ;;
    --dry-run | -n)
        DRY_RUN=yes
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
done
case $ROLE in
manager) UNITS=(podium-manager) ;;
agent) UNITS=(podium-agent) ;;
both) UNITS=(podium-manager podium-agent) ;;
*) die "--role must be manager, agent or both (got '$ROLE')" ;;
esac
[[ -z $MANAGER && $ROLE == both ]] && MANAGER=127.0.0.1:7070
if [[ -n $MANAGER && ! $MANAGER =~ ^[^[:space:]]+:[0-9]+$ ]]; then
    die "--manager must look like HOST:PORT (got '$MANAGER')"
fi
# The shape rules/certs.py accepts. The token's value itself is never shown.
valid_token() { [[ $TOKEN =~ ^PODIUM1-[0-9a-f]{64}-[a-z2-7]{32}$ ]]; }
if [[ -n $TOKEN || -n $TOKEN_FILE ]]; then
    [[ -n $TOKEN && -n $TOKEN_FILE ]] && die "give --token or --token-file, not both"
    [[ $ROLE == manager ]] && die "--token and --token-file are for --role agent or both"
    if [[ -n $TOKEN_FILE ]]; then
        [[ -r $TOKEN_FILE ]] || die "--token-file $TOKEN_FILE: not a readable file"
        TOKEN=$(<"$TOKEN_FILE")
    fi
    TOKEN=${TOKEN//[[:space:]]/}
    valid_token ||
        die "${TOKEN_FILE:+--token-file $TOKEN_FILE: }not a join token (\`podium token agent\` prints one)"
fi

if [[ -n $WHEEL ]]; then
    [[ $WHEEL == *.whl && -r $WHEEL ]] ||
        die "--wheel $WHEEL: not a readable .whl file (deploy/release.sh builds podium-VERSION-py3-none-any.whl)"
    WHEEL=$(cd "$(dirname -- "$WHEEL")" && printf '%s/%s' "$PWD" "$(basename -- "$WHEEL")")
fi

has_unit() { [[ " ${UNITS[*]} " == *" $1 "* ]]; }

# run CMD...: execute, or only show it in a dry run.
run() {
    if [[ $DRY_RUN == yes ]]; then
        printf 'install: [dry-run] would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# run_logged LOG CMD...: like run, with the output appended to LOG; its tail is shown on failure.
run_logged() {
    local log=$1
    shift
    if [[ $DRY_RUN == yes ]]; then
        run "$@"
        return
    fi
    if ! "$@" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "failed: $* (full log: $log)"
    fi
}

systemd_running() {
    # sd_booted(3): the directory exists only when PID 1 is systemd.
    [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null
}

# ---------------------------------------------------------------------------------------------

preflight() {
    if [[ $DRY_RUN == no ]] && ((EUID != 0)); then
        die "must run as root (or try --dry-run)"
    fi
    if [[ $START == yes ]] && ! systemd_running; then
        [[ $DRY_RUN == yes ]] || die "--start needs systemd running as PID 1 (it is not here)"
        say "note: systemd is not running here, so --start would fail outside a dry run"
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11+)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is $("$PYTHON" -V 2>&1); Podium needs Python >= 3.11 (set PYTHON=...)"
}

# The package's digest: the --wheel's, or that of what pip builds from this repository
# (pyproject.toml, README.md and every file of the folders pyproject.toml maps to packages), so
# that an edit elsewhere (tests, docs) installs and restarts nothing.
package_digest() {
    if [[ -n $WHEEL ]]; then
        printf 'wheel:%s\n' "$(sha256sum <"$WHEEL" | cut -d' ' -f1)"
        return
    fi
    "$PYTHON" - "$REPO" <<'PY'
import hashlib, pathlib, sys, tomllib
root = pathlib.Path(sys.argv[1])
config = tomllib.loads((root / "pyproject.toml").read_text())
folders = sorted(set(config["tool"]["setuptools"]["package-dir"].values()))
files = [root / "pyproject.toml", root / "README.md"]
for folder in folders:
    files += [f for f in (root / folder).rglob("*") if f.is_file()
              and "__pycache__" not in f.parts and f.suffix != ".pyc"]
digest = hashlib.sha256()
for f in sorted(set(files)):
    digest.update(f"{f.relative_to(root)}\0{f.stat().st_size}\0".encode())
    digest.update(f.read_bytes())
print("source:" + digest.hexdigest())
PY
}

# recorded NAME: the digest this script last recorded for NAME ("" when none).
recorded() {
    [[ -r $RECORD ]] || return 0
    awk -v name="$1" '$1 == name { print $2 }' "$RECORD"
}

# record NAME DIGEST: replaces NAME's line in $RECORD (not in a dry run).
record() {
    [[ $DRY_RUN == yes ]] && return 0
    local tmp
    mkdir -p -- "$PREFIX"
    tmp=$(mktemp "$RECORD.XXXXXX")
    { [[ -r $RECORD ]] && awk -v name="$1" '$1 != name' "$RECORD"; printf '%s %s\n' "$1" "$2"; } >"$tmp"
    chmod 0644 "$tmp"
    mv -f -- "$tmp" "$RECORD"
}

install_venv() {
    PACKAGE_DIGEST=$(package_digest) || die "cannot compute the package's digest"
    local fresh=no
    if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        say "virtualenv $VENV exists"
    else
        fresh=yes
        if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
            command -v apt-get >/dev/null || die "$PYTHON cannot create virtualenvs (no ensurepip)"
            say "installing python3-venv (needed to create virtualenvs)"
            run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        fi
        if [[ -e $VENV ]]; then
            say "virtualenv $VENV is broken: recreating it"
            run rm -rf -- "$VENV"
        fi
        say "creating virtualenv $VENV"
        run mkdir -p "$PREFIX"
        run "$PYTHON" -m venv "$VENV"
    fi
    if [[ $fresh == no && -x $VENV/bin/podium && "$(recorded package)" == "$PACKAGE_DIGEST" ]]; then
        say "podium in $VENV is up to date (${PACKAGE_DIGEST%%:*} digest unchanged)"
        return
    fi
    CHANGED=yes

    local log=$PREFIX/install-pip.log
    if [[ -n $WHEEL ]]; then
        say "installing podium from $WHEEL into $VENV"
        run_logged "$log" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        # --force-reinstall --no-deps: this wheel even when the same version is installed; its
        # dependencies are installed once (the second install) and kept when satisfied.
        run_logged "$log" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --force-reinstall --no-deps "$WHEEL"
        run_logged "$log" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$WHEEL"
    else
        install_source "$log"
    fi
    [[ $DRY_RUN == yes ]] ||
        say "installed podium $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("podium"))')"
    record package "$PACKAGE_DIGEST"
}

install_source() {
    local log=$1
    say "installing podium from $REPO into $VENV"
    # From a clean copy: building in the work tree would reuse its build/ directory, where files of
    # since-deleted modules linger and would be packaged again (and the dev venv, var/ and .git are
    # not needed).
    local src
    if [[ $DRY_RUN == yes ]]; then
        src=/tmp/podium-src.XXXXXX
    else
        src=$(mktemp -d /tmp/podium-src.XXXXXX)
        # shellcheck disable=SC2064 # expand now: src is local
        trap "rm -rf -- '$src'" EXIT
    fi
    run tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./var \
        --exclude='*.egg-info' --exclude=__pycache__ -cf "$src.tar" .
    run tar -C "$src" -xf "$src.tar"
    run rm -f -- "$src.tar"
    # pip and setuptools are chatty on stderr even with --quiet: keep it in a log, show it on failure.
    run_logged "$log" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    # A local directory is always rebuilt and reinstalled; satisfied dependencies are kept.
    run_logged "$log" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$src"
}

install_user() {
    if getent passwd "$SERVICE_USER" >/dev/null; then
        say "user $SERVICE_USER exists"
    else
        say "creating system user $SERVICE_USER"
        CHANGED=yes
        run useradd --system --user-group --home-dir /var/lib/podium --no-create-home \
            --shell /usr/sbin/nologin --comment "Podium services" "$SERVICE_USER"
    fi
    if has_unit podium-agent && ! getent group docker >/dev/null; then
        say "WARNING: no 'docker' group: install Docker (apt-get install docker.io) before starting the agent"
    fi
}

# The part of deploy/example.env under the heading that names FILE (minus leading blank lines),
# with PODIUM_MANAGER set from --manager when given.
env_section() {
    awk -v file="$1" -v manager="$MANAGER" '
        /^# ----- / { inside = index($0, file) > 0; started = 0; next }
        !inside || (!started && /^$/) { next }
        { started = 1 }
        manager != "" && /^PODIUM_MANAGER=/ { $0 = "PODIUM_MANAGER=" manager }
        { print }' deploy/example.env
}

install_env() {
    local unit role file
    run install -d -m 0755 "$ETC"
    for unit in "${UNITS[@]}"; do
        role=${unit#podium-}
        file=$ETC/$role.env
        if [[ -e $file ]]; then
            say "$file exists: kept as is"
            continue
        fi
        say "writing $file (edit it, then restart $unit)"
        CHANGED=yes
        if [[ $DRY_RUN == yes ]]; then
            say "[dry-run] would write $file:"
            env_section "$file" | sed 's/^/    | /'
        else
            {
                printf '# Settings for %s.service (from deploy/example.env). Format: VAR=value.\n' "$unit"
                env_section "$file"
            } >"$file.tmp"
            chmod 0640 "$file.tmp"
            mv -f -- "$file.tmp" "$file"
        fi
        if [[ $role == agent && -z $MANAGER ]]; then
            say "WARNING: set PODIUM_MANAGER in $file to your manager's HOST:PORT (or use --manager)"
        fi
    done
}

# `podium` on root's PATH: /usr/local/bin/podium, a link to the virtualenv's command.
install_cli_link() {
    local link=/usr/local/bin/podium target=$VENV/bin/podium
    if [[ -L $link && "$(readlink -- "$link")" == "$target" ]]; then
        say "$link links to $target"
    elif [[ -e $link || -L $link ]]; then
        say "WARNING: $link exists and is not a link to $target: kept as is (use $target)"
    else
        say "linking $link to $target"
        CHANGED=yes
        run ln -s -- "$target" "$link"
    fi
}

# The CLI run as root falls back to /etc/podium/admin.credentials; the manager writes the file in
# its state directory (see the unit for why), so the path here is a link to it.
install_admin_link() {
    has_unit podium-manager || return 0
    if [[ -L $ADMIN_LINK && "$(readlink -- "$ADMIN_LINK")" == "$ADMIN_CREDENTIALS" ]]; then
        say "$ADMIN_LINK links to $ADMIN_CREDENTIALS"
    elif [[ -e $ADMIN_LINK || -L $ADMIN_LINK ]]; then
        say "WARNING: $ADMIN_LINK exists and is not a link to $ADMIN_CREDENTIALS: kept as is"
    else
        say "linking $ADMIN_LINK to $ADMIN_CREDENTIALS (the manager writes it at start)"
        CHANGED=yes
        run ln -s -- "$ADMIN_CREDENTIALS" "$ADMIN_LINK"
    fi
}

# write_token: $TOKEN to $TOKEN_PATH, 0600, owned by the service user. Created 0600 by mktemp in
# the same directory and renamed over: never readable by others, never half written.
write_token() {
    local source=$1 tmp
    if [[ $DRY_RUN == yes ]]; then
        say "[dry-run] would write the join token ($source) to $TOKEN_PATH, mode 0600, owner $SERVICE_USER"
        return
    fi
    if [[ -f $TOKEN_PATH && "$(<"$TOKEN_PATH")" == "$TOKEN" ]]; then
        say "$TOKEN_PATH holds this token already"
        return
    fi
    CHANGED=yes
    tmp=$(umask 077 && mktemp "$TOKEN_PATH.XXXXXX")
    printf '%s\n' "$TOKEN" >"$tmp"
    chown "$SERVICE_USER:$SERVICE_USER" "$tmp"
    chmod 0600 "$tmp"
    mv -f -- "$tmp" "$TOKEN_PATH"
    say "wrote the join token ($source) to $TOKEN_PATH, mode 0600, owner $SERVICE_USER"
}

install_token() {
    has_unit podium-agent || return 0
    if [[ -n $TOKEN ]]; then
        if [[ -n $TOKEN_FILE ]]; then write_token "from $TOKEN_FILE"; else write_token "from --token"; fi
    elif [[ -e $TOKEN_PATH ]]; then
        say "$TOKEN_PATH exists: kept as is"
    elif [[ $ROLE == agent ]]; then
        say "no join token given: unless this agent already holds a certificate in force, give one"
        say "    (--token-file PATH; \`podium token agent\` on the manager host prints it)"
    fi
}

# --role both --start: the local manager hands out the token once it answers (bounded wait).
fetch_token() {
    local cli=(env -u PODIUM_MANAGER -u PODIUM_CREDENTIALS "$VENV/bin/podium"
        --credentials "$ADMIN_LINK" token agent)
    if [[ $DRY_RUN == yes ]]; then
        say "[dry-run] would wait up to ${TOKEN_WAIT_S} s for the manager to answer:"
        run "${cli[@]}"
        write_token "from the local manager"
        return
    fi
    say "waiting up to ${TOKEN_WAIT_S} s for the manager to hand out the join token"
    local deadline=$((SECONDS + TOKEN_WAIT_S)) err=$PREFIX/install-token.log
    until TOKEN=$("${cli[@]}" 2>"$err"); do
        if ((SECONDS >= deadline)); then
            tail -n 5 "$err" >&2
            die "the manager did not hand out the join token within ${TOKEN_WAIT_S} s" \
                "(systemctl status podium-manager; then run this again)"
        fi
        sleep 1
    done
    TOKEN=${TOKEN//[[:space:]]/}
    valid_token || die "the manager answered \`podium token agent\` with something else than a join token"
    write_token "from the local manager"
}

install_units() {
    local unit changed=no
    for unit in "${UNITS[@]}"; do
        if cmp -s "deploy/$unit.service" "$UNIT_DIR/$unit.service"; then
            say "$UNIT_DIR/$unit.service is up to date"
        else
            say "installing $UNIT_DIR/$unit.service"
            run install -D -m 0644 "deploy/$unit.service" "$UNIT_DIR/$unit.service"
            changed=yes
            CHANGED=yes
        fi
    done
    if [[ $changed == yes ]]; then
        if systemd_running; then
            run systemctl daemon-reload
        else
            say "systemd is not running here: skipped systemctl daemon-reload"
        fi
    fi
}

# service_digest UNIT: a digest of what this script installs for the service: the package, the
# unit file, its env file and, for the agent, the join token. (Drop-ins an administrator added
# are theirs: systemctl restart applies them.)
service_digest() {
    local unit=$1 role=${1#podium-} part
    {
        printf '%s\n' "$PACKAGE_DIGEST"
        for part in "$UNIT_DIR/$unit.service" "$ETC/$role.env"; do
            [[ -f $part ]] && printf '%s %s\n' "$part" "$(sha256sum <"$part" | cut -d' ' -f1)"
        done
        if [[ $role == agent && -f $TOKEN_PATH ]]; then
            printf 'token %s\n' "$(sha256sum <"$TOKEN_PATH" | cut -d' ' -f1)"
        fi
    } | sha256sum | cut -d' ' -f1
}

start_units() {
    local unit digest
    if [[ $START == no ]]; then
        say "nothing started. To start now and at every boot:"
        for unit in "${UNITS[@]}"; do say "    systemctl enable --now $unit"; done
        if [[ $ROLE == both && -z $TOKEN && ! -e $TOKEN_PATH ]]; then
            say "the agent's first join needs the token: run this again with --start (it fetches it),"
            say "    or start podium-manager and write \`podium token agent\` to $TOKEN_PATH (0600, owner $SERVICE_USER)"
        fi
        return
    fi
    for unit in "${UNITS[@]}"; do
        # One host: the manager first, so that the agent starts with the token it hands out.
        if [[ $unit == podium-agent && $ROLE == both && -z $TOKEN && ! -e $TOKEN_PATH ]]; then
            fetch_token
        fi
        run systemctl enable --quiet "$unit"
        digest=$(service_digest "$unit")
        if [[ "$(recorded "$unit")" == "$digest" ]] &&
            [[ "$(systemctl is-active "$unit" 2>/dev/null)" == active ]]; then
            say "$unit runs what is installed: not restarted"
            continue
        fi
        CHANGED=yes
        # restart, not start: a running unit picks up the code just installed. Safe for the agent:
        # KillMode=process and it adopts its running containers. Type=notify: it returns once
        # the daemon said READY=1.
        say "(re)starting $unit"
        run systemctl restart "$unit" ||
            die "$unit did not start (systemctl status $unit; journalctl -u $unit)"
        record "$unit" "$digest"
    done
}

[[ $DRY_RUN == yes ]] && say "dry run: nothing will be changed"
say "role: $ROLE (${UNITS[*]})"
preflight
install_venv
install_user
install_env
install_cli_link
install_admin_link
install_token
install_units
start_units
if [[ $CHANGED == no ]]; then
    say "no change detected"
else
    say "done"
fi
