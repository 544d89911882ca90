#!/usr/bin/env bash
# Builds the appliance image from Debian 12 packages: build/image/edgepbx-BOARD.img.xz (+ .sha256).
#   image/build.sh x86|pi4
# GPT: 1 boot (x86: the ESP with GRUB and its A/B environment; pi4: the Pi's firmware, U-Boot and its
# boot script with the A/B state), 2 rootA, 3 rootB (ext4 with their own kernel, read-only at run
# time, switched by RAUC: image/bundle.sh), 4 data (ext4, grown to fill the disk on first boot).
# Needs root; no loop devices or mounts: file systems are made from directories (mkfs.ext4 -d,
# mtools) and placed with dd. The pi4 root is configured under qemu-user (binfmt_misc).
set -euo pipefail
board=${1:?usage: image/build.sh x86|pi4}
case $board in
  x86) arch=amd64 bootpart=esp;;
  pi4) arch=arm64 bootpart=boot;;
  *) echo "image: unknown board $board (x86 or pi4)" >&2; exit 2;;
esac
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$repo/build/image
work=$out/work-$board
rootfs=$work/rootfs
ROOT_MB=1536 BOOT_MB=64 DATA_MB=256
stage() { echo "image[$board]: $*"; }
. "$here/lib.sh"
# shellcheck source=boards/x86/boot-partition.sh
. "$here/boards/$board/boot-partition.sh"
signing_pair

if [ "$arch" = arm64 ]; then
  # The arm64 pjsua2 wheel, cross-compiled once and cached (seconds when unchanged).
  wheel=$("$repo/scripts/build-pjsip.sh" --cross arm64 "$repo/.venv/bin/python" | tee >(cat >&2) | sed -n 's/^build-pjsip: arm64 wheel: //p')
  enable_binfmt_arm64
else
  wheel=$(ls -t /var/cache/edgepbx/pjsip-2.17-$arch-cp311-*/pjsua2-*.whl 2>/dev/null | head -1)
fi
[ -n "$wheel" ] || { echo "image: no $arch pjsua2 wheel in /var/cache/edgepbx; run make setup first" >&2; exit 1; }

# Unchanged inputs (the committed tree of what goes on the image, and the pjsua2 wheel): the cached image.
key=$( (cd "$repo" && git ls-files -z appliance provisioning firmware_templates image pyproject.toml ':!:*.md' \
        | xargs -0 sha256sum; basename "$wheel"; sha256sum < "$SIGN_CERT") | sha256sum | cut -c1-16)
cache=/var/cache/edgepbx/images
img=$out/edgepbx-$board.img
if [ -f "$cache/edgepbx-$board-$key.img.xz" ] && [ "${EDGEPBX_IMAGE_REBUILD:-0}" = 0 ]; then
  mkdir -p "$out"
  cp "$cache/edgepbx-$board-$key.img.xz" "$img.xz"
  xz -dkf "$img.xz"
  (cd "$out" && sha256sum "$(basename "$img").xz" > "$(basename "$img").xz.sha256")
  stage "unchanged since the cached build $key: $img.xz"
  exit 0
fi
rm -rf "$work"; mkdir -p "$work" "$out"

# 1/5: the Debian system with the box's venv (image/base.sh, cached on its own inputs), unpacked here.
base=$("$here/base.sh" "$board" "$wheel")
tar --numeric-owner --xattrs --xattrs-include='*' -C "$work" -xpf "$base"

stage "2/5 the appliance: edgepbx into the venv with pjsua2 ($(basename "$wheel"))"
cp -a "$here/overlay/." "$rootfs/"
cat "$here/boards/$board/fstab" >> "$rootfs/etc/fstab"
# State directories of systemd services, made here because the root is read-only at run time
# (logind fails without its linger directory, and with it reboots from the shell wait 25 s each).
mkdir -p "$rootfs/etc/rauc" "$rootfs/boot/efi" "$rootfs/boot/firmware" "$rootfs/var/lib/systemd/timesync" "$rootfs/var/lib/systemd/linger"
cp "$here/boards/$board/system.conf" "$rootfs/etc/rauc/system.conf"
[ -f "$here/boards/$board/fw_env.config" ] && cp "$here/boards/$board/fw_env.config" "$rootfs/etc/fw_env.config"
cp "$SIGN_CERT" "$rootfs/etc/rauc/keyring.pem"
# The committed tree as it is in the checkout (firmware_templates and sounds sit beside the code, as in
# development), installed in place: /opt/edgepbx/app is read-only like the rest of the root.
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
for f in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do [ -f "$f" ] && cp "$f" "$rootfs$f"; done
mkdir -p "$rootfs/opt/edgepbx/app"
(cd "$repo" && git ls-files -z appliance provisioning firmware_templates pyproject.toml ':!:*.md' | tar --null -T - -cf -) \
  | tar -xf - -C "$rootfs/opt/edgepbx/app"
