"""Recordings as Ogg Opus (issue 26): the box encodes a finished call's WAV with Debian's opusenc,
keeps only the Opus file, sends it; the portal plays it in Chromium and converts it to WAV or MP3
on download. Real opusenc, opusdec and sox; the portal on PostgreSQL."""
from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
import wave
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

import audio
from audio import band_level_db
from conftest import ROOT
from portal_lab import FAST_CLOUD, AgentProcess, close_portal, enrolled_box, start_portal

sys.path.insert(0, str(ROOT))
from appliance.cdr import CdrStore  # noqa: E402
from appliance.cloud.outbox import Outbox  # noqa: E402
from appliance.opus import RecordingEncoder  # noqa: E402

PASSWORD = "correct horse battery"
TONES = ((1000.0, -12.0), (440.0, -20.0))  # frequency, level in dBFS: what must survive the codec
SPEECH = ROOT / "appliance" / "sounds" / "greeting.wav"


def write_tones(path: Path, seconds: float) -> Path:
    return audio.write_tones(path, TONES, seconds)


def write_speech(path: Path, repeats: int) -> Path:
    with wave.open(str(SPEECH)) as speech:
        frames = speech.readframes(speech.getnframes())
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(frames * repeats)
    return path


def finished_call(data_dir: Path, wav_writer, ended_ago: float = 0.0) -> tuple[str, Path]:
    """A call the box's CDR store recorded and ended, its WAV written by `wav_writer(path)`."""
    store = CdrStore(data_dir / "cdr.sqlite")
    cdr_id = store.start(direction="internal", src="101", dst="102")
    wav = data_dir / "recordings" / f"{cdr_id}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    wav_writer(wav)
    store.answered(cdr_id, str(wav))
    store.ended(cdr_id, "answered", 200)
    if ended_ago:
        when = (datetime.now().astimezone() - timedelta(seconds=ended_ago)).isoformat(timespec="milliseconds")
        store.db.execute("UPDATE cdr SET ended_at = ? WHERE id = ?", (when, cdr_id))
    store.close()
    return cdr_id, wav


def recording_of(data_dir: Path, cdr_id: str) -> Path:
    db = sqlite3.connect(data_dir / "cdr.sqlite")
    try:
        return Path(db.execute("SELECT recording FROM cdr WHERE id = ?", (cdr_id,)).fetchone()[0])
    finally:
        db.close()


def encode_all(encoder: RecordingEncoder, timeout: float = 60.0) -> None:
    """Rounds of the agent's loop until nothing is left to encode."""
    deadline = time.monotonic() + timeout
    while encoder.step() or encoder.job is not None:
        assert time.monotonic() < deadline, "encoding did not finish"
        time.sleep(0.02)


def decoded(opus: Path, out: Path) -> Path:
    subprocess.run(["opusdec", "--quiet", "--rate", "16000", str(opus), str(out)], check=True)
    return out


def test_a_finished_recording_becomes_opus_over_ten_times_smaller_with_its_tones_and_levels(tmp_path):
    speech_id, speech_wav = finished_call(tmp_path, lambda p: write_speech(p, 6))  # 37.5 s of the greeting's voice
    tones_id, tones_wav = finished_call(tmp_path, lambda p: write_tones(p, 10.0))
    wav_bytes = {speech_id: speech_wav.stat().st_size, tones_id: tones_wav.stat().st_size}
    outbox = Outbox(tmp_path / "cdr.sqlite")
    encoder = RecordingEncoder(outbox.store)
    assert encoder.waits_for(speech_wav)  # the upload waits for it
    assert encoder.step() and encoder.job is not None and encoder.job.wav == speech_wav  # oldest first, in the background
    encode_all(encoder)
    for cdr_id, wav in ((speech_id, speech_wav), (tones_id, tones_wav)):
        opus = recording_of(tmp_path, cdr_id)
        assert opus == wav.with_suffix(".opus") and opus.read_bytes()[:4] == b"OggS" and not wav.exists()
        print(f"{cdr_id}: WAV {wav_bytes[cdr_id]} bytes -> Opus {opus.stat().st_size} "
              f"({wav_bytes[cdr_id] / opus.stat().st_size:.1f}x)")
    speech_opus = recording_of(tmp_path, speech_id)
    assert wav_bytes[speech_id] / speech_opus.stat().st_size >= 10  # the goal, on speech
    heard = decoded(recording_of(tmp_path, tones_id), tmp_path / "heard.wav")
    with wave.open(str(heard)) as w:
        assert w.getframerate() == 16000 and abs(w.getnframes() / 16000 - 10.0) < 0.05
    for freq, level in TONES:
        assert abs(band_level_db(heard, freq) - level) <= 1.0, (freq, band_level_db(heard, freq))
    assert band_level_db(heard, 3000.0) < -45  # and nothing the codec invented
    outbox.close()


