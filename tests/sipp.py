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


def free_udp_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def start_sipp(scenario: str, workdir: Path, target_port: int, *, service: str, user: str, password: str,
               expected: str = "200", fill: dict[str, str] | None = None, local_port: int = 0,
               timeout: float = 30.0) -> tuple[subprocess.Popen, Path]:
    """Starts one call of `scenario` with @EXPECTED@ (and each @KEY@ of `fill`) filled in; returns
    the process and the file its message trace goes to."""
    local_port = local_port or free_udp_port()
    fill = {"AGENT": "SIPp register test", **(fill or {})}  # the User-Agent a phone says it is
    text = (SCENARIOS / scenario).read_text().replace("@EXPECTED@", expected)
    for key, value in fill.items():
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


def provider_calls(tmp_path: Path, scenario: str, name: str,
                   fill: dict[str, str] | None = None) -> tuple[subprocess.Popen, int, Path]:
    """A SIPp 'provider' taking one call with `scenario` (@USER@, @PASSWORD@ and each @KEY@ of `fill` filled in)."""
    port = free_udp_port()
    script = tmp_path / f"{name}.xml"
    text = (SCENARIOS / scenario).read_text().replace("@USER@", "nn-office").replace("@PASSWORD@", "trunk-pass-2")
    for key, value in (fill or {}).items():
        text = text.replace(f"@{key}@", value)
    script.write_text(text)
    trace = tmp_path / f"{name}.messages"
    proc = subprocess.Popen(["sipp", "-sf", str(script), "-nostdin", "-i", "127.0.0.1", "-p", str(port), "-m", "1",
                             "-trace_msg", "-message_file", str(trace)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, trace


@dataclass
class StormResult:
    registered: int       # phones whose REGISTER got its 200
    failed: int
    retransmissions: int  # REGISTERs SIPp sent again after 500 ms without an answer
    seconds: float        # from the first REGISTER to the last 200
    times_ms: list[float]  # per phone: first REGISTER to its 200


def storm_phones(count: int, first: int = 3000) -> list[tuple[str, str, str]]:
    """(extension, password, address) of `count` desk phones, each on a loopback address of its own
    (127.0.1.1, 127.0.1.2, ...), as an office's phones each have their own."""
    return [(str(first + i), f"pw-{first + i}-storm", f"127.0.{1 + i // 250}.{1 + i % 250}") for i in range(count)]


def register_storm(workdir: Path, target_port: int, phones: list[tuple[str, str, str]],
                   timeout: float = 60.0) -> StormResult:
    """Every phone of `phones` sends its REGISTER at the same moment (after an office power cut)
    and answers the digest challenge: SIPp, one socket per phone address (-t ui)."""
    for _attempt in range(3):
        run = workdir / f"storm-{time.monotonic_ns()}"  # a folder per try: SIPp's statistics files
        run.mkdir(parents=True)
        (run / "phones.csv").write_text("SEQUENTIAL\n" + "".join(
            f"{user};[authentication username={user} password={password}];{address}\n"
            for user, password, address in phones))
        # SIPp binds its main socket on every address: a port free on 127.0.0.1 a moment ago may be
        # taken by then (another process's ephemeral port), which it reports before sending anything.
        port = free_udp_port("0.0.0.0")
        argv = ["sipp", "-sf", str(SCENARIOS / "register_storm.xml"), "-inf", str(run / "phones.csv"), "-t", "ui",
                "-ip_field", "2", "-p", str(port), "-max_socket", str(len(phones) + 100), "-m", str(len(phones)),
                "-r", str(len(phones) * 100), "-rp", "1000", "-l", str(len(phones)), "-nostdin", "-trace_stat",
                "-trace_rtt", "-rtt_freq", "1", "-fd", "1", "-timeout", f"{int(timeout)}s", f"127.0.0.1:{target_port}"]
        done = subprocess.run(argv, cwd=run, capture_output=True, text=True, timeout=timeout + 30)
        if "Unable to bind main socket" not in done.stderr + done.stdout:
            break
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]  # 1: some phones failed
    # -trace_rtt: "when (ms since the start);first REGISTER to 200 (ms);1" per registered phone
    answers = [line.split(";") for path in run.glob("*_rtt.csv") for line in path.read_text().splitlines()[1:]]
    stats = next(run.glob("*_.csv")).read_text().splitlines()
    value = dict(zip(stats[0].split(";"), stats[-1].split(";")))
    return StormResult(int(value["SuccessfulCall(C)"]), int(value["FailedCall(C)"]), int(value["Retransmissions(C)"]),
                       max((float(a[0]) for a in answers), default=0.0) / 1000, [float(a[1]) for a in answers])
