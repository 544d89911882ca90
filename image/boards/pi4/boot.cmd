# edgepbx A/B boot with U-Boot: the Raspberry Pi 4 (rpi_arm64), and QEMU's arm64 "virt" machine
# (qemu_arm64) in the tests, which run this same script. Compiled to boot.scr by image/build.sh.
# RAUC's U-Boot backend keeps BOOT_ORDER and BOOT_A_LEFT/BOOT_B_LEFT in rauc.env on this partition
# (fw_setenv, /etc/fw_env.config): an install sets BOOT_ORDER="<new> <old>" and <new>_LEFT=3,
# mark-good sets the count back to 3, mark-bad to 0. Each boot takes one from the slot's count
# before starting it, and edgepbx-boot-check confirms the slot after its self-test: a slot that
# never comes up is tried 3 times, then the other boots. A power cut in one boot undoes nothing.
setenv BOOT_ORDER "A B"
setenv BOOT_A_LEFT 3
setenv BOOT_B_LEFT 3
# Free memory above the kernel's load address (the Pi's RAM starts at 0, virt's at 1 GiB): the
# kernel (Debian's arm64 Image, uncompressed, about 32 MiB) gets 94 MiB, then the device tree, the
# A/B state and the initrd.
setexpr dtb_addr ${kernel_addr_r} + 0x5e00000
setexpr state_addr ${kernel_addr_r} + 0x5f00000
setexpr initrd_addr ${kernel_addr_r} + 0x6000000
if load ${devtype} ${devnum}:1 ${state_addr} rauc.env; then
  env import -c ${state_addr} 0x4000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fi

setenv slot
for s in ${BOOT_ORDER}; do
  if test "x${slot}" = "x"; then
    if test "${s}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv slot A
      setenv slotpart 2
    elif test "${s}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv slot B
      setenv slotpart 3
    fi
  fi
done
if test "x${slot}" = "x"; then
  # Every slot used up its tries: start over rather than leave the box without a system.
  echo "edgepbx: no slot has boots left; trying them all again"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  env export -c -s 0x4000 ${state_addr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
  fatwrite ${devtype} ${devnum}:1 ${state_addr} rauc.env 0x4000
  reset
fi
env export -c -s 0x4000 ${state_addr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fatwrite ${devtype} ${devnum}:1 ${state_addr} rauc.env 0x4000
echo "edgepbx: booting slot ${slot} (BOOT_ORDER=${BOOT_ORDER} A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT})"

# Each slot carries its kernel, initrd and device trees: an update replaces all three.
load ${devtype} ${devnum}:${slotpart} ${kernel_addr_r} /boot/vmlinuz
load ${devtype} ${devnum}:${slotpart} ${initrd_addr} /boot/initrd.img
setenv initrd_size ${filesize}
# The Pi's U-Boot names its board's tree in fdtfile; QEMU hands U-Boot the machine's own at fdt_addr.
setenv fdt ${fdt_addr}
if test -n "${fdtfile}"; then
  if load ${devtype} ${devnum}:${slotpart} ${dtb_addr} /boot/dtbs/${fdtfile}; then
    setenv fdt ${dtb_addr}
  fi
fi
# The Pi 4's serial header is the mini UART (ttyS1 with Debian's kernel); virt's is a PL011.
if test "${board}" = "rpi"; then
  setenv console ttyS1,115200
else
  setenv console ttyAMA0,115200
fi
setenv bootargs "root=PARTLABEL=root${slot} ro rootwait panic=10 rauc.slot=${slot} console=${console} quiet systemd.show_status=0"
booti ${kernel_addr_r} ${initrd_addr}:${initrd_size} ${fdt}
echo "edgepbx: slot ${slot} did not start; resetting"
reset
