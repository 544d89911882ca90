# image/build.sh pi4: the Pi 4's boot partition. Its firmware (start4.elf, from Debian's raspi-firmware
# in non-free-firmware) starts U-Boot (u-boot-rpi), which runs boot.scr: the A/B choice, then the
# chosen slot's own kernel, initrd and device tree. Sourced.
COMPONENTS="main non-free-firmware"
# Microsoft basic data: the Pi's boot ROM looks for a FAT partition (GPT needs a 2020-09 or newer EEPROM).
BOOT_TYPE=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
BOOT_SUMMARY="Pi firmware, U-Boot, boot.scr and the A/B state (rauc.env)"
# Before the kernel's package makes its initramfs: only the drivers that find a root slot.
BOOTSTRAP_OPTS=(--essential-hook="mkdir -p \"\$1/etc/initramfs-tools\" && cp -r '$here/boards/pi4/initramfs-tools/.' \"\$1/etc/initramfs-tools/\"")

after_bootstrap() {
  # The firmware blobs only: the raspi-firmware package's kernel hooks expect Raspberry Pi OS's layout.
  mkdir -p "$work/raspi-firmware"
  chroot "$rootfs" sh -c 'cd /tmp && apt-get download -q raspi-firmware' >>"$work/mmdebstrap.log" 2>&1 \
    || { echo "image: could not download raspi-firmware (non-free-firmware)" >&2; exit 1; }
  dpkg-deb -x "$rootfs"/tmp/raspi-firmware_*.deb "$work/raspi-firmware"
  rm -f "$rootfs"/tmp/raspi-firmware_*.deb
  # Each slot's device trees, where boot.scr finds them (/boot/dtbs/broadcom/bcm2711-rpi-4-b.dtb).
  (cd "$rootfs/boot" && ln -sfn "../usr/lib/linux-image-$(ls "$rootfs/usr/lib" | sed -n 's/^linux-image-//p' | tail -1)" dtbs)
}

make_boot_partition() {  # BOOTFS: an empty vfat image
  local fw=$work/raspi-firmware/usr/lib/raspi-firmware
  mkimage -A arm64 -T script -C none -n "edgepbx A/B" -d "$here/boards/pi4/boot.cmd" "$work/boot.scr" >/dev/null
  printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n' > "$work/rauc-env.txt"
  mkenvimage -s 0x4000 -o "$work/rauc.env" "$work/rauc-env.txt"
  mcopy -i "$1" "$fw/start4.elf" "$fw/fixup4.dat" "$rootfs/boot/dtbs/broadcom/bcm2711-rpi-4-b.dtb" \
    "$rootfs/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$here/boards/pi4/config.txt" "$work/boot.scr" "$work/rauc.env" ::/
  cp "$fw/LICENCE.broadcom" "$work/LICENCE.broadcom" 2>/dev/null && mcopy -i "$1" "$work/LICENCE.broadcom" ::/ || true
}