chroot "$rootfs" sh -ec '
  /opt/edgepbx/venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e /opt/edgepbx/app || \
    /opt/edgepbx/venv/bin/pip install -q --disable-pip-version-check --no-deps -e /opt/edgepbx/app
  python3 -m compileall -q /opt/edgepbx/app >/dev/null
  useradd --system --home /data --shell /usr/sbin/nologin edgepbx
  mkdir -p /data
  systemctl enable systemd-networkd edgepbx-firstboot.service edgepbx.service edgepbx-boot-check.service \
    edgepbx-install.path >/dev/null 2>&1
  # edgepbx-boot-check confirms a slot after its own self-test, not unconditionally as rauc-mark-good does.
  systemctl mask rauc-mark-good.service >/dev/null 2>&1 || true
  # The network choice of the serial menu (on /data) wins over the DHCP default when it exists.
  ln -sf /data/network/20-lan.network /etc/systemd/network/10-lan.network
  systemctl mask kamailio.service dnsmasq.service >/dev/null 2>&1 || true
  echo edgepbx > /etc/hostname
  passwd -d root >/dev/null   # the serial console is physical access; no password on it
' >>"$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; exit 1; }
# The installer's menu: on x86 the second serial port (the kernel's console is the first); on the Pi
# the serial header carries the console, and the menu comes up on a USB-serial adapter (udev rule).
[ "$board" = x86 ] && chroot "$rootfs" systemctl enable edgepbx-console@ttyS1.service >/dev/null 2>&1
rm -f "$rootfs/etc/pip.conf"
: > "$rootfs/etc/machine-id"
echo "nameserver 127.0.0.53" > "$rootfs/etc/resolv.conf"

stage "3/5 boot partition: $BOOT_SUMMARY"
(cd "$rootfs/boot" && ln -sf "$(basename "$(ls vmlinuz-* | tail -1)")" vmlinuz \
  && ln -sf "$(basename "$(ls initrd.img-* | tail -1)")" initrd.img)
bootfs=$work/$bootpart.img
mkfs.vfat -C -n EDGEPBX "$bootfs" $((BOOT_MB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
make_boot_partition "$bootfs"

stage "4/5 file systems: rootA from the tree, rootB empty until the first update, data"
# The root file system at its contents' size plus a margin (the slot stays bigger): the update
# bundle carries this file system, and an update writes no more than it.
tree_mb=$(du -sm "$rootfs" | cut -f1)
fs_mb=$(( tree_mb * 11 / 10 + 64 ))
[ "$fs_mb" -le "$ROOT_MB" ] || { echo "image: the root file system ($tree_mb MB) does not fit its ${ROOT_MB} MB slot" >&2; exit 1; }
mkfs.ext4 -q -F -L edgepbx-root -d "$rootfs" "$work/rootA.img" ${fs_mb}M >/dev/null
mkfs.ext4 -q -F -L rootB "$work/rootB.img" ${ROOT_MB}M >/dev/null
mkdir -p "$work/data-tree/system/timesync"
mkfs.ext4 -q -F -L data -d "$work/data-tree" "$work/data.img" ${DATA_MB}M >/dev/null

stage "5/5 disk image (GPT) and xz"
total=$((1 + BOOT_MB + 2 * ROOT_MB + DATA_MB + 1))
rm -f "$img"; truncate -s ${total}M "$img"
sfdisk -q "$img" <<GPT
label: gpt
start=1MiB, size=${BOOT_MB}MiB, type=$BOOT_TYPE, name=$bootpart, attrs=LegacyBIOSBootable
size=${ROOT_MB}MiB, type=linux, name=rootA
size=${ROOT_MB}MiB, type=linux, name=rootB
size=${DATA_MB}MiB, type=linux, name=data
GPT
offset=1
for part in "$bootpart:$BOOT_MB" "rootA:$ROOT_MB" "rootB:$ROOT_MB" "data:$DATA_MB"; do
  dd if="$work/${part%%:*}.img" of="$img" bs=1M seek=$offset conv=notrunc,sparse status=none
  offset=$((offset + ${part##*:}))
done
xz -T0 -1 -f -k "$img"  # -3 was 243 MB in 104 s here, -1 256 MB in 47 s: the build's slowest step halved
(cd "$out" && sha256sum "$(basename "$img").xz" > "$(basename "$img").xz.sha256")
mkdir -p "$cache" && rm -f "$cache/edgepbx-$board-"*.img.xz && cp "$img.xz" "$cache/edgepbx-$board-$key.img.xz"
rm -rf "$work"
stage "wrote $img.xz ($(du -h "$img.xz" | cut -f1)) and its .sha256 (cached as $key)"
