#!/usr/bin/env bash
# Build Podium's release wheel from this repository:
#
#   deploy/release.sh [--out DIR]      (default DIR: dist)
#
# Writes DIR/podium-VERSION-py3-none-any.whl (pure Python: one wheel for every Linux host with
# Python >= 3.11) and DIR/SHA256SUMS, and prints the wheel's path. Servers install it with
# `deploy/install.sh --wheel FILE` (see the README, "Installing on servers"); its dependencies
# come from the package index when installed. Built from a clean copy of the tree (no .git,
# .venv, build/ or var/), so nothing of a development checkout slips in. Needs python3 >= 3.11
# with pip (PYTHON=... to choose the interpreter); changes nothing outside DIR.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
OUT=dist
PYTHON=${PYTHON:-python3}

die() {
    printf 'release: ERROR: %s\n' "$*" >&2
    exit 1
}

while (($#)); do
    case $1 in
    --out)
        (($# >= 2)) || die "--out needs a directory"
        OUT=$2
        shift 2
        ;;
    -h | --help)
        awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die "$PYTHON is not Python >= 3.11 (set PYTHON=...)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (Debian: apt-get install python3-pip)"

src=$(mktemp -d /tmp/podium-release.XXXXXX)
trap 'rm -rf -- "$src"' EXIT
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./var \
    --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$src/" -xf -
mkdir -p "$src/wheels"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$src/wheels" "$src" \
    >"$src/pip.log" 2>&1 || {
    tail -n 30 "$src/pip.log" >&2
    die "building the wheel failed"
}
wheel=$(find "$src/wheels" -name 'podium-*.whl' -print -quit)
[[ -n $wheel ]] || die "pip built no podium wheel"
mkdir -p "$OUT"
cp -f -- "$wheel" "$OUT/"
(cd "$OUT" && sha256sum -- podium-*.whl >SHA256SUMS)
printf '%s\n' "$OUT/$(basename "$wheel")"
