"""Extensions call each other through Kamailio and the feature server, with two-way audio,
a recording holding both parties, and a CDR."""
from __future__ import annotations

import time
from pathlib import Path

import pjsua2 as pj
import pytest

from audio import duration_seconds, has_tone, lacks_tone
from conftest import TONES
from phones import talk


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


HIGH_TONES = {"101": 5200.0, "102": 6400.0}  # above the 3.4 kHz of a narrowband (G.711) call


@pytest.mark.parametrize("codec, wideband", [("opus/48000", True), ("G722/16000", True), ("PCMA/8000", False)])
def test_wideband_phones_keep_wideband_audio_through_the_bridge_and_the_recording(pbx, lab, codec, wideband):
    """Phones that offer opus (or G.722) first get it on both legs, hear each other's 5-6 kHz tones
    and the recording keeps them; G.711 phones cannot carry them (the check can fail)."""
    preferred = {c.codecId: c.priority for c in lab.ep.codecEnum2()}
    for codec_id in preferred:
        lab.ep.codecSetPriority(codec_id, 255 if codec_id.startswith(codec) else 0)
    lab.port = pbx.sip_port
    try:
        a = lab.phone("101", "pw-101-secret", HIGH_TONES["101"])
        b = lab.phone("102", "pw-102-secret", HIGH_TONES["102"])
        call, _ = talk(lab, a, b, 10)
        name = codec.split("/")[0]
        assert call.getStreamInfo(0).codecName == name and b.last_call.getStreamInfo(0).codecName == name
        lab.poll(2.5)
        call_id = call.getInfo().callIdString
        call.hangup_now()
        lab.wait_for(lambda: b.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
        record = pbx.wait_cdr(lambda r: r["sip_call_id"] == call_id and r["ended_at"])
        heard = [call.record_path, b.last_call.record_path, Path(record["recording"])]
        if wideband:
            assert has_tone(heard[0], HIGH_TONES["102"]) and has_tone(heard[1], HIGH_TONES["101"])
            assert has_tone(heard[2], HIGH_TONES["101"]) and has_tone(heard[2], HIGH_TONES["102"])
        else:
            assert all(lacks_tone(path, HIGH_TONES["101"]) and lacks_tone(path, HIGH_TONES["102"]) for path in heard)
    finally:
        for codec_id, priority in preferred.items():
            lab.ep.codecSetPriority(codec_id, priority)
        lab.release_phones()


def test_calls_up_to_the_configured_capacity_then_503(tmp_path):
    """calls.max_concurrent: 4 calls are bridged at once; the fifth caller gets 503 and the log
    says why. SIPp plays both sides."""
    import subprocess
    import threading

    from conftest import start_pbx, write_office
    from sipp import free_udp_port, run_sipp

    pbx = start_pbx(write_office(tmp_path, extra="calls: {no_answer_timeout: 10, max_concurrent: 4}"))
    uas_port = free_udp_port()
    try:
        reg = run_sipp("register.xml", tmp_path, pbx.sip_port, service="102", user="102",
                       password="pw-102-secret", local_port=uas_port)
        assert reg.returncode == 0, reg.output
        uas = subprocess.Popen(["sipp", "-sf", "sipp/uas_answer.xml", "-nostdin", "-i", "127.0.0.1", "-p", str(uas_port),
                                "-timeout", "30s"], cwd=Path(__file__).parent,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        held: list = []
        holders = [threading.Thread(target=lambda: held.append(run_sipp(
            "call_answered.xml", tmp_path, pbx.sip_port, service="102", user="101", password="pw-101-secret",
            fill={"CODEC": "PCMA/8000", "PT": "8", "HOLD": "4000"}))) for _ in range(4)]
        for t in holders:
            t.start()
        time.sleep(2.0)  # all four are up and held now
        refused = run_sipp("call_expect_failure.xml", tmp_path, pbx.sip_port, service="102", user="103",
                           password="pw-103-secret", expected="503")
        for t in holders:
            t.join()
        uas.kill()
        assert refused.returncode == 0, refused.output
        assert [r.returncode for r in held] == [0, 0, 0, 0], [r.output for r in held if r.returncode]
        assert len([r for r in pbx.cdrs() if r["disposition"] == "answered"]) == 4
        assert "calls.max_concurrent (4) reached" in pbx.log_text()
    finally:
        pbx.stop()