def test_a_wav_cut_by_power_loss_is_repaired_then_encoded_and_one_opusenc_cannot_read_is_kept_as_wav(tmp_path):
    def cut(path: Path) -> None:  # what pjmedia leaves when the power goes: sizes never written
        write_tones(path, 4.0)
        with open(path, "r+b") as fh:
            fh.seek(4), fh.write(b"\0\0\0\0"), fh.seek(40), fh.write(b"\0\0\0\0")
    cut_id, _ = finished_call(tmp_path, cut, ended_ago=120)
    still_open_id, still_open = finished_call(tmp_path, cut)  # its writer may still close it: not yet
    broken_id, broken = finished_call(tmp_path, lambda p: p.write_bytes(b"RIFF\x10\0\0\0WAVEjunk" + bytes(64)), ended_ago=120)
    outbox = Outbox(tmp_path / "cdr.sqlite")
    encoder = RecordingEncoder(outbox.store)
    encode_all(encoder)
    repaired = recording_of(tmp_path, cut_id)
    assert repaired.suffix == ".opus"
    with wave.open(str(decoded(repaired, tmp_path / "repaired.wav"))) as w:
        assert abs(w.getnframes() / 16000 - 4.0) < 0.05  # all of the audio, not a zero-length file
    assert recording_of(tmp_path, still_open_id) == still_open and still_open.exists()
    assert recording_of(tmp_path, broken_id) == broken and broken.exists()  # kept: it is sent as it is
    assert not encoder.waits_for(broken) and encoder.waits_for(still_open)
    outbox.close()


def test_a_wav_left_beside_its_opus_by_a_crash_goes_at_the_next_start(tmp_path):
    cdr_id, wav = finished_call(tmp_path, lambda p: write_tones(p, 2.0))
    outbox = Outbox(tmp_path / "cdr.sqlite")
    encode_all(RecordingEncoder(outbox.store))
    opus = recording_of(tmp_path, cdr_id)
    write_tones(wav, 2.0)  # as if the power went between the record's update and the WAV's deletion
    RecordingEncoder(outbox.store)
    assert not wav.exists() and opus.exists()
    outbox.close()


