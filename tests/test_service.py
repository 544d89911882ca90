"""`edgepbx run` as a service: ready line, clean stop, and recovery when the feature server dies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import wave
from pathlib import Path

import pjsua2 as pj
import pytest

from audio import duration_seconds, has_tone
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
