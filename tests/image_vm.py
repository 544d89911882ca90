"""A booted appliance image under QEMU for the image tests: its serial console read from a log
file and typed into through QEMU's stdin (root logs in without a password on the serial line, as
an installer with the box in hand does), power cut by killing QEMU, restarted on the same disk.

QEMU runs the way the issue boots a mini-PC: UEFI (OVMF), software emulation (KVM does not work
on these machines), the box's SIP port forwarded; the host is 10.0.2.2 from inside the VM."""
from __future__ import annotations

import base64
import re
import subprocess
import time
import uuid
from pathlib import Path


class Vm:
    def __init__(self, disk: Path, workdir: Path, sip_port: int = 0, netns: str | None = None):
        """sip_port: the host's UDP port forwarded to the box's SIP port (user-mode networking);
        netns: instead, the box's LAN is the tap device `tap0` of that network namespace."""
        self.disk = disk
        self.netns = netns
        self.console = workdir / "console.log"
        self.menu_socket = workdir / "ttyS1.sock"  # the board's second UART: the installer's menu
        self.sip_port = sip_port
        self.qemu: subprocess.Popen | None = None
        self.boot_offset = 0  # where the current boot's output starts in the console log
        self.logged_in = False
        self.started_at = 0.0

    def start(self) -> None:
        self.console.touch()
        self.boot_offset = self.console.stat().st_size
        self.logged_in = False
        nic = ("tap,ifname=tap0,script=no,downscript=no" if self.netns
               else f"user,hostfwd=udp::{self.sip_port}-:5060")
        self.qemu = subprocess.Popen(
            (["ip", "netns", "exec", self.netns] if self.netns else []) +
            ["qemu-system-x86_64", "-m", "1024", "-bios", "/usr/share/ovmf/OVMF.fd",
             "-drive", f"file={self.disk},format=raw", "-nographic", "-nic", nic,
             # with -nographic, the first UART is stdio unless -serial is given: give both
             "-serial", "mon:stdio", "-serial", f"unix:{self.menu_socket},server=on,wait=off"],
            stdin=subprocess.PIPE, stdout=open(self.console, "ab"), stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()

    def power_cut(self) -> None:
        if self.qemu and self.qemu.poll() is None:
            self.qemu.kill()
            self.qemu.wait()

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
            text = self.text(since)
            found = re.search(pattern, text, re.S)
            if found:
                return found
            if time.monotonic() > deadline or (self.qemu and self.qemu.poll() is not None):
                raise AssertionError(f"no {pattern!r} on the console within {timeout:.0f} s:\n{text[-3000:]}")
            time.sleep(0.5)

    def type(self, keys: str) -> None:
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
        return int(found.group(2)), found.group(1).replace("\r", "")

    def check(self, command: str, timeout: float = 120) -> str:
        code, output = self.run(command, timeout)
        assert code == 0, f"`{command}` exited {code}:\n{output[-3000:]}"
        return output
