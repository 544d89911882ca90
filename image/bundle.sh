#!/usr/bin/env bash
# Builds the signed RAUC update bundle build/image/edgepbx-BOARD.raucb from the root file system of
# the image (image/build.sh, cached; made at its contents' size plus a margin). `edgepbx update` installs it on a box.
#   image/bundle.sh x86 [--rootfs EXT4] [--output FILE] [--version VERSION]
# --rootfs bundles a given root file system instead (the rollback test bundles a broken one).
set -euo pipefail
board=${1:?usage: image/bundle.sh BOARD [--rootfs EXT4] [--output FILE] [--version VERSION]}
shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$repo/build/image
rootfs="" output=$out/edgepbx-$board.raucb version=""
while [ $# -gt 0 ]; do
  case $1 in
    --rootfs) rootfs=$2; shift 2;;
    --output) output=$2; shift 2;;
    --version) version=$2; shift 2;;
    *) echo "bundle: unknown option $1" >&2; exit 2;;
  esac
done
stage() { echo "bundle[$board]: $*"; }
. "$here/lib.sh"
signing_pair
cache=/var/cache/edgepbx/images
work=$out/bundle-$board
mkdir -p "$out"

if [ -z "$rootfs" ]; then
  stage "1/3 the image (image/build.sh $board)"
  "$here/build.sh" "$board"
  img=$out/edgepbx-$board.img
  key=$( (cut -d' ' -f1 "$img.xz.sha256"; sha256sum < "$SIGN_CERT") | sha256sum | cut -c1-16)
  version=${version:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml")+$key}
  if [ -f "$cache/edgepbx-$board-$key.raucb" ] && [ "${EDGEPBX_IMAGE_REBUILD:-0}" != 1 ]; then
    cp "$cache/edgepbx-$board-$key.raucb" "$output"
    stage "unchanged since the cached bundle $key: $output"
    exit 0
  fi
  rm -rf "$work"; mkdir -p "$work/content"
  stage "2/3 root file system of slot A (the file system, not the whole slot)"
  read -r start sectors < <(sfdisk -d "$img" | sed -n 's/.*start= *\([0-9]*\), size= *\([0-9]*\),.*name="rootA".*/\1 \2/p')
  dd if="$img" of="$work/content/rootfs.ext4" bs=4M iflag=skip_bytes,count_bytes \
     skip=$((start * 512)) count=$((sectors * 512)) conv=sparse status=none
  blocks=$(dumpe2fs -h "$work/content/rootfs.ext4" 2>/dev/null | sed -n 's/^Block count: *//p')
  block_size=$(dumpe2fs -h "$work/content/rootfs.ext4" 2>/dev/null | sed -n 's/^Block size: *//p')
  truncate -s $((blocks * block_size)) "$work/content/rootfs.ext4"
  e2fsck -fn "$work/content/rootfs.ext4" >/dev/null
else
  rm -rf "$work"; mkdir -p "$work/content"
  version=${version:-custom}
  stage "2/3 the given root file system $rootfs"
  cp --sparse=always "$rootfs" "$work/content/rootfs.ext4"
fi

stage "3/3 signed bundle (verity, zstd) version $version"
cat > "$work/content/manifest.raucm" <<MANIFEST
[update]
compatible=edgepbx-$board
version=$version

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rm -f "$output"
rauc bundle --cert="$SIGN_CERT" --key="$SIGN_KEY" --mksquashfs-args="-comp zstd -Xcompression-level 6" \
  "$work/content" "$output" >"$work/rauc.log" 2>&1 || { tail -20 "$work/rauc.log" >&2; exit 1; }
if [ -z "$rootfs" ]; then
  mkdir -p "$cache" && rm -f "$cache/edgepbx-$board-"*.raucb && cp "$output" "$cache/edgepbx-$board-$key.raucb"
fi
rm -rf "$work"
stage "wrote $output ($(du -h "$output" | cut -f1), version $version)"
