"""The x86 appliance image, built from Debian 12 packages (image/build.sh, cached while its inputs
are unchanged) and booted the way a mini-PC boots it: UEFI (OVMF) under QEMU's software emulation
(KVM does not work on these machines), serial console, the box's SIP port forwarded."""
from __future__ import annotations

import shutil
import subprocess
import time

from conftest import ROOT
from sipp import free_udp_port

BOOT_LIMIT_SECONDS = 300  # the bound for "edgepbx ready" on the console


def test_the_x86_image_boots_under_uefi_to_edgepbx_ready_and_answers_sip(tmp_path):
    built = subprocess.run(["image/build.sh", "x86"], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    image = ROOT / "build" / "image" / "edgepbx-x86.img"
    assert (ROOT / "build" / "image" / "edgepbx-x86.img.xz.sha256").exists()
    disk = tmp_path / "disk.img"  # a copy, 1 GiB bigger: the data partition must grow into it
    shutil.copyfile(image, disk)
    with open(disk, "r+b") as fh:
        fh.truncate(disk.stat().st_size + (1 << 30))
    port = free_udp_port()
    console = tmp_path / "console.log"
    menu_socket = tmp_path / "ttyS1.sock"  # the board's second UART: the installer's menu
    qemu = subprocess.Popen(["qemu-system-x86_64", "-m", "1024", "-bios", "/usr/share/ovmf/OVMF.fd",
                             "-drive", f"file={disk},format=raw", "-nographic", "-nic", f"user,hostfwd=udp::{port}-:5060",
                             # with -nographic, the first UART is stdio unless -serial is given: give both
                             "-serial", "mon:stdio", "-serial", f"unix:{menu_socket},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=open(console, "wb"), stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        text = ""
        while time.monotonic() - started < BOOT_LIMIT_SECONDS and qemu.poll() is None:
            text = console.read_bytes().decode(errors="replace")
            if "edgepbx ready" in text:
                break
            time.sleep(1)
        assert "edgepbx ready" in text, f"no 'edgepbx ready' in {BOOT_LIMIT_SECONDS} s:\n{text[-4000:]}"
        print(f"edgepbx ready {time.monotonic() - started:.0f} s after QEMU started")
        from appliance.sipprobe import options_ping
        assert options_ping("127.0.0.1", port, timeout=5.0) == 200  # Kamailio on the box, through the forward
        assert "edgepbx: LAN address 10.0.2.15; cloud: not enrolled" in text
        grown = [line for line in text.splitlines() if "edgepbx first boot: data partition" in line]
        assert grown and "1.2G" in grown[0], grown  # 256 MB + the 1 GiB added
        assert "register phones to 10.0.2.15:5060" in text  # the box's own address, no extensions yet
        status = serial_menu_status(menu_socket)
        assert "edgepbx: LAN address 10.0.2.15;" in status and "cloud: not enrolled" in status, status
    finally:
        qemu.kill()
        qemu.wait()


def serial_menu_status(path) -> str:
    """Chooses 1 (status) on the menu's serial line; returns what it answered."""
    import socket

    with socket.socket(socket.AF_UNIX) as line:
        line.connect(str(path))
        line.settimeout(1.0)
        deadline = time.monotonic() + 60

        def read_until(marker: bytes, poke: bytes | None = None) -> bytes:
            seen = b""
            while marker not in seen and time.monotonic() < deadline:
                if poke:
                    line.sendall(poke)  # the menu drew itself before anyone listened: ask again
                try:
                    seen += line.recv(4096)
                except socket.timeout:
                    pass
            return seen

        read_until(b"choose 1-5", poke=b"\r")
        line.sendall(b"1\r")
        return "status: " + read_until(b"cloud:").decode(errors="replace").split("1\r\n", 1)[-1].strip() + \
            read_until(b"\n").decode(errors="replace")
