# image/build.sh x86: the ESP, booted by UEFI firmware from its removable path. Sourced.
COMPONENTS=main
BOOT_TYPE=uefi
BOOT_SUMMARY="GRUB with the A/B environment RAUC switches"
BOOTSTRAP_OPTS=()

after_bootstrap() { :; }

make_boot_partition() {  # BOOTFS: an empty vfat image
  grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$work/BOOTX64.EFI" \
    part_gpt fat ext2 normal linux configfile loadenv test echo regexp serial terminal gzio efi_gop all_video
  grub-editenv "$work/grubenv" create
  grub-editenv "$work/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
  mmd -i "$1" ::/EFI ::/EFI/BOOT
  mcopy -i "$1" "$work/BOOTX64.EFI" "$here/boards/x86/grub.cfg" "$work/grubenv" ::/EFI/BOOT/
}
