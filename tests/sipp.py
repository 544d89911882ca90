"""Runs a SIPp scenario (Debian sip-tester) against the appliance and reports what it saw."""
from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "sipp"


@dataclass
class SippResult:
    returncode: int
    messages: str  # every message sent and received (-trace_msg)
    output: str

    @property
    def response_codes(self) -> list[int]:
        """Status codes of the responses SIPp received, in order."""
        return [int(c) for c in re.findall(r"^\s*SIP/2\.0 (\d{3}) ", self.received(), re.MULTILINE)]

    def received(self) -> str:
        blocks = re.split(r"^-{5,}.*$", self.messages, flags=re.MULTILINE)
        return "\n".join(b for b in blocks if "message received" in b)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sipp(scenario: str, workdir: Path, target_port: int, *, service: str, user: str, password: str,
               expected: str = "200", fill: dict[str, str] | None = None, local_port: int = 0,
               timeout: float = 30.0) -> tuple[subprocess.Popen, Path]:
    """Starts one call of `scenario` with @EXPECTED@ (and each @KEY@ of `fill`) filled in; returns
    the process and the file its message trace goes to."""
    local_port = local_port or free_udp_port()
    text = (SCENARIOS / scenario).read_text().replace("@EXPECTED@", expected)
    for key, value in (fill or {}).items():
        text = text.replace(f"@{key}@", value)
    script = workdir / f"{scenario.removesuffix('.xml')}-{expected}-{time.monotonic_ns()}.xml"
    script.write_text(text)
    trace = script.with_suffix(".messages")
    argv = ["sipp", "-sf", str(script), "-m", "1", "-l", "1", "-nostdin", "-i", "127.0.0.1",
            "-p", str(local_port), "-s", service, "-key", "caller", user, "-au", user, "-ap", password,
            "-timeout", f"{int(timeout)}s", "-timeout_error", "-trace_msg", "-message_file", str(trace),
            "-recv_timeout", "15000", f"127.0.0.1:{target_port}"]
    return subprocess.Popen(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), trace


def finish_sipp(proc: subprocess.Popen, trace: Path, timeout: float, lab=None) -> SippResult:
    """Waits for SIPp (polling `lab`, the test phones, meanwhile) and collects what it saw."""
    end = time.monotonic() + timeout + 5
    while proc.poll() is None and time.monotonic() < end:
        if lab is not None:
            lab.poll(0.05)
        else:
            time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    output = proc.communicate()[0]
    return SippResult(proc.returncode, trace.read_text() if trace.exists() else "", output)


def run_sipp(scenario: str, workdir: Path, target_port: int, *, service: str, user: str, password: str,
             expected: str = "200", fill: dict[str, str] | None = None, local_port: int = 0, lab=None,
             timeout: float = 30.0) -> SippResult:
    """Runs one call of `scenario` to its end; polls `lab` (the test phones) meanwhile."""
    proc, trace = start_sipp(scenario, workdir, target_port, service=service, user=user, password=password,
                             expected=expected, fill=fill, local_port=local_port, timeout=timeout)
    return finish_sipp(proc, trace, timeout, lab)
