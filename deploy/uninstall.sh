#!/usr/bin/env bash
# Remove what deploy/install.sh installed on this host.
#
#   deploy/uninstall.sh [--purge] [--dry-run]
#
#   --purge     also delete the data in /var/lib/podium (the manager's state, CA and secrets key;
#               the agent's node identity and certificate: this host can no longer rejoin as the
#               same node) and remove this node's task containers and engine networks (those
#               labelled io.podium.node.id=<this node's id>)
#   --dry-run   print what would be done, change nothing
#
# Always: stops and disables podium-manager and podium-agent, removes their units (and drop-in
# directories) from /etc/systemd/system, /opt/podium, the /usr/local/bin/podium link, /etc/podium
# and the "podium" user. Without --purge, /var/lib/podium and the containers of Podium's tasks are
# kept: the containers keep running (unmanaged), and an install with the same data adopts them.
# Before removing a manager for good, take a backup (`podium manager backup`).
set -euo pipefail

PREFIX=/opt/podium
ETC=/etc/podium
DATA=/var/lib/podium
UNIT_DIR=/etc/systemd/system
CLI_LINK=/usr/local/bin/podium
SERVICE_USER=podium
UNITS=(podium-agent podium-manager)
# Must match podium.agent.executor.LABEL_NODE and podium.agent._networks.LABEL_NETWORK.
LABEL_NODE=io.podium.node.id
LABEL_NETWORK=io.podium.network

PURGE=no
DRY_RUN=no

say() { printf 'uninstall: %s\n' "$*"; }
die() {
    printf 'uninstall: ERROR: %s\n' "$*" >&2
    exit 1
}
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

while (($#)); do
    case $1 in
    --purge) PURGE=yes ;;
    --dry-run | -n) DRY_RUN=yes ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1 (expected --purge or --dry-run)"
        ;;
    esac
    shift
done

run() {
    if [[ $DRY_RUN == yes ]]; then
        printf 'uninstall: [dry-run] would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

systemd_running() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; }

if [[ $DRY_RUN == no ]] && ((EUID != 0)); then
    die "must run as root (or try --dry-run)"
fi
[[ $DRY_RUN == yes ]] && say "dry run: nothing will be changed"

# Read before anything is removed: which containers are this node's.
NODE_ID=
if [[ -r $DATA/agent/node_id ]]; then
    NODE_ID=$(tr -d '[:space:]' <"$DATA/agent/node_id")
    [[ $NODE_ID =~ ^[A-Za-z0-9._-]+$ ]] || die "$DATA/agent/node_id does not hold a node id"
fi

stop_units() {
    local unit present=no
    for unit in "${UNITS[@]}"; do
        [[ -e $UNIT_DIR/$unit.service || -d $UNIT_DIR/$unit.service.d ]] && present=yes
    done
    if systemd_running; then
        for unit in "${UNITS[@]}"; do
            if systemctl cat "$unit" >/dev/null 2>&1; then
                # The agent stops alone (KillMode=process): its containers keep running.
                say "stopping and disabling $unit"
                run systemctl disable --now --quiet "$unit"
            fi
        done
    elif [[ $present == yes ]]; then
        say "systemd is not running here: nothing to stop"
    fi
    for unit in "${UNITS[@]}"; do
        if [[ -e $UNIT_DIR/$unit.service ]]; then
            say "removing $UNIT_DIR/$unit.service"
            run rm -f -- "$UNIT_DIR/$unit.service"
        fi
        if [[ -d $UNIT_DIR/$unit.service.d ]]; then
            say "removing $UNIT_DIR/$unit.service.d"
            run rm -rf -- "$UNIT_DIR/$unit.service.d"
        fi
    done
    if [[ $present == yes ]] && systemd_running; then
        run systemctl daemon-reload
        for unit in "${UNITS[@]}"; do run systemctl reset-failed "$unit" 2>/dev/null || true; done
    fi
}

remove_path() {
    local path=$1
    if [[ -e $path || -L $path ]]; then
        say "removing $path"
        run rm -rf -- "$path"
    fi
}

remove_cli_link() {
    if [[ -L $CLI_LINK && "$(readlink -- "$CLI_LINK")" == "$PREFIX/venv/bin/podium" ]]; then
        say "removing the link $CLI_LINK"
        run rm -f -- "$CLI_LINK"
    elif [[ -e $CLI_LINK || -L $CLI_LINK ]]; then
        say "$CLI_LINK is not the link install.sh made: kept"
    fi
}

remove_user() {
    if getent passwd "$SERVICE_USER" >/dev/null; then
        say "removing user $SERVICE_USER"
        run userdel "$SERVICE_USER"
    fi
    if getent group "$SERVICE_USER" >/dev/null; then
        say "removing group $SERVICE_USER"
        run groupdel "$SERVICE_USER"
    fi
}

# --purge: this node's task containers and engine networks.
purge_engine() {
    if [[ -z $NODE_ID ]]; then
        say "no node id in $DATA/agent/node_id: no container is known to be this node's (remove"
        say "    leftovers by label: docker ps -a --filter label=$LABEL_NODE)"
        return
    fi
    if ! command -v docker >/dev/null || ! docker version >/dev/null 2>&1; then
        say "WARNING: no Docker engine answers: this node's containers ($LABEL_NODE=$NODE_ID) are left"
        return
    fi
    local ids
    ids=$(docker ps -aq --filter "label=$LABEL_NODE=$NODE_ID")
    if [[ -n $ids ]]; then
        say "removing this node's $(wc -w <<<"$ids") task container(s) ($LABEL_NODE=$NODE_ID)"
        # shellcheck disable=SC2086 # one id per word
        run docker rm -f $ids
    else
        say "no task container of this node ($LABEL_NODE=$NODE_ID)"
    fi
    ids=$(docker network ls -q --filter "label=$LABEL_NETWORK" --filter "label=$LABEL_NODE=$NODE_ID")
    if [[ -n $ids ]]; then
        say "removing this node's $(wc -w <<<"$ids") engine network(s)"
        # shellcheck disable=SC2086
        run docker network rm $ids
    fi
}

purge_data() {
    [[ -e $DATA ]] || return 0
    # The agent keeps secrets in a tmpfs under its data dir: unmount before deleting.
    local mount
    while read -r mount; do
        say "unmounting $mount"
        run umount -- "$mount"
    done < <(awk -v data="$DATA/" 'index($2, data) == 1 { print $2 }' /proc/self/mounts | sort -r)
    remove_path "$DATA"
}

stop_units
if [[ $PURGE == yes ]]; then
    purge_engine
fi
remove_path "$PREFIX"
remove_cli_link
remove_path "$ETC"
if [[ $PURGE == yes ]]; then
    purge_data
elif [[ -e $DATA ]]; then
    say "kept $DATA (the manager's state, CA and secrets key; the agent's node identity):"
    say "    run again with --purge to delete it (a new install adopts it: systemd gives the"
    say "    state directories to the new podium user when the services start)"
    if [[ -n $NODE_ID ]]; then
        say "kept this node's task containers ($LABEL_NODE=$NODE_ID), which keep running;"
        say "    --purge removes them"
    fi
fi
remove_user
say "done"
