"""SIP scanners against the running box, as the world sends them (Debian `sipvicious`): svwar
must not tell existing extensions from made-up ones, svcrack must guess nothing and get its
address banned, and a phone elsewhere keeps working. Each run also as a scanner that hides its
User-Agent (tests/sipvicious_as_phone.py): the stock one is dropped on sight."""
from __future__ import annotations

import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import start_pbx, write_office
from sipp import run_sipp

AS_PHONE = [sys.executable, str(Path(__file__).with_name("sipvicious_as_phone.py"))]
REAL, MADE_UP = "101", "109"  # the office has 101-105


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """The box with its default security settings (a ban after 10 failed authentications)."""
    pbx = start_pbx(write_office(tmp_path_factory.mktemp("scanned")))
    yield pbx
    pbx.stop()


def scan(command: list[str], timeout: float = 60) -> tuple[str, float]:
    """A scanner's whole output and how long it ran."""
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr, time.monotonic() - started


def answer_to(box, method: str, user: str, source: str) -> tuple[str, list[str]]:
    """The status line and header names the box sends back to an unauthenticated request for
    `user`, as a scanner sees them (tags, nonces and ids differ from answer to answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2.0)
        port = sock.getsockname()[1]
        target = "127.0.0.1" if method == "REGISTER" else f"{user}@127.0.0.1"
        sock.sendto((f"{method} sip:{target} SIP/2.0\r\n"
                     f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
                     f"From: <sip:{user}@127.0.0.1>;tag={secrets.token_hex(4)}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
                     f"Call-ID: {secrets.token_hex(8)}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
                     f"Contact: <sip:{user}@{source}:{port}>\r\nUser-Agent: Yealink SIP-T46U 66.86.0.15\r\n"
                     "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", box.sip_port))
        try:
            data = sock.recv(65535).decode(errors="replace")
        except socket.timeout:
            return "no answer", []
    status, *headers = data.split("\r\n\r\n", 1)[0].split("\r\n")
    return status, sorted(h.split(":", 1)[0] for h in headers)


@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS"])
def test_svwar_cannot_tell_the_offices_extensions_from_made_up_ones(box, method):
    assert answer_to(box, method, REAL, "127.0.0.3") == answer_to(box, method, MADE_UP, "127.0.0.3")
    for tool in (["svwar"], AS_PHONE + ["127.0.0.3", "svwar"]):  # stock, then hiding its User-Agent
        output, seconds = scan(tool + ["-e100-110", "-m", method, "--force", "-p", str(box.sip_port), "127.0.0.1"])
        found = re.findall(r"^\|\s*(\d+)\s*\|", output, re.M)
        print(f"svwar {'as a phone' if len(tool) > 1 else 'stock'} -m {method}: 11 extensions tried, "
              f"{len(found)} found, {seconds:.1f} s")
        assert found == [] and "found nothing" in output, output[-2000:]


def test_svcrack_guesses_nothing_and_its_address_is_banned_while_phones_elsewhere_register(box, tmp_path):
    guesses = [f"guess{i}" for i in range(29)] + ["pw-101-secret"] + [f"more{i}" for i in range(20)]
    dictionary = tmp_path / "passwords.txt"
    dictionary.write_text("\n".join(guesses) + "\n")  # the right password is the 30th guess
    crack = ["svcrack", "-vv", "-u101", "-d", str(dictionary), "-p", str(box.sip_port), "127.0.0.1"]
    output, seconds = scan(crack)  # stock: dropped on sight, it never gets a challenge
    assert "no server response" in output and "trying guess0" not in output, output[-2000:]
    print(f"svcrack stock: 0 passwords tried (no answer at all), stopped after {seconds:.0f} s")

    started = time.monotonic()
    proc = subprocess.Popen(AS_PHONE + ["127.0.0.2"] + crack, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while "banning 127.0.0.2" not in box.log_text() and proc.poll() is None and time.monotonic() - started < 60:
        time.sleep(0.05)
    banned_after = time.monotonic() - started
    output = proc.communicate(timeout=90)[0]
    seconds = time.monotonic() - started
    tried = re.findall(r"^DEBUG:\S+:trying (\S+)$", output, re.M)
    print(f"svcrack as a phone: {len(tried)} passwords tried of {len(guesses)}, none right; banned "
          f"{banned_after:.1f} s after it started; it stopped by itself after {seconds:.0f} s (10 s without an answer)")
    assert "The password for" not in output and "found nothing" in output, output[-2000:]
    assert len(tried) <= 10 and "pw-101-secret" not in tried  # banned before the 30th guess
    assert "banning 127.0.0.2 after 10 failed authentications" in box.log_text()
    assert answer_to(box, "REGISTER", REAL, "127.0.0.2") == ("no answer", [])  # banned: silence
    phone = run_sipp("register.xml", tmp_path, box.sip_port, service="101", user="101", password="pw-101-secret")
    assert phone.returncode == 0, phone.output  # the office's phone at another address is unaffected


def invite(user: str, source: str, port: int) -> bytes:
    tag, call_id = secrets.token_hex(4), secrets.token_hex(8)
    return (f"INVITE sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{call_id};rport\r\n"
            f"From: <sip:flood@{source}>;tag={tag}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:flood@{source}:{port}>\r\n"
            "User-Agent: Yealink SIP-T46U 66.86.0.15\r\nContent-Length: 0\r\n\r\n").encode()


def test_an_invite_flood_from_one_address_is_dropped_while_the_offices_calls_go_on(box, lab):
    """1,000 INVITEs a second from one address (security.flood_requests_per_second: 50): after the
    first second's worth its requests get no answer, and two phones of the office call each other
    meanwhile."""
    import threading

    from phones import talk

    source, rate, seconds = "127.0.0.4", 1000, 4.0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(0.2)
    answers, stop = [], threading.Event()

    def count_answers() -> None:
        while not stop.is_set():
            try:
                answers.append(sock.recv(65535)[:12])
            except socket.timeout:
                continue

    def flood() -> None:
        port, started = sock.getsockname()[1], time.monotonic()
        while time.monotonic() - started < seconds:
            sock.sendto(invite(REAL, source, port), ("127.0.0.1", box.sip_port))
            sent.append(1)
            time.sleep(max(0.0, started + len(sent) / rate - time.monotonic()))
    sent: list[int] = []
    listener, flooder = threading.Thread(target=count_answers), threading.Thread(target=flood)
    listener.start(), flooder.start()
    try:
        lab.port = box.sip_port
        caller, callee = lab.phone("102", "pw-102-secret", 500.0), lab.phone("103", "pw-103-secret", 1300.0)
        call, _ = talk(lab, caller, callee)  # the office's phones at 127.0.0.1, during the flood
        call.hangup_now()
        flooder.join()
    finally:
        stop.set()
        flooder.join()
        listener.join()
        sock.close()
        lab.release_phones()
    print(f"INVITE flood: {len(sent)} sent in {seconds:.0f} s, {len(answers)} answered "
          f"({100 * len(answers) / len(sent):.1f} %); a call between two phones went through meanwhile")
    assert len(sent) > 2000 and len(answers) < 0.1 * len(sent)
    assert f"flood from {source}: dropping its requests" in box.log_text()


def test_500_phones_registering_at_once_all_get_in_while_two_others_call(tmp_path, lab):
    """An office's power comes back: its 500 phones, each at its own address, send REGISTER at
    the same moment (SIPp). Every one is challenged and registered, and none is taken for a
    flood or a scanner; two other phones call each other in the middle of it."""
    import threading

    from conftest import TONES
    from phones import talk
    from sipp import register_storm, storm_phones

    desks = storm_phones(500)
    extensions = "\n".join([f'  - {{number: "{n}", name: "Phone {n}", password: "pw-{n}-secret"}}' for n in TONES] +
                           [f'  - {{number: "{user}", name: "Desk {user}", password: "{password}"}}'
                            for user, password, _ in desks])
    office = start_pbx(write_office(tmp_path, extensions=extensions))
    try:
        results = []
        storm = threading.Thread(target=lambda: results.append(register_storm(tmp_path, office.sip_port, desks)))
        lab.port = office.sip_port
        caller, callee = lab.phone("101", "pw-101-secret", 500.0), lab.phone("102", "pw-102-secret", 1300.0)
        storm.start()
        call, _ = talk(lab, caller, callee, timeout=15)
        call.hangup_now()
        storm.join(90)
        (result,) = results
        times = sorted(result.times_ms)
        print(f"500 phones at once: {result.registered} registered, {result.failed} failed, in {result.seconds:.2f} s "
              f"(per phone p50 {times[len(times) // 2]:.0f} ms, max {times[-1]:.0f} ms), "
              f"{result.retransmissions} REGISTERs sent again")
        assert (result.registered, result.failed) == (500, 0)
        # `edgepbx devices` lists each of them (noted just after the 200 went out)
        wanted, deadline = {user for user, _, _ in desks}, time.monotonic() + 5
        while True:
            noted = sqlite3.connect(str(office.data_dir / "registrations.sqlite"))
            registered = {row[0] for row in noted.execute("SELECT extension FROM registrations WHERE expires_at > ?",
                                                           (time.time(),))}
            noted.close()
            if wanted <= registered or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert wanted <= registered, sorted(wanted - registered)[:10]
        assert "flood from" not in office.log_text() and "banning" not in office.log_text()
    finally:
        lab.release_phones()
        office.stop()