def opusenc_processes_for(wav: Path) -> int:
    """How many opusenc processes work on `wav` now (from /proc)."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        # "nice -n 10 opusenc ..." until nice has exec'd it
        count += any(a.endswith(b"opusenc") for a in argv[:4]) and str(wav).encode() in argv
    return count


def test_a_config_applied_mid_encoding_keeps_the_one_opusenc_and_a_switch_to_wav_stops_it_cleanly(tmp_path):
    """The portal's config is applied while the agent encodes a long recording: the same opusenc
    goes on (a second one would write the same file beside it) and the Opus file holds all the call;
    a config saying `recording.format: wav` stops the encoding under way and leaves the WAV whole."""
    from conftest import write_office

    from appliance.cloud.agent import Agent
    from appliance.config import load

    office = write_office(tmp_path, extra="calls: {no_answer_timeout: 30}\nrecording: {format: opus}")
    data_dir = tmp_path / "var"
    first_id, first_wav = finished_call(data_dir, lambda p: write_tones(p, 600.0))  # ten minutes: seconds to encode
    agent = Agent(load(office))
    try:
        encoder = agent.encoder
        assert encoder.step() and encoder.job is not None and opusenc_processes_for(first_wav) == 1
        agent.reload_settings()  # what applying a config from the portal does
        assert agent.encoder is encoder and opusenc_processes_for(first_wav) == 1
        encode_all(agent.encoder)
        assert opusenc_processes_for(first_wav) == 0 and not first_wav.exists()
        with wave.open(str(decoded(recording_of(data_dir, first_id), tmp_path / "first.wav"))) as w:
            assert abs(w.getnframes() / 16000 - 600.0) < 0.05  # the whole call, not two encoders' interleaving

        second_id, second_wav = finished_call(data_dir, lambda p: write_tones(p, 600.0))
        assert agent.encoder.step() and agent.encoder.job.wav == second_wav
        office.write_text(office.read_text().replace("format: opus", "format: wav"))
        agent.reload_settings()
        assert agent.encoder is None and opusenc_processes_for(second_wav) == 0
        assert recording_of(data_dir, second_id) == second_wav and second_wav.exists()
        assert not second_wav.with_suffix(".opus.part").exists() and not second_wav.with_suffix(".opus").exists()
        with wave.open(str(second_wav)) as w:
            assert w.getnframes() == 600 * 16000
    finally:
        agent.outbox.close()


@pytest.fixture
def portal(tmp_path):
    portal = start_portal(tmp_path, "postgres")
    yield portal
    close_portal(portal)


def test_an_opus_recording_reaches_the_portal_plays_in_chromium_and_downloads_as_wav_and_mp3(portal, tmp_path):
    office = enrolled_box(tmp_path, portal, extra=FAST_CLOUD)
    portal.cli("add-user", "--org", "Acme", "--user", "vera", "--password", PASSWORD, "--role", "viewer")
    data_dir = office.parent / "var"
    cdr_id, wav = finished_call(data_dir, lambda p: write_tones(p, 20.0))
    wav_size = wav.stat().st_size
    agent = AgentProcess(office).start()
    try:
        [call] = portal.wait_calls("acme-hq", lambda calls: calls and calls[0].get("recording_sha256"), timeout=60)
    finally:
        agent.kill()
    opus = recording_of(data_dir, cdr_id)
    assert opus.suffix == ".opus" and not wav.exists()
    assert call["recording_sha256"] == hashlib.sha256(opus.read_bytes()).hexdigest()
    print(f"20 s of tones: WAV {wav_size} bytes, sent as Opus {opus.stat().st_size} bytes")

    vera = requests.Session()
    csrf = vera.get(f"{portal.url}/login", timeout=10).text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    vera.post(f"{portal.url}/login", data={"csrf": csrf, "username": "vera", "password": PASSWORD}, timeout=10)
    url = f"{portal.url}/calls/{cdr_id}/recording"
    played = vera.get(url, timeout=10)
    assert played.status_code == 200 and played.headers["content-type"] == "audio/ogg"
    assert played.content == opus.read_bytes()
    seek = vera.get(url, headers={"Range": "bytes=1000-1999"}, timeout=10)
    assert seek.status_code == 206 and seek.content == opus.read_bytes()[1000:2000]

    as_wav = vera.get(url, params={"download": "1", "format": "wav", "name": "Звонок"}, timeout=30)
    assert as_wav.status_code == 200 and as_wav.headers["content-type"] == "audio/wav"
    assert "%D0%97%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA.wav" in as_wav.headers["content-disposition"]
    (tmp_path / "got.wav").write_bytes(as_wav.content)
    with wave.open(str(tmp_path / "got.wav")) as w:  # a true header: the length is the call's
        assert abs(w.getnframes() / 16000 - 20.0) < 0.05
    for freq, level in TONES:
        assert abs(band_level_db(tmp_path / "got.wav", freq) - level) <= 1.0
    as_mp3 = vera.get(url, params={"download": "1", "format": "mp3"}, timeout=30)
    assert as_mp3.status_code == 200 and as_mp3.headers["content-type"] == "audio/mpeg"
    assert as_mp3.headers["content-disposition"].endswith('_internal.mp3"') or "_internal.mp3" in as_mp3.headers["content-disposition"]
    (tmp_path / "got.mp3").write_bytes(as_mp3.content)
    subprocess.run(["sox", str(tmp_path / "got.mp3"), "-r", "16000", str(tmp_path / "mp3.wav")], check=True)
    assert abs(band_level_db(tmp_path / "mp3.wav", 1000.0) - (-12.0)) <= 1.5
    as_opus = vera.get(url, params={"download": "1"}, timeout=10)  # as recorded
    assert as_opus.content == opus.read_bytes() and "_internal.opus" in as_opus.headers["content-disposition"]
    assert vera.get(url, params={"format": "flac"}, timeout=10).status_code == 400

    from playwright.sync_api import sync_playwright
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_context(locale="en-GB").new_page()
            page.goto(f"{portal.url}/login")
            page.get_by_label("User name").fill("vera")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/calls")
            audio = page.locator(f'tr[data-call-id="{cdr_id}"] audio')
            audio.evaluate("a => { window.played = new Promise(ok => a.addEventListener('playing', () => ok(true))); a.play(); }")
            assert page.evaluate("window.played") is True
            assert audio.evaluate("a => a.duration") == pytest.approx(20.0, abs=0.1)
        finally:
            browser.close()
