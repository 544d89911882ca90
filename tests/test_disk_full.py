"""The data partition filling up during calls, on a real 48 MB file system (tmpfs): the calls go
on; new calls go unrecorded below recording.min_free_mb and the recordings in progress stop, with
an alarm and a valid file, below half of it; with the disk completely full the call records are
still written (into the space the box keeps for them, appliance/reserve.py), the databases stay
sound, and recording and the reserve come back once space is freed. (This box is not enrolled, so
its pruner may also delete its oldest ended recordings for space: tests/test_cloud.py covers which.)"""
from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import wave
from pathlib import Path

import pjsua2 as pj

from audio import has_tone
from conftest import EDGEPBX, ROOT, TONES, start_pbx, write_office
from phones import talk
from test_cloud import fill_until_free, small_disk  # noqa: F401 (a fixture)

from appliance.reserve import RESERVE_MB, reserve_path


def wait_log(pbx, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in pbx.log_text():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{pbx.log_text()[-3000:]}"
        time.sleep(0.2)


def live_records(pbx) -> list[dict]:
    listed = subprocess.run(EDGEPBX + ["cdr", "list", "--include-live", "--json", "--config", str(pbx.config)],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(listed.stdout)


def fill_completely(var: Path) -> None:
    """Writes until the kernel says the file system is full."""
    with open(var / "last-byte.bin", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def test_a_disk_filling_during_calls_stops_recording_never_the_calls_or_their_records(lab, small_disk, tmp_path):
    office = write_office(small_disk.parent, extra="recording: {enabled: true, min_free_mb: 16}\n"
                                                  "calls: {no_answer_timeout: 30}")
    pbx = start_pbx(office)
    lab.port = pbx.sip_port
    phones = {n: lab.phone(n, f"pw-{n}-secret", TONES[n]) for n in ("101", "102", "103", "104")}
    try:
        assert reserve_path(pbx.data_dir).stat().st_size == RESERVE_MB << 20
        first, first_answered = talk(lab, phones["101"], phones["102"])
        lab.poll(2.0)
        fill_until_free(small_disk, 12)  # under min_free_mb: new calls go unrecorded, this one goes on
        second, _ = talk(lab, phones["103"], phones["104"])
        wait_log(pbx, "calls are not recorded until space is freed")

        fill_until_free(small_disk, 6)  # under half of it: the recording in progress stops
        wait_log(pbx, "stopped recording 1 call(s) in progress")
        heard = first.record_phase("after-stop"), first_answered.record_phase("after-stop")
        lab.poll(1.5)
        first.stop_recording(), first_answered.stop_recording()
        lab.poll(0.3)
        assert has_tone(heard[0], TONES["102"]) and has_tone(heard[1], TONES["101"])  # the call goes on
        recording = next(r for r in live_records(pbx) if r["src"] == "101")["recording"]
        with wave.open(recording) as w:  # closed with what it held: a valid file already
            recorded = w.getnframes() / w.getframerate()
        assert recorded >= 2.0 and has_tone(Path(recording), TONES["101"]), recorded

        fill_completely(small_disk)  # and now nothing is left at all
        for call in (first, second):
            call.hangup_now()
        lab.wait_for(lambda: first.state == second.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-ups")
        third, _ = talk(lab, phones["101"], phones["104"])  # a call on a full disk still has its record
        lab.poll(1.0)
        third.hangup_now()
        records = {r["src"] + ">" + r["dst"]: r for r in (pbx.wait_cdr(lambda r: r["dst"] == "104" and r["src"] == "101"),
                                                          *pbx.cdrs())}
        assert {"101>102", "103>104", "101>104"} <= set(records), list(records)
        assert all(records[k]["disposition"] == "answered" for k in ("101>102", "103>104", "101>104"))
        assert records["103>104"]["recording"] is None and records["101>104"]["recording"] is None
        assert "released the 8 MB kept for call records" in pbx.log_text()
        db = sqlite3.connect(str(pbx.data_dir / "cdr.sqlite"))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()

        for filler in ("filler.bin", "last-byte.bin"):
            (small_disk / filler).unlink()
        wait_log(pbx, "space for call records kept again")
        assert reserve_path(pbx.data_dir).stat().st_size == RESERVE_MB << 20
        fourth, _ = talk(lab, phones["102"], phones["103"])
        lab.poll(1.0)
        fourth.hangup_now()
        again = pbx.wait_cdr(lambda r: r["src"] == "102" and r["dst"] == "103")
        assert again["recording"] and Path(again["recording"]).exists()
    finally:
        lab.release_phones()
        pbx.stop()
