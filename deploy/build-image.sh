#!/usr/bin/env bash
# Build the test image podium/web:latest from the host's static busybox.
#
# No registry is reachable from the machines Podium is tested on, so the image is a tar of a
# tiny rootfs (/bin/busybox plus applet symlinks) fed to `docker import`. Its default command
# writes "hello from <hostname>" to /www/index.html and serves it with busybox httpd on port 80.
# /www/cgi-bin/burn is a CGI script that burns a fixed amount of cpu per request (for the
# autoscaling bench): GET /cgi-bin/burn?n=TURNS spins a shell loop TURNS times (default 3000,
# at most 9,999,999; about 10 ms of cpu at the default here: ~1 ms to start the script plus
# ~3 us a turn), then answers "hello from <hostname>". Any command serving /www with httpd
# (as the default one does) serves it too.
#
# Usage: deploy/build-image.sh [--force]
#   Idempotent: does nothing when the image already exists and was built by this version of the
#   script (its label io.podium.recipe holds the script's sha256), unless --force is given.
#   Needs a running engine (deploy/bootstrap.sh starts one) and busybox-static.
set -euo pipefail

IMAGE="podium/web:latest"
# sh and httpd for the default command (mkdir too: it is not a shell builtin), the rest for tests
# and for poking around with `docker exec`.
APPLETS=(sh sleep httpd echo cat wget nc hostname true false mkdir mv)

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

# An image built by an older version of this script lacks what this one adds: built again.
recipe=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
present=$(docker image inspect "$IMAGE" --format '{{index .Config.Labels "io.podium.recipe"}}' \
  2>/dev/null || true)
if [[ $force -eq 0 && $present == "$recipe" ]]; then
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
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp" "$rootfs/www/cgi-bin"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in "${APPLETS[@]}"; do
  ln -s busybox "$rootfs/bin/$applet"
done

# busybox httpd runs it with QUERY_STRING set; it reads /etc/hostname (which the engine mounts)
# with the shell's own `read`, so nothing but the loop costs a process.
cat >"$rootfs/www/cgi-bin/burn" <<'CGI'
#!/bin/sh
n=3000
case "$QUERY_STRING" in
  n=*)
    v=${QUERY_STRING#n=}
    v=${v%%&*}
    case $v in
      '' | *[!0-9]*) ;;
      *) [ ${#v} -le 7 ] && n=$v ;;
    esac
    ;;
esac
i=0
while [ $i -lt "$n" ]; do i=$((i + 1)); done
read -r host </etc/hostname
printf 'Content-Type: text/plain\r\n\r\nhello from %s\n' "$host"
CGI
chmod 755 "$rootfs/www/cgi-bin/burn"

# The three tiers of the stack in examples/shop.yaml. /cgi-bin/call asks $UPSTREAM (HOST:PORT)
# for $UPSTREAM_PATH (default /) and answers "<NAME> <hostname> -> <its answer's last line>"
# ($NAME default "call"), or 502 when the upstream does not answer.
cat >"$rootfs/www/cgi-bin/call" <<'CGI'
#!/bin/sh
read -r host </etc/hostname
up=${UPSTREAM:-}
h=${up%:*}
p=${up##*:}
last=""
while IFS= read -r line; do
  [ -n "$line" ] && last=$line
done <<ANSWER
$(printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "${UPSTREAM_PATH:-/}" "$h" | nc -w 5 "$h" "$p" 2>/dev/null)
ANSWER
last=${last%"$(printf '\r')"}
if [ -z "$last" ]; then
  printf 'Status: 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\n%s %s -> %s: no answer\n' \
    "${NAME:-call}" "$host" "$up"
  exit 0
fi
printf 'Content-Type: text/plain\r\n\r\n%s %s -> %s\n' "${NAME:-call}" "$host" "$last"
CGI
# /cgi-bin/kv counts its requests in $DATA_DIR/count (default /data) and answers
# "store <hostname> count=N password=yes" when the secret file $PASSWORD_FILE (default
# /run/secrets/password) holds something (it never prints it), else "password=no".
cat >"$rootfs/www/cgi-bin/kv" <<'CGI'
#!/bin/sh
read -r host </etc/hostname
f=${DATA_DIR:-/data}/count
n=0
[ -f "$f" ] && read -r n <"$f"
n=$((n + 1))
echo "$n" >"$f.new" && mv "$f.new" "$f"
password=no
[ -s "${PASSWORD_FILE:-/run/secrets/password}" ] && password=yes
printf 'Content-Type: text/plain\r\n\r\nstore %s count=%s password=%s\n' "$host" "$n" "$password"
CGI
chmod 755 "$rootfs/www/cgi-bin/call" "$rootfs/www/cgi-bin/kv"

# $(hostname) must reach the container unexpanded: it runs there, at container start.
# shellcheck disable=SC2016
cmd='CMD ["/bin/sh","-c","mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && exec httpd -f -p 80 -h /www"]'
tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf - . \
  | docker import --change "$cmd" --change 'EXPOSE 80/tcp' \
      --change "LABEL io.podium.recipe=$recipe" - "$IMAGE" >/dev/null
echo "built $IMAGE"
