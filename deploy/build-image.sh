#!/usr/bin/env bash
# Build the test image podium/web:latest from the host's static busybox.
#
# No registry is reachable from the machines Podium is tested on, so the image is a tar of a
# tiny rootfs (/bin/busybox plus applet symlinks) fed to `docker import`. Its default command
# writes "hello from <hostname>" to /www/index.html and serves it with busybox httpd on port 80.
#
# Usage: deploy/build-image.sh [--force]
#   Idempotent: does nothing when the image already exists, unless --force is given.
#   Needs a running engine (deploy/bootstrap.sh starts one) and busybox-static.
set -euo pipefail

IMAGE="podium/web:latest"
# sh and httpd for the default command (mkdir too: it is not a shell builtin), the rest for tests
# and for poking around with `docker exec`.
APPLETS=(sh sleep httpd echo cat wget nc hostname true false mkdir)

force=0
case "${1-}" in
  "") ;;
  --force) force=1 ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

if ! docker info >/dev/null 2>&1; then
  echo "$0: no Docker engine answers (start one with deploy/bootstrap.sh)" >&2
  exit 1
fi

if [[ $force -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE already present"
  exit 0
fi

busybox=""
for candidate in /usr/bin/busybox /bin/busybox; do
  if [[ -x $candidate ]]; then busybox=$candidate; break; fi
done
if [[ -z $busybox ]]; then
  echo "$0: busybox not found (apt-get install busybox-static)" >&2
  exit 1
fi
# A dynamically linked busybox would need the host's libc inside the image.
if ldd "$busybox" >/dev/null 2>&1; then
  echo "$0: $busybox is dynamically linked; install busybox-static" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rootfs="$tmp/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in "${APPLETS[@]}"; do
  ln -s busybox "$rootfs/bin/$applet"
done

# $(hostname) must reach the container unexpanded: it runs there, at container start.
# shellcheck disable=SC2016
cmd='CMD ["/bin/sh","-c","mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && exec httpd -f -p 80 -h /www"]'
tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf - . \
  | docker import --change "$cmd" --change 'EXPOSE 80/tcp' - "$IMAGE" >/dev/null
echo "built $IMAGE"
