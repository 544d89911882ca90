"""`edgepbx run` as a service: ready line, clean stop, and recovery when the feature server dies."""
from __future__ import annotations

import json
import re
import os
import signal
import sqlite3
import subprocess
import time
import wave
from pathlib import Path

import pjsua2 as pj
import pytest

from audio import duration_seconds, has_tone
from appliance.kamailio import render
from conftest import EDGEPBX, ROOT, TONES, descendants_of, start_pbx, write_office


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_ends_everything_within_5_seconds(tmp_path, stop_signal):
    pbx = start_pbx(write_office(tmp_path))
    children = descendants_of(pbx.proc.pid)
    assert len(children) >= 3, "expected Kamailio (with workers) and the feature server"
    pbx.proc.send_signal(stop_signal)
    started = time.monotonic()
    pbx.proc.wait(timeout=10)
    took = time.monotonic() - started
    assert took < 5.0, f"stopping took {took:.1f} s"
    assert pbx.proc.returncode == 0
    assert not [pid for pid in children if alive(pid)], "child processes left behind"


def feature_server_pid(pbx) -> int:
    for pid in descendants_of(pbx.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"featureserver" in argv:
            return pid
    raise AssertionError("feature server not running")


def test_feature_server_crash_mid_call_keeps_the_record_and_the_recording(tmp_path, lab):
    pbx = start_pbx(write_office(tmp_path))
    lab.port = pbx.sip_port
    try:
        a = lab.phone("101", "pw-101-secret", TONES["101"])
        lab.phone("102", "pw-102-secret", TONES["102"])  # the callee, answering
        call = a.dial("102")
        lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, "call to be answered")
        lab.poll(3.0)
        live = subprocess.run(EDGEPBX + ["cdr", "list", "--include-live", "--json", "--config", str(pbx.config)],
                              capture_output=True, text=True, check=True, cwd=ROOT)
        assert json.loads(live.stdout)[0]["disposition"] is None  # in progress
        crashed = feature_server_pid(pbx)
        os.kill(crashed, signal.SIGKILL)  # as a crash or power loss would
        # The supervisor restarts it; on start it closes the open record and repairs the WAV.
        record = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102", timeout=15)
        assert record["disposition"] == "failed"
        assert record["answered_at"] and record["ended_at"] >= record["answered_at"]
        assert record["billsec"] >= 2
        recording = Path(record["recording"])
        with wave.open(str(recording)) as w:  # the header is valid again
            assert w.getnframes() > 0
        assert duration_seconds(recording) >= 2.0
        assert has_tone(recording, TONES["101"]) and has_tone(recording, TONES["102"])
        assert "restarting" in pbx.log_text() and "repaired recording" in pbx.log_text()
        assert feature_server_pid(pbx) != crashed

        # The office keeps working after the restart.
        lab.hang_up_everything()
        again = a.dial("102")
        lab.wait_for(lambda: again.state == pj.PJSIP_INV_STATE_CONFIRMED, 15, "a call after the restart")
        again.hangup_now()
        lab.wait_for(lambda: again.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
    finally:
        lab.release_phones()
        pbx.stop()


def integrity(database: Path) -> str:
    db = sqlite3.connect(str(database))
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def test_every_process_killed_at_once_during_calls_and_record_writes_then_started_again(tmp_path, lab):
    """A power cut as the box's processes see it: Kamailio, the feature server, provisioning, the
    cloud agent and the supervisor all get SIGKILL at the same moment, while a recorded call is up,
    another rings and calls to a wrong number are writing their records. Started again, nothing
    is lost or broken, and the phones are reached without registering again."""
    config = write_office(tmp_path, extra="calls: {no_answer_timeout: 60}\nprovisioning: {tftp_port: 0, http_port: 0, https_port: 0, discovery: false, pnp: false}")
    pbx = start_pbx(config)
    lab.port = pbx.sip_port
    try:
        a, b, c, d, e = (lab.phone(n, f"pw-{n}-secret", TONES[n]) for n in ("101", "102", "103", "104", "105"))
        registered_at = time.monotonic()
        talking = a.dial("102")
        d.answer = "never"
        ringing = c.dial("104")
        lab.wait_for(lambda: talking.state == pj.PJSIP_INV_STATE_CONFIRMED and ringing.saw(pj.PJSIP_INV_STATE_EARLY),
                     10, "one call up and one ringing")
        # Registrations reach the disk every LOCATION_FLUSH_SECONDS: let the last one be written.
        lab.poll(max(3.0, render.LOCATION_FLUSH_SECONDS + 1 - (time.monotonic() - registered_at)))
        wrong = [e.dial("199") for _ in range(8)]  # each writes a record as it starts and as it ends
        lab.poll(0.05)
        everyone = descendants_of(pbx.proc.pid) | {pbx.proc.pid}
        names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in everyone if alive(pid)}
        for pid in everyone:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pbx.proc.wait(timeout=5)
        assert "kamailio" in names and len(everyone) >= 5, names
        lab.poll(0.5)
        assert not [pid for pid in everyone if alive(pid)]
        for database in ("cdr.sqlite", "devices.sqlite", "registrations.sqlite", "kamailio/location.sqlite"):
            if (pbx.data_dir / database).exists():
                assert integrity(pbx.data_dir / database) == "ok", database
        lab.hang_up_everything()  # the phones give up on calls nobody answers any more

        pbx = start_pbx(config)
        records = pbx.cdrs()
        live = subprocess.run(EDGEPBX + ["cdr", "list", "--include-live", "--json", "--config", str(config)],
                              capture_output=True, text=True, check=True, cwd=ROOT)
        assert all(r["disposition"] for r in json.loads(live.stdout)), "a call left open after the restart"
        cut = next(r for r in records if r["src"] == "101" and r["dst"] == "102")
        assert cut["disposition"] == "failed" and cut["answered_at"] and cut["billsec"] >= 2, cut
        with wave.open(cut["recording"]) as w:  # a valid WAV again, with what was said before the cut
            assert w.getnframes() > 0
        assert duration_seconds(Path(cut["recording"])) >= 2.0
        assert has_tone(Path(cut["recording"]), TONES["101"]) and has_tone(Path(cut["recording"]), TONES["102"])
        assert next(r for r in records if r["src"] == "103")["answered_at"] is None
        assert len([r for r in records if r["dst"] == "199"]) <= len(wrong)

        # Kamailio found the registrations on disk: 101 rings without having registered again.
        b.answer = "auto"
        back = b.dial("101")
        lab.wait_for(lambda: back.state == pj.PJSIP_INV_STATE_CONFIRMED, 15, "102 calling 101 after the restart")
        back.hangup_now()
        lab.wait_for(lambda: back.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
        a.reg_code = 0
        a.setRegistration(True)  # and a phone that does register again is welcome
        lab.wait_for(lambda: a.reg_code != 0, 5, "101 registering again")
        assert a.reg_code == 200
    finally:
        lab.release_phones()
        pbx.stop()


def test_the_terminal_shows_the_services_starting_and_ready_and_errors_not_their_chatter(tmp_path):
    """Kamailio's and PJSIP's start-up lines (TLS domains, module probes) go to DATA_DIR/log; the
    terminal gets the supervisor's lines, the ready lines, warnings and errors."""
    pbx = start_pbx(write_office(tmp_path))
    pbx.stop()
    terminal = pbx.terminal_text()
    assert "started kamailio" in terminal and "edgepbx ready" in terminal
    assert "ksr_tls_fill_missing" not in terminal and " INFO: " not in terminal.replace("supervisor INFO: ", "")
    assert len(terminal.splitlines()) < 20, terminal
    assert "ksr_tls_fill_missing" in (pbx.data_dir / "log" / "kamailio.log").read_text()
    assert "feature server listening" in (pbx.data_dir / "log" / "featureserver.log").read_text()


def test_a_service_that_cannot_start_says_why_on_the_terminal(tmp_path):
    import socket
    config = write_office(tmp_path)
    port = int(re.search(r"sip_port: (\d+)", config.read_text()).group(1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        run = subprocess.run(EDGEPBX + ["run", "--config", str(config)], capture_output=True, text=True, cwd=ROOT,
                             timeout=60)
    assert run.returncode == 1
    assert "Address already in use" in run.stderr and "kamailio exited with status" in run.stderr, run.stderr
    assert "services did not come up" in run.stderr
