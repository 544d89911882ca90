"""Extensions call each other through Kamailio and the feature server, with two-way audio,
a recording holding both parties, and a CDR."""
from __future__ import annotations

import time
from pathlib import Path

import pjsua2 as pj

from audio import duration_seconds, has_tone, lacks_tone
from conftest import TONES


def test_extensions_call_each_other_with_two_way_audio_recording_and_cdr(pbx, lab, phones):
    a, b = phones("101"), phones("102")
    assert a.reg_code == 200 and b.reg_code == 200
    call = a.dial("102")
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, "call to be answered")
    lab.poll(3.0)
    callee_call = b.last_call
    call.hangup_now()
    lab.wait_for(lambda: callee_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "callee to hang up")

    heard_by_a, heard_by_b = call.record_path, callee_call.record_path
    assert has_tone(heard_by_a, TONES["102"]) and lacks_tone(heard_by_a, TONES["101"] + 300)
    assert has_tone(heard_by_b, TONES["101"])

    record = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102")
    assert record["direction"] == "internal"
    assert record["disposition"] == "answered"
    assert record["answered_at"] and record["ended_at"]
    assert 2 <= record["billsec"] <= 6 and record["duration"] >= record["billsec"]
    recording = Path(record["recording"])
    assert recording.is_absolute() and recording.exists()
    assert recording.is_relative_to(pbx.data_dir / "recordings")
    assert duration_seconds(recording) >= 2.5
    assert has_tone(recording, TONES["101"]) and has_tone(recording, TONES["102"])
