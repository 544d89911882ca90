#!/usr/bin/env bash
# The Debian 12 system under the appliance, for image/build.sh: mmdebstrap of the board's packages,
# the board's own step after it (pi4: the Pi firmware's files), and the box's Python venv with its
# PyPI packages and the pjsua2 wheel. Cached as one tar under a hash of exactly those inputs, so a
# change to the appliance's own code rebuilds only the layer above (for the Pi image, whose
# packages are configured under qemu-user, 20 minutes become a few).
#   image/base.sh BOARD WHEEL   -> prints the cached tar's path; sourced helpers come from build.sh
# A base older than EDGEPBX_BASE_MAX_DAYS (7) is made again, so images take in Debian's security
# updates; EDGEPBX_IMAGE_REBUILD=1 makes it again at once (=image: only the layer above).
set -euo pipefail
board=${1:?usage: image/base.sh BOARD WHEEL}
wheel=${2:?usage: image/base.sh BOARD WHEEL}
case $board in
  x86) arch=amd64;;
  pi4) arch=arm64;;
  *) echo "image: unknown board $board (x86 or pi4)" >&2; exit 2;;
esac
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
stage() { echo "image[$board]: $*" >&2; }
# shellcheck source=boards/x86/boot-partition.sh
. "$here/boards/$board/boot-partition.sh"

key=$( (cd "$here" && find base.sh packages-common.txt "packages-$board.txt" box-requirements.txt \
          "boards/$board/boot-partition.sh" "boards/$board/initramfs-tools" -type f 2>/dev/null \
        | LC_ALL=C sort | xargs sha256sum; basename "$wheel") | sha256sum | cut -c1-16)
cache=/var/cache/edgepbx/images
tarball=$cache/base-$board-$key.tar
max_days=${EDGEPBX_BASE_MAX_DAYS:-7}
if [ -f "$tarball" ] && [ "${EDGEPBX_IMAGE_REBUILD:-0}" != 1 ] \
   && [ -n "$(find "$tarball" -mtime -"$max_days" 2>/dev/null)" ]; then
  stage "1/5 Debian 12 system: unchanged since the cached base $key"
  echo "$tarball"
  exit 0
fi

work=$repo/build/image/base-$board
rootfs=$work/rootfs
rm -rf "$work"; mkdir -p "$work"
stage "1/5 Debian 12 system from Debian packages (mmdebstrap), the box's venv with $(basename "$wheel")"
packages=$(cat "$here/packages-common.txt" "$here/packages-$board.txt" | grep -v '^\s*#' | sed '/^\s*$/d' | paste -sd, -)
mirror=http://deb.debian.org/debian
mmdebstrap --arch="$arch" --variant=minbase --include="$packages" "${BOOTSTRAP_OPTS[@]}" \
  --aptopt='Acquire::Check-Valid-Until "false"' --skip=cleanup/apt/lists \
  bookworm "$rootfs" "deb $mirror bookworm $COMPONENTS" "deb $mirror bookworm-updates $COMPONENTS" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >"$work/mmdebstrap.log" 2>&1 \
  || { tail -30 "$work/mmdebstrap.log" >&2; exit 1; }
after_bootstrap

cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
for f in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do [ -f "$f" ] && cp "$f" "$rootfs$f"; done
mkdir -p "$rootfs/tmp/install"
cp "$wheel" "$here/box-requirements.txt" "$rootfs/tmp/install/"
chroot "$rootfs" sh -ec '
  python3 -m venv /opt/edgepbx/venv
  /opt/edgepbx/venv/bin/pip install -q --disable-pip-version-check -r /tmp/install/box-requirements.txt
  /opt/edgepbx/venv/bin/pip install -q --disable-pip-version-check --no-deps /tmp/install/pjsua2-*.whl
' >"$work/venv.log" 2>&1 || { tail -30 "$work/venv.log" >&2; exit 1; }
rm -rf "$rootfs/tmp/install" "$rootfs/etc/pip.conf" "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
rm -f "$work"/*.log

mkdir -p "$cache"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$work" -cpf "$tarball.new" .
rm -f "$cache/base-$board-"*.tar && mv "$tarball.new" "$tarball"
rm -rf "$work"
stage "1/5 Debian 12 system cached as base $key ($(du -h "$tarball" | cut -f1))"
echo "$tarball"
