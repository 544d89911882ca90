"""Fixtures that start a real appliance (Kamailio + feature server) on free loopback ports."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EDGEPBX = [sys.executable, "-m", "appliance.cli"]
TONES = {"101": 500.0, "102": 1300.0, "103": 2100.0, "104": 2900.0, "105": 800.0}


def _free(port: int) -> bool:
    """Free for UDP and TCP alike (Kamailio listens on both)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(size: int = 200) -> int:
    """A base port with `size` free UDP ports after it (SIP, feature server, RTP)."""
    for _ in range(200):
        base = random.randrange(20000, max(20010, 32760 - size), 10)  # the block ends below the ephemeral range
        if all(_free(p) for p in [base, base + 1, base + 2, *range(base + 20, base + 40), base + 100, base + 101, base + size - 1]):
            return base
    raise RuntimeError("no free port block")


def write_office(directory: Path, extra: str = "", no_answer_timeout: int = 30, extensions: str | None = None,
                 rtp_count: int = 400) -> Path:
    base = free_port_block(100 + rtp_count)
    extensions = extensions or "\n".join(
        f'  - {{number: "{n}", name: "Phone {n}", password: "pw-{n}-secret"}}' for n in TONES)
    path = directory / "office.yaml"
    site = "" if re.search(r"^site:", extra, re.M) else 'site: {name: "Test office"}\n'
    path.write_text(f"""{site}data_dir: ./var
network: {{bind: 127.0.0.1, sip_port: {base}, rtp_ports: [{base + 100}, {base + 99 + rtp_count}]}}
{extra or f"calls: {{no_answer_timeout: {no_answer_timeout}}}"}
extensions:
{extensions}
""")
    return path


def descendants_of(pid: int) -> set[int]:
    """Every process below `pid` (children, their children...), from /proc."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent and int(entry.name) not in found:
                found.add(int(entry.name))
                todo.append(int(entry.name))
    return found



@dataclass
class Pbx:
    config: Path
    proc: subprocess.Popen
    log: Path
    sip_port: int
    data_dir: Path

    def cdrs(self) -> list[dict]:
        out = subprocess.run(EDGEPBX + ["cdr", "list", "--config", str(self.config), "--json"],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        return json.loads(out.stdout)

    def wait_cdr(self, predicate, timeout: float = 5.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for record in self.cdrs():
                if predicate(record):
                    return record
            time.sleep(0.1)
        raise AssertionError(f"no matching CDR in {timeout} s; have: {self.cdrs()[:3]}")

    def stop(self, timeout: float = 6.0) -> float:
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - started

    def log_text(self) -> str:
        """Everything the box said: each service's whole output (data_dir/log/NAME.log, where
        `edgepbx run` puts it), then the supervisor's own lines from the terminal (the service
        lines it also showed there are not repeated)."""
        services = "".join(p.read_text(errors="replace") for p in sorted((self.data_dir / "log").glob("*.log")))
        seen = set(services.splitlines())
        own = [line for line in self.log.read_text(errors="replace").splitlines() if line not in seen]
        return services + "\n".join(own)

    def terminal_text(self) -> str:
        """What `edgepbx run` printed (what a person at the terminal sees)."""
        return self.log.read_text(errors="replace")


def start_pbx(config: Path, timeout: float = 30.0, netns: str | None = None) -> Pbx:
    """`edgepbx run` on `config` (in network namespace `netns`), once it printed `edgepbx ready`."""
    log = config.parent / "edgepbx.log"
    fh = open(log, "w")
    prefix = ["ip", "netns", "exec", netns] if netns else []  # exec's itself: the pid is edgepbx's
    proc = subprocess.Popen(prefix + EDGEPBX + ["run", "--config", str(config)], stdout=fh, stderr=subprocess.STDOUT,
                            cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    import yaml
    data = yaml.safe_load(config.read_text())
    pbx = Pbx(config, proc, log, data["network"]["sip_port"], (config.parent / data.get("data_dir", "./var")).resolve())
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if "edgepbx ready" in log.read_text(errors="replace"):
            return pbx
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    pbx.stop()
    text = log.read_text(errors="replace")
    problems = [line for line in text.splitlines() if re.search(r"ERROR|CRITICAL|Traceback|Error", line)]
    raise RuntimeError("edgepbx did not become ready:\n" + "\n".join(problems[:30]) + "\n...\n" + text[-2000:])


@pytest.fixture(scope="module")
def pbx(tmp_path_factory):
    """A running appliance shared by a test module (5 extensions, tones per extension)."""
    directory = tmp_path_factory.mktemp("office")
    pbx = start_pbx(write_office(directory, no_answer_timeout=4))
    yield pbx
    pbx.stop()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    from phones import PhoneLab

    lab = PhoneLab(tmp=tmp_path_factory.mktemp("phones"))
    lab.start()
    yield lab
    lab.stop()


def phones_on(lab, pbx):
    """A factory of test phones (extensions of TONES) registered to `pbx`."""
    lab.port = pbx.sip_port

    def make(number: str, register: bool = True):
        return lab.phone(number, f"pw-{number}-secret", TONES[number], register=register)

    return make


@pytest.fixture
def phones(lab, pbx):
    """Factory for registered test phones on the module's appliance; tidies them up after the test."""
    yield phones_on(lab, pbx)
    lab.release_phones()


def pytest_collection_modifyitems(session, config, items):
    """The Pi image's arm64 boot test goes last, and its image starts building now, in the
    background: configuring its arm64 root under qemu-user takes most of a core for many minutes
    on a fresh machine, which the other tests leave free (tests/image_builds.py)."""
    arm64 = [item for item in items if item.nodeid.startswith("tests/test_image_arm64.py")]
    if arm64:
        items[:] = [item for item in items if item not in arm64] + arm64
        if not config.option.collectonly:
            from image_builds import start_pi4_build
            start_pi4_build()
