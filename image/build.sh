#!/usr/bin/env bash
# Builds the appliance image from Debian 12 packages: build/image/edgepbx-BOARD.img.xz (+ .sha256).
#   image/build.sh x86
# GPT: 1 ESP (GRUB, its A/B environment), 2 rootA, 3 rootB (ext4 with their own kernel, read-only at
# run time, switched by RAUC: image/bundle.sh), 4 data (ext4, grown to fill the disk on first boot). Needs root; no loop devices or mounts:
# file systems are made from directories (mkfs.ext4 -d, mtools) and placed with dd.
set -euo pipefail
board=${1:?usage: image/build.sh x86}
[ "$board" = x86 ] || { echo "image: board $board is not built yet (x86 only; pi4 needs the arm64 pjsua2 build)" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$repo/build/image
work=$out/work-$board
rootfs=$work/rootfs
ROOT_MB=1536 ESP_MB=32 DATA_MB=256
stage() { echo "image[$board]: $*"; }
. "$here/lib.sh"
signing_pair

wheel=$(ls /var/cache/edgepbx/pjsip-2.17-amd64-cp311-*/pjsua2-*.whl 2>/dev/null | head -1)
[ -n "$wheel" ] || { echo "image: no amd64 pjsua2 wheel in /var/cache/edgepbx; run make setup first" >&2; exit 1; }

# Unchanged inputs (the committed tree of what goes on the image, and the pjsua2 wheel): the cached image.
key=$( (cd "$repo" && git ls-files -z appliance provisioning firmware_templates image pyproject.toml ':!:*.md' \
        | xargs -0 sha256sum; basename "$wheel"; sha256sum < "$SIGN_CERT") | sha256sum | cut -c1-16)
cache=/var/cache/edgepbx/images
img=$out/edgepbx-$board.img
if [ -f "$cache/edgepbx-$board-$key.img.xz" ] && [ "${EDGEPBX_IMAGE_REBUILD:-0}" != 1 ]; then
  mkdir -p "$out"
  cp "$cache/edgepbx-$board-$key.img.xz" "$img.xz"
  xz -dkf "$img.xz"
  (cd "$out" && sha256sum "$(basename "$img").xz" > "$(basename "$img").xz.sha256")
  stage "unchanged since the cached build $key: $img.xz"
  exit 0
fi
rm -rf "$work"; mkdir -p "$work" "$out"

stage "1/5 root file system from Debian 12 packages (mmdebstrap)"
packages=$(grep -v '^\s*#' "$here/packages-$board.txt" | sed '/^\s*$/d' | paste -sd, -)
mirror=http://deb.debian.org/debian
mmdebstrap --variant=minbase --include="$packages" --components=main \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  bookworm "$rootfs" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >"$work/mmdebstrap.log" 2>&1 \
  || { tail -30 "$work/mmdebstrap.log" >&2; exit 1; }

stage "2/5 the appliance: venv with pjsua2 ($(basename "$wheel")) and edgepbx"
cp -a "$here/overlay/." "$rootfs/"
# State directories of systemd services, made here because the root is read-only at run time
# (logind fails without its linger directory, and with it reboots from the shell wait 25 s each).
mkdir -p "$rootfs/etc/rauc" "$rootfs/boot/efi" "$rootfs/var/lib/systemd/timesync" "$rootfs/var/lib/systemd/linger"
cp "$here/boards/$board/system.conf" "$rootfs/etc/rauc/system.conf"
cp "$SIGN_CERT" "$rootfs/etc/rauc/keyring.pem"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
for f in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do [ -f "$f" ] && cp "$f" "$rootfs$f"; done
# The committed tree as it is in the checkout (firmware_templates and sounds sit beside the code, as in
# development), installed in place: /opt/edgepbx/app is read-only like the rest of the root.
mkdir -p "$rootfs/tmp/install" "$rootfs/opt/edgepbx/app"
cp "$wheel" "$here/box-requirements.txt" "$rootfs/tmp/install/"
(cd "$repo" && git ls-files -z appliance provisioning firmware_templates pyproject.toml ':!:*.md' | tar --null -T - -cf -) \
  | tar -xf - -C "$rootfs/opt/edgepbx/app"
chroot "$rootfs" sh -ec '
  python3 -m venv /opt/edgepbx/venv
  /opt/edgepbx/venv/bin/pip install -q --disable-pip-version-check -r /tmp/install/box-requirements.txt
  /opt/edgepbx/venv/bin/pip install -q --disable-pip-version-check --no-deps /tmp/install/pjsua2-*.whl
  /opt/edgepbx/venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e /opt/edgepbx/app || \
    /opt/edgepbx/venv/bin/pip install -q --disable-pip-version-check --no-deps -e /opt/edgepbx/app
  python3 -m compileall -q /opt/edgepbx/app >/dev/null
  useradd --system --home /data --shell /usr/sbin/nologin edgepbx
  mkdir -p /data
  systemctl enable systemd-networkd edgepbx-firstboot.service edgepbx.service edgepbx-boot-check.service \
    edgepbx-console@ttyS1.service >/dev/null 2>&1
  # edgepbx-boot-check confirms a slot after its own self-test, not unconditionally as rauc-mark-good does.
  systemctl mask rauc-mark-good.service >/dev/null 2>&1 || true
  # The network choice of the serial menu (on /data) wins over the DHCP default when it exists.
  ln -sf /data/network/20-lan.network /etc/systemd/network/10-lan.network
  systemctl mask kamailio.service dnsmasq.service >/dev/null 2>&1 || true
  echo edgepbx > /etc/hostname
  passwd -d root >/dev/null   # the serial console is physical access; no password on it
' >>"$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; exit 1; }
rm -rf "$rootfs/tmp/install" "$rootfs/etc/pip.conf" "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
: > "$rootfs/etc/machine-id"
echo "nameserver 127.0.0.53" > "$rootfs/etc/resolv.conf"

stage "3/5 boot partition: GRUB with the A/B environment RAUC switches"
(cd "$rootfs/boot" && ln -sf "$(basename "$(ls vmlinuz-* | tail -1)")" vmlinuz \
  && ln -sf "$(basename "$(ls initrd.img-* | tail -1)")" initrd.img)
grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$work/BOOTX64.EFI" \
  part_gpt fat ext2 normal linux configfile loadenv test echo regexp serial terminal gzio efi_gop all_video
grub-editenv "$work/grubenv" create
grub-editenv "$work/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
esp=$work/esp.img
mkfs.vfat -C -n EDGEPBX "$esp" $((ESP_MB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT
mcopy -i "$esp" "$work/BOOTX64.EFI" "$here/boards/$board/grub.cfg" "$work/grubenv" ::/EFI/BOOT/

stage "4/5 file systems: rootA from the tree, rootB empty until the first update, data"
mkfs.ext4 -q -F -L edgepbx-root -d "$rootfs" "$work/rootA.img" ${ROOT_MB}M
mkfs.ext4 -q -F -L rootB "$work/rootB.img" ${ROOT_MB}M
mkdir -p "$work/data-tree/system/timesync"
mkfs.ext4 -q -F -L data -d "$work/data-tree" "$work/data.img" ${DATA_MB}M

stage "5/5 disk image (GPT) and xz"
total=$((1 + ESP_MB + 2 * ROOT_MB + DATA_MB + 1))
rm -f "$img"; truncate -s ${total}M "$img"
sfdisk -q "$img" <<GPT
label: gpt
start=1MiB, size=${ESP_MB}MiB, type=uefi, name=esp
size=${ROOT_MB}MiB, type=linux, name=rootA
size=${ROOT_MB}MiB, type=linux, name=rootB
size=${DATA_MB}MiB, type=linux, name=data
GPT
offset=1
for part in esp rootA rootB data; do
  dd if="$work/$part.img" of="$img" bs=1M seek=$offset conv=notrunc,sparse status=none
  offset=$((offset + $(stat -c %s "$work/$part.img") / 1048576))
done
xz -T0 -3 -f -k "$img"
(cd "$out" && sha256sum "$(basename "$img").xz" > "$(basename "$img").xz.sha256")
mkdir -p "$cache" && rm -f "$cache/edgepbx-$board-"*.img.xz && cp "$img.xz" "$cache/edgepbx-$board-$key.img.xz"
rm -rf "$work"
stage "wrote $img.xz ($(du -h "$img.xz" | cut -f1)) and its .sha256 (cached as $key)"
