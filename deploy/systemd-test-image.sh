#!/usr/bin/env bash
# The image the systemd lane boots: a Debian bookworm root made with debootstrap, holding systemd
# (as /sbin/init), python3, python3-venv and ca-certificates: what a fresh Debian server has
# before deploy/install.sh runs. Imported as podium-systemd-test:<digest of this script>, so it is
# built once and again only when this script changes. Prints the image's name.
#
#   deploy/systemd-test-image.sh        (root; needs debootstrap, which deploy/bootstrap.sh installs)
#
# Environment: PODIUM_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

SCRIPT=$(readlink -f -- "${BASH_SOURCE[0]}")
TAG=$(sha256sum <"$SCRIPT" | cut -c1-16)
IMAGE=podium-systemd-test:$TAG
MIRROR=${PODIUM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Label every image this script makes, so that older ones can be found and removed.
LABEL=io.podium.test=systemd-image
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,procps,iproute2,passwd

say() { printf 'systemd-test-image: %s\n' "$*" >&2; }
die() {
    printf 'systemd-test-image: ERROR: %s\n' "$*" >&2
    exit 1
}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    printf '%s\n' "$IMAGE"
    exit 0
fi
((EUID == 0)) || die "building $IMAGE needs root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (deploy/bootstrap.sh installs it)"

ROOT=$(mktemp -d /var/tmp/podium-systemd-root.XXXXXX)
trap 'rm -rf -- "$ROOT"' EXIT
log=$ROOT.log
say "building $IMAGE: debootstrap bookworm from $MIRROR (log: $log)"
started=$SECONDS
if ! debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOT" "$MIRROR" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "debootstrap failed (full log: $log)"
fi

# A container boots faster and quieter without what only hardware or a console needs.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-udev-settle.service systemd-firstboot.service \
    systemd-logind.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
    dpkg-db-backup.timer e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer \
    systemd-networkd-wait-online.service systemd-hwdb-update.service \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    systemd-remount-fs.service systemd-journald-audit.socket; do
    ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
# The engine writes these at start (hosts, resolv.conf); machine-id is made at the first boot.
: >"$ROOT/etc/machine-id"
rm -f -- "$ROOT/var/lib/dbus/machine-id"
printf 'podium-systemd-test\n' >"$ROOT/etc/hostname"
rm -rf -- "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*

tar -C "$ROOT" --numeric-owner -c . |
    docker import --change 'CMD ["/sbin/init"]' --change 'ENV container=docker' \
        --change "LABEL $LABEL" - "$IMAGE" >/dev/null
rm -f -- "$log"
say "built $IMAGE in $((SECONDS - started)) s"
# Images an earlier version of this script built are of no use any more.
for old in $(docker images -q --filter "label=$LABEL" | sort -u); do
    [[ $old == "$(docker images -q "$IMAGE")" ]] || docker rmi -f "$old" >/dev/null 2>&1 || true
done
printf '%s\n' "$IMAGE"
