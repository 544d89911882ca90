"""Test phones: real pjsua2 user agents that register through Kamailio and make/take calls.

One pjsua2 Endpoint serves every phone of the test process (pjsua2 allows one per process);
each phone is an Account with its own credentials. Each phone plays its own tone into every call
and records what it hears, so a test can tell by audio who is connected to whom.
All pjsua2 work happens on the test's thread: `PhoneLab.wait_for` polls the library.
"""
from __future__ import annotations

import os
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pjsua2 as pj

SAMPLE_RATE = 16000


def write_tone(path: Path, freq: float, seconds: float = 2.0, amplitude: float = 0.3) -> Path:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    samples = (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.tobytes())
    return path


@dataclass
class CallEvent:
    state: int
    code: int
    at: float


class TestCall(pj.Call):
    def __init__(self, phone: "Phone", call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(phone, call_id)
        self.phone = phone
        self.events: list[CallEvent] = []
        self.recorder: pj.AudioMediaRecorder | None = None
        self.record_path: Path | None = None
        self.media_active = False
        self.transfer_codes: list[int] = []  # NOTIFY outcomes of a REFER this phone sent
        self.digits_heard = ""  # DTMF the other side sent (RFC 2833 or INFO)

    @property
    def state(self) -> int:
        return self.events[-1].state if self.events else pj.PJSIP_INV_STATE_NULL

    @property
    def last_code(self) -> int:
        return self.events[-1].code if self.events else 0

    def saw(self, state: int) -> bool:
        return any(e.state == state for e in self.events)

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        self.events.append(CallEvent(info.state, info.lastStatusCode, time.monotonic()))
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.recorder = None  # closes the WAV

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(index)
                self.phone.player.startTransmit(audio)
                if self.recorder is None and self.phone.lab.record:
                    self.record_path = self.phone.lab.tmp / f"heard-{self.phone.number}-{len(self.phone.lab.recordings)}.wav"
                    self.phone.lab.recordings.append(self.record_path)
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(str(self.record_path))
                if self.recorder is not None:
                    audio.startTransmit(self.recorder)
                self.media_active = True

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.digits_heard += prm.digit

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        self.transfer_codes.append(prm.statusCode)

    def stop_recording(self) -> None:
        self.recorder = None

    def record_phase(self, name: str) -> Path:
        """Starts a fresh WAV of what this phone hears from now on (closing the previous one), so
        a test can tell who was heard in each phase of a call."""
        path = self.phone.lab.tmp / f"heard-{self.phone.number}-{name}-{len(self.phone.lab.recordings)}.wav"
        self.phone.lab.recordings.append(path)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(str(path))
        info = self.getInfo()  # kept: its media vector dies with it
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.getAudioMedia(index).startTransmit(recorder)
        self.recorder, self.record_path = recorder, path
        return path

    def send_info_dtmf(self, digits: str) -> None:
        """DTMF as SIP INFO (application/dtmf-relay), as some phones are set up to send it."""
        for digit in digits:  # one key press at a time, as a person dials
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            prm.digits = digit
            self.sendDtmf(prm)
            self.phone.lab.poll(0.2)

    def hangup_now(self) -> None:
        try:
            self.hangup(pj.CallOpParam())
        except pj.Error:
            pass


class Phone(pj.Account):
    """A desk phone. `answer`: 'auto' (after answer_delay), 'never' (rings), or a SIP code to reject with."""

    def __init__(self, lab: "PhoneLab", number: str, password: str, tone_hz: float):
        super().__init__()
        self.lab = lab
        self.number = number
        self.password = password
        self.tone_hz = tone_hz
        self.answer: str | int = "auto"
        self.answer_delay = 0.0
        self.calls: list[TestCall] = []
        self.reg_code = 0
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(str(write_tone(lab.tmp / f"tone-{number}.wav", tone_hz)))  # loops
        self.pending_answers: list[tuple[float, TestCall]] = []

    def register(self, host: str, port: int, password: str | None = None, tls: bool = False) -> None:
        """tls: register and call over SIP/TLS to `port` (the box's TLS port), with SRTP audio
        only (RTP/SAVP, SDES keys, which pjsua sends only over a secure transport)."""
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{self.number}@{host}"
        transport = ";transport=tls" if tls else ""
        cfg.regConfig.registrarUri = f"sip:{host}:{port}{transport}"
        cfg.regConfig.timeoutSec = 300
        cfg.regConfig.retryIntervalSec = 0  # a failed registration stays failed: tests look at it
        cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", self.number, 0, password or self.password))
        cfg.sipConfig.proxies.append(f"sip:{host}:{port}{transport};lr")
        if tls:
            cfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
            cfg.mediaConfig.srtpSecureSignaling = 1
        cfg.mediaConfig.transportConfig.port = 0
        cfg.natConfig.sdpNatRewriteUse = 0
        self.create(cfg)

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.reg_code = prm.code

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = TestCall(self, prm.callId)
        self.calls.append(call)
        answer = pj.CallOpParam()
        if isinstance(self.answer, int):
            answer.statusCode = self.answer
            call.hangup(answer)
            return
        answer.statusCode = 180
        call.answer(answer)
        if self.answer == "auto":
            self.pending_answers.append((time.monotonic() + self.answer_delay, call))

    def dial(self, number: str) -> TestCall:
        call = TestCall(self)
        self.calls.append(call)
        prm = pj.CallOpParam(True)
        prm.opt.videoCount = 0
        try:
            call.makeCall(f"sip:{number}@{self.lab.host}:{self.lab.port}", prm)
        except pj.Error as exc:
            raise AssertionError(f"{self.number} cannot dial {number}: {exc.info()}") from None
        return call

    def tick(self) -> None:
        now = time.monotonic()
        for due, call in list(self.pending_answers):
            if now >= due:
                self.pending_answers.remove((due, call))
                if call.state not in (pj.PJSIP_INV_STATE_DISCONNECTED,):
                    prm = pj.CallOpParam()
                    prm.statusCode = 200
                    try:
                        call.answer(prm)
                    except pj.Error:
                        pass

    @property
    def last_call(self) -> TestCall:
        return self.calls[-1]


@dataclass
class PhoneLab:
    """The test process's pjsua2 library and its phones."""
    tmp: Path
    ep: pj.Endpoint = field(default_factory=pj.Endpoint)
    phones: list[Phone] = field(default_factory=list)
    recordings: list[Path] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 5060
    max_calls: int = 128  # our PJSIP build: no 4-leg cap (scripts/pjsip/config_site.h)
    record: bool = True  # each phone records what it hears (off for load benchmarks)
    clock_rate: int = SAMPLE_RATE  # the load benchmark's G.711 phones mix at 8000: no resampling
    tx_drop_pct: int = 0  # PJSIP's own loss simulator: this share of every phone's RTP packets is not sent

    def start(self) -> None:
        self.ep.libCreate()
        ec = pj.EpConfig()
        ec.uaConfig.threadCnt = 0
        ec.uaConfig.mainThreadOnly = True
        ec.uaConfig.maxCalls = self.max_calls
        ec.medConfig.maxMediaPorts = self.max_calls * 2 + 16
        ec.uaConfig.userAgent = "edgepbx-test-phone"
        ec.logConfig.level = 1
        ec.logConfig.consoleLevel = int(os.environ.get("PHONE_LOG", "1"))
        ec.logConfig.level = ec.logConfig.consoleLevel
        ec.logConfig.msgLogging = ec.logConfig.consoleLevel >= 4
        ec.medConfig.clockRate = self.clock_rate
        ec.medConfig.sndClockRate = self.clock_rate
        ec.medConfig.noVad = True
        ec.medConfig.ecTailLen = 0
        # PJSIP 2.17 test phones' adaptive jitter buffers grew to 500 ms (230 frames discarded)
        # while a test opened and closed their recorders, though the feature server kept sending
        # 50 packets/s: bound them, so "who hears whom" is judged on the audio of that moment.
        ec.medConfig.jbMax = 200
        ec.medConfig.quality = 2  # cheap resampling (libsamplerate SINC_FASTEST), as the feature server
        ec.medConfig.txDropPct = self.tx_drop_pct
        self.ep.libInit(ec)
        self.ep.audDevManager().setNullDev()
        tc = pj.TransportConfig()
        tc.port = 0
        tc.boundAddress = self.host
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        tls = pj.TransportConfig()  # for phones on TLS (a client of the box's TLS port)
        tls.port = 0
        tls.boundAddress = self.host
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls)
        self.ep.libStart()

    def stop(self) -> None:
        self.release_phones()
        # No libDestroy: pjsua2 proxies still referenced (e.g. by a failed test's traceback)
        # would be destroyed after it and trip pjsua's assertions. The process exits next.
        self.ep.thisown = False

    def phone(self, number: str, password: str, tone_hz: float, register: bool = True, tls_port: int = 0) -> Phone:
        """tls_port: the phone registers over TLS to that port, with SRTP (Phone.register)."""
        phone = Phone(self, number, password, tone_hz)
        self.phones.append(phone)
        if register:
            phone.register(self.host, tls_port or self.port, tls=bool(tls_port))
            self.wait_for(lambda: phone.reg_code != 0, 5, f"registration of {number}")
        return phone

    def poll(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ep.libHandleEvents(10)
            for phone in self.phones:
                phone.tick()

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return
            self.poll(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def release_phones(self) -> None:
        """Ends every call and unregisters every phone: what each test leaves behind."""
        self.ep.hangupAllCalls()
        self.poll(0.3)
        for phone in self.phones:
            phone.calls.clear()
            phone.player = None
            try:
                phone.shutdown()
            except pj.Error:
                pass
        self.phones.clear()
        self.poll(0.2)

    def hang_up_everything(self) -> None:
        self.ep.hangupAllCalls()
        self.wait_for(lambda: all(c.state in (pj.PJSIP_INV_STATE_DISCONNECTED, pj.PJSIP_INV_STATE_NULL)
                                  for p in self.phones for c in p.calls), 5, "all calls to end")
        for phone in self.phones:
            phone.calls.clear()
            phone.answer, phone.answer_delay = "auto", 0.0


def talk(lab: PhoneLab, caller: Phone, callee: Phone, timeout: float = 5.0) -> tuple[TestCall, TestCall]:
    """`caller` calls `callee` (answering automatically) and both calls are up: (caller's, callee's)."""
    call = caller.dial(callee.number)
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED and callee.calls
                 and callee.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, timeout,
                 f"{caller.number} and {callee.number} to talk")
    return call, callee.last_call


def background_calls(lab: PhoneLab, caller: Phone, callee: Phone, count: int, answer: str = "auto") -> list[TestCall]:
    """`count` calls from `caller` to `callee`, answered (or left ringing with answer='never'): the
    load a test runs its own call beside, through the same appliance."""
    callee.answer = answer
    calls = [caller.dial(callee.number) for _ in range(count)]
    wanted = pj.PJSIP_INV_STATE_CONFIRMED if answer == "auto" else pj.PJSIP_INV_STATE_EARLY
    lab.wait_for(lambda: all(c.saw(wanted) for c in calls), 20,
                 f"{count} background calls to be {'up' if answer == 'auto' else 'ringing'}")
    return calls
