"""A booted appliance image under QEMU for the image tests: its serial console read from a log
file and typed into through QEMU's stdin (root logs in without a password on the serial line, as
an installer with the box in hand does), power cut by killing QEMU, restarted on the same disk.

QEMU runs the way the issue boots a mini-PC: UEFI (OVMF), software emulation (KVM does not work
on these machines), the box's SIP port forwarded; the host is 10.0.2.2 from inside the VM. A
reboot of the guest ends QEMU (-no-reboot) and the next look at the console starts it again on
the same disk, as a machine's reset starts its firmware again: in CI, QEMU's own in-place reset
once printed nothing more for 600 s while the Pi image built beside it, and after one the
serial line stopped taking input. The
Pi 4 image's arm64 system boots on QEMU's "virt" machine through U-Boot's qemu_arm64 build, which
runs the image's own boot script (the Pi's firmware and U-Boot build cannot be emulated here)."""
from __future__ import annotations

import base64
import re
import subprocess
import time
import uuid
from pathlib import Path


# A line the box's services write to the console ("[  137.750399] edgepbx[298]: provisioning
# ready"): it can land inside a command's output on the same serial line, even mid-line.
CONSOLE_LINE = re.compile(r"\[ *\d+\.\d{6}\] [^\n]*\n")


def without_console_lines(output: str) -> str:
    """A command's output with the services' console lines taken out of it."""
    return CONSOLE_LINE.sub("", output)


class Vm:
    def __init__(self, disk: Path, workdir: Path, sip_port: int = 0, netns: str | None = None,
                 arch: str = "x86", cpus: int = 2):
        """sip_port: the host's UDP port forwarded to the box's SIP port (user-mode networking);
        netns: instead, the box's LAN is the tap device `tap0` of that network namespace;
        arch: "x86" (OVMF) or "arm64" (virt, U-Boot); cpus: virtual CPUs (2 booted the x86 image
        to ready in 44 s where 1 took 59 s, 2026-12-01)."""
        self.cpus = cpus
        self.disk = disk
        self.arch = arch
        self.netns = netns
        self.console = workdir / "console.log"
        self.menu_socket = workdir / "ttyS1.sock"  # the board's second UART: the installer's menu
        self.sip_port = sip_port
        self.qemu: subprocess.Popen | None = None
        self.boot_offset = 0  # where the current boot's output starts in the console log
        self.logged_in = False
        self.started_at = 0.0

    def start(self) -> None:
        """Powers the machine on."""
        self.console.touch()
        self.boot_offset = self.console.stat().st_size
        self.logged_in = False
        nic = ("tap,ifname=tap0,script=no,downscript=no" if self.netns
               else f"user,hostfwd=udp::{self.sip_port}-:5060")
        if self.arch == "arm64":
            # cortex-a72 as on the Pi 4 (QEMU's "max" adds pointer authentication, slow under TCG);
            # two vCPUs: the arm64 test runs last, alone, and emulation is the slow part
            machine = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", str(self.cpus), "-m", "1024",
                       "-bios", "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
                       "-drive", f"file={self.disk},format=raw,if=virtio", "-serial", "mon:stdio"]
        else:
            machine = ["qemu-system-x86_64", "-m", "1024", "-smp", str(self.cpus), "-bios", "/usr/share/ovmf/OVMF.fd",
                       "-drive", f"file={self.disk},format=raw",
                       # with -nographic, the first UART is stdio unless -serial is given: give both
                       "-serial", "mon:stdio", "-serial", f"unix:{self.menu_socket},server=on,wait=off"]
        self.qemu = subprocess.Popen(
            (["ip", "netns", "exec", self.netns] if self.netns else []) +
            machine + ["-nographic", "-no-reboot", "-nic", nic],
            stdin=subprocess.PIPE, stdout=open(self.console, "ab"), stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()

    def power_cut(self) -> None:
        if self.qemu and self.qemu.poll() is None:
            self.qemu.kill()
            self.qemu.wait()

    def _reset_if_rebooted(self) -> None:
        """The guest rebooted (QEMU exits with 0 under -no-reboot): power it on again."""
        if self.qemu and self.qemu.poll() == 0:
            self.qemu.stdin.close()
            self.start()

    def text(self, since: int | None = None) -> str:
        data = self.console.read_bytes()[self.boot_offset if since is None else since:]
        return data.decode(errors="replace")

    def mark(self) -> int:
        """A position in the console log: wait_for(..., since=mark) sees only what comes after."""
        return self.console.stat().st_size

    def wait_for(self, pattern: str, timeout: float, since: int | None = None) -> re.Match:
        """The first match of a regular expression in the console output (of this boot by default)."""
        deadline = time.monotonic() + timeout
        while True:
            self._reset_if_rebooted()
            text = self.text(since)
            found = re.search(pattern, text, re.S)
            if found:
                return found
            if time.monotonic() > deadline or (self.qemu and self.qemu.poll() is not None):
                raise AssertionError(f"no {pattern!r} on the console within {timeout:.0f} s:\n{text[-3000:]}")
            time.sleep(0.5)

    def type(self, keys: str) -> None:
        self._reset_if_rebooted()
        assert self.qemu and self.qemu.stdin
        self.qemu.stdin.write(keys.encode())
        self.qemu.stdin.flush()

    def login(self) -> None:
        """Logs in as root. Keys typed while the serial line changes hands during boot can be lost,
        so each step is retried until the console answers it."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            since = self.mark()
            self.type("\r")
            if not self._seen(r"login:", since, 5):
                continue
            since = self.mark()
            self.type("root\r")
            if self._seen(r"root@edgepbx:~# ", since, 30):
                self.type("stty cols 250 -echo; export TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0\r")
                self.logged_in = True
                return
        raise AssertionError(f"no root shell on the serial console:\n{self.text()[-3000:]}")

    def _seen(self, pattern: str, since: int, timeout: float) -> bool:
        try:
            self.wait_for(pattern, timeout, since)
            return True
        except AssertionError:
            return False

    def begin(self, command: str) -> tuple[str, int]:
        """Starts a shell command on the serial console as root and returns once the shell has
        started it: (its marker, the console position). The command travels base64-encoded on one
        line (here-documents and quotes arrive intact) and is typed again if the shell did not
        start it (lost keys)."""
        if not self.logged_in:
            self.login()
        script = base64.b64encode(command.encode()).decode()
        for _attempt in range(3):
            marker = uuid.uuid4().hex[:12]
            since = self.mark()
            self.type(f"echo {script} | base64 -d > /tmp/{marker}.sh; echo {marker}-start; "
                      f"bash /tmp/{marker}.sh; echo {marker}-end-$?\r")
            if self._seen(rf"{marker}-start\r?\n", since, 30):
                return marker, since
            self.type("\r")
        raise AssertionError(f"the shell on the serial console did not start {command!r}:\n{self.text()[-3000:]}")

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """Runs a shell command on the serial console as root: its exit status and output."""
        marker, since = self.begin(command)
        found = self.wait_for(rf"{marker}-start\r?\n(.*?){marker}-end-(\d+)", timeout, since)
        return int(found.group(2)), without_console_lines(found.group(1).replace("\r", ""))

    def check(self, command: str, timeout: float = 120) -> str:
        code, output = self.run(command, timeout)
        assert code == 0, f"`{command}` exited {code}:\n{output[-3000:]}"
        return output
