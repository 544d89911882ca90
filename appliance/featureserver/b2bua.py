"""A bridged call: the caller's leg, the callee's leg, the recorder and the CDR.

Each leg is a pjsua2 Call. All callbacks arrive on the feature server's single library thread
(mainThreadOnly), so a CallPair is never touched by two threads. A pair ends exactly once
(`finish`); whatever the legs report after that only tidies up.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pjsua2 as pj

from ..recordings import room_to_record

if TYPE_CHECKING:
    from .server import FeatureServer
    from .transfer import Transfer

log = logging.getLogger(__name__)

BUSY_CODES = {486, 600, 603}  # the callee (or its user) refused: the caller hears busy
# A trunk answering these (or not at all) is the trunk's problem, not the callee's: try the next one.
FAILOVER_CODES = {0, 408, 480} | set(range(500, 600))


@dataclass
class Target:
    """One way to reach the callee: an extension through the edge, or a number over a trunk."""
    uri: str
    from_uri: str
    account: pj.Account
    trunk: str | None = None
    number: str | None = None


def disposition_for_failure(code: int) -> str:
    return "busy" if code in BUSY_CODES else "failed"


def safe_hangup(call: pj.Call, code: int = 0) -> None:
    """Hangs up (or rejects with `code`) a leg that may already be gone."""
    prm = pj.CallOpParam()
    if code:
        prm.statusCode = code
    try:
        call.hangup(prm)
    except pj.Error:
        pass


def answer(call: pj.Call, code: int) -> str | None:
    """Answers an incoming leg with `code` (180, 200...); returns pjsua's error text if it refused."""
    prm = pj.CallOpParam()
    prm.statusCode = code
    try:
        call.answer(prm)
        return None
    except pj.Error as exc:
        return exc.info()


def bridge(one: pj.Call, other: pj.Call, recorder: pj.AudioMediaRecorder | None) -> bool:
    """Connects two legs' audio both ways (and into the recorder) once both are active."""
    a, b = active_audio(one), active_audio(other)
    if a is None or b is None:
        return False
    a.startTransmit(b)
    b.startTransmit(a)
    if recorder is not None:
        a.startTransmit(recorder)
        b.startTransmit(recorder)
    return True


def relay_dtmf(leg: pj.Call, digit: str) -> None:
    """Passes a key press on to the other party (an IVR they called, say): RFC 2833 when that leg
    negotiated telephone-event, else SIP INFO. RFC 2833 events do not travel in the bridged audio."""
    for method in (pj.PJSUA_DTMF_METHOD_RFC2833, pj.PJSUA_DTMF_METHOD_SIP_INFO):
        prm = pj.CallSendDtmfParam()
        prm.method, prm.digits = method, digit
        try:
            leg.sendDtmf(prm)
            return
        except pj.Error:
            continue
    log.warning("cannot pass DTMF %r on", digit)


def unbridge(one: pj.Call, other: pj.Call) -> None:
    """Stops audio between two legs both ways (one is being put on hold)."""
    a, b = active_audio(one), active_audio(other)
    if a is not None and b is not None:
        for src, dst in ((a, b), (b, a)):
            try:
                src.stopTransmit(dst)
            except pj.Error:
                pass


RINGBACK_HZ, RING_ON_MS, RING_OFF_MS = 425, 1000, 4000  # the Russian/European ringback tone


def ringback_to(call: pj.Call) -> pj.ToneGenerator | None:
    """Plays ringback into a leg until the returned generator is dropped; None without audio."""
    audio = active_audio(call)
    if audio is None:
        return None
    tone = pj.ToneDesc()
    tone.freq1, tone.freq2, tone.on_msec, tone.off_msec = RINGBACK_HZ, 0, RING_ON_MS, RING_OFF_MS
    tone.volume = 0
    tones = pj.ToneDescVector()
    tones.append(tone)
    generator = pj.ToneGenerator()
    generator.createToneGenerator()
    generator.play(tones, True)
    generator.startTransmit(audio)
    return generator


def active_audio(call: pj.Call) -> pj.AudioMedia | None:
    try:
        info = call.getInfo()
    except pj.Error:
        return None
    for index, media in enumerate(info.media):
        if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in (
                pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
            return call.getAudioMedia(index)
    return None


class MusicOnHold(pj.AudioMediaPlayer):
    """The configured WAV (features.music_on_hold), looped into a leg for as long as it lives."""

    def __init__(self, path, leg: pj.Call):
        super().__init__()
        self.leg = leg
        audio = active_audio(leg)
        if audio is not None:
            self.createPlayer(str(path))  # loops by default
            self.startTransmit(audio)


def music_on_hold(server: "FeatureServer", leg: pj.Call) -> MusicOnHold | None:
    try:
        return MusicOnHold(server.cfg.features.music_on_hold, leg)
    except pj.Error as exc:
        log.error("cannot play music on hold %s: %s", server.cfg.features.music_on_hold, exc.info())
        return None


def held_by_remote(call: pj.Call) -> bool:
    """The phone on this leg put the call on hold (re-INVITE with sendonly or inactive)."""
    try:
        info = call.getInfo()
    except pj.Error:
        return False
    return any(m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD for m in info.media)


def hold_music_for(call, one: pj.Call, other: pj.Call) -> MusicOnHold | None:
    """The call's music on hold as it should now be: playing to the party whose other side holds."""
    held = other if held_by_remote(one) else one if held_by_remote(other) else None
    if held is None:
        return None
    if call.hold_music is not None and call.hold_music.leg is held:
        return call.hold_music
    return music_on_hold(call.server, held)


def release_after_outcome(server: "FeatureServer", leg: "Leg") -> None:
    """Hangs the transferring phone up when it has answered the outcome NOTIFY, or in 2 s."""
    leg.release_after_notify = True
    server.later(2.0, lambda: safe_hangup(leg) if leg.release_after_notify else None)


def send_transfer_outcome(leg: pj.Call, code: int, reason: str, cseq: str = "") -> None:
    """Ends the REFER's implicit subscription (RFC 3515) with NOTIFY carrying the outcome."""
    prm = pj.CallSendRequestParam()
    prm.method = "NOTIFY"
    for name, value in (("Event", f"refer;id={cseq}" if cseq else "refer"),
                        ("Subscription-State", "terminated;reason=noresource")):
        header = pj.SipHeader()
        header.hName, header.hValue = name, value
        prm.txOption.headers.append(header)
    prm.txOption.contentType = "message/sipfrag;version=2.0"
    prm.txOption.msgBody = f"SIP/2.0 {code} {reason}\r\n"
    try:
        leg.sendRequest(prm)
    except pj.Error as exc:
        log.warning("cannot send the transfer outcome NOTIFY: %s", exc.info())


class Leg(pj.Call):
    """One side of a bridged call; forwards its events to the call that owns it (`pair`, which a
    transfer may change). `number` is the extension or outside number on this side; `office` says
    it is an office phone, which may start a transfer."""

    def __init__(self, account: pj.Account, pair, role: str, call_id: int = pj.PJSUA_INVALID_ID, *,
                 number: str = "", office: bool = False):
        super().__init__(account, call_id)
        self.pair = pair
        self.role = role
        self.number = number
        self.office = office
        self.disconnected = False
        self.release_after_notify = False  # hang up once the phone has answered our NOTIFY

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            info = self.getInfo()
        except pj.Error:
            return
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
        self.pair.on_leg_state(self, info)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.pair.on_media()

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        """Hangs up a transferring phone only after it has answered the NOTIFY with the transfer's
        outcome: a BYE relayed ahead of it (Kamailio's workers run in parallel) would make the
        phone refuse the NOTIFY and show the transfer as failed."""
        if not self.release_after_notify or prm.e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = prm.e.body.tsxState.tsx
        if tsx.method == "NOTIFY" and tsx.role == pj.PJSIP_ROLE_UAC and tsx.statusCode >= 200:
            self.release_after_notify = False
            safe_hangup(self)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:  # RFC 2833 and SIP INFO alike
        self.pair.on_dtmf(self, prm.digit)


class CallPair:
    def __init__(self, server: "FeatureServer", caller_leg_id: int, *, src: str, src_name: str, dst: str,
                 sip_call_id: str, direction: str = "internal", dst_number: str | None = None):
        self.server = server
        self.src, self.src_name, self.dst = src, src_name, dst
        self._setup(server, src, src_name, dst, direction == "outbound")
        self.caller = Leg(server.account, self, "caller", caller_leg_id, number=src, office=True)
        self.cdr_id = server.cdr_start(direction=direction, src=src, src_name=src_name, dst=dst,
                                       sip_call_id=sip_call_id, dst_number=dst_number)

    def _setup(self, server: "FeatureServer", src: str, src_name: str, dst: str, direction_out: bool) -> None:
        self.server = server
        self.src, self.src_name, self.dst = src, src_name, dst
        self.callee: Leg | None = None
        self.spent: list[Leg] = []  # callee legs of trunks that failed over; kept until they are gone
        self.direction_out = direction_out  # a call out over a trunk rings no office phone
        self.targets: list[Target] = []
        self.state = "routing"  # routing -> ringing -> answered -> ended
        self.no_answer_deadline: float | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.recording_path: str | None = None
        self.caller_answered = False
        self.ringback: pj.ToneGenerator | None = None
        self.transfer: Transfer | None = None
        self.hold_music: MusicOnHold | None = None  # for one party while the other's phone holds
        self.created = time.monotonic()

    @classmethod
    def adopt(cls, server: "FeatureServer", caller: Leg, callee: Leg, *, cdr_id: str, dst: str, answered: bool,
              recorder: pj.AudioMediaRecorder | None, recording_path: str | None,
              targets: list[Target]) -> "CallPair":
        """A call made of two legs already up (a completed transfer): `caller` is answered,
        `callee` answered or still ringing; the record `cdr_id` is already open."""
        pair = cls.__new__(cls)
        pair._setup(server, caller.number, caller.number, dst, not callee.office)
        pair.caller, pair.callee, pair.cdr_id = caller, callee, cdr_id
        caller.pair = callee.pair = pair
        pair.caller_answered = True
        pair.targets = targets
        pair.recorder, pair.recording_path = recorder, recording_path
        if answered:
            pair.state = "answered"
        else:
            pair.state = "ringing"
            pair.no_answer_deadline = time.monotonic() + server.cfg.no_answer_timeout
            pair.ringback = ringback_to(caller)
        server.pairs[id(pair)] = pair
        pair.connect_media()
        return pair

    # -- call control ---------------------------------------------------------------------

    # Every ending records its outcome first and hangs up after: pjsua2 may report the other
    # leg's disconnection from inside hangup(), and that report must not rewrite the outcome.

    def reject(self, code: int, disposition: str) -> None:
        self.finish(disposition, code)
        safe_hangup(self.caller, code)

    def dial(self, targets: list[Target]) -> None:
        """Places the callee leg on the first target, the next ones being failovers; the caller
        hears ringing once the callee rings."""
        self.targets = list(targets)
        self.no_answer_deadline = time.monotonic() + self.server.cfg.no_answer_timeout
        self.dial_next()

    def dial_next(self) -> None:
        if not self.targets:
            self.reject(503, "failed")
            return
        target = self.targets.pop(0)
        if self.callee is not None:
            self.spent.append(self.callee)
        self.callee = Leg(target.account, self, "callee", number=target.number or self.dst,
                          office=target.trunk is None)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        prm.txOption.localUri = target.from_uri
        if target.trunk:
            self.server.cdr_trunk(self.cdr_id, target.trunk)
        try:
            self.callee.makeCall(target.uri, prm)
        except pj.Error as exc:
            log.error("call %s: cannot dial %s: %s", self.cdr_id, target.uri, exc.info())
            self.callee.disconnected = True
            self.dial_next()

    def on_timer(self) -> None:
        if self.no_answer_deadline is not None and time.monotonic() >= self.no_answer_deadline:
            self.no_answer_deadline = None
            self.on_no_answer_timeout()
        if self.transfer is not None:
            self.transfer.on_timer()

    def on_dtmf(self, leg: Leg, digit: str) -> None:
        """The transfer key from an office phone during an answered call starts a transfer; other
        keys go on to the other party."""
        if self.transfer is not None:
            self.transfer.on_dtmf(leg, digit)
        elif self.state == "answered" and self.callee is not None:
            from .transfer import Transfer  # imports this module
            self.transfer = Transfer.start_if_asked(self, leg, digit, self.caller, self.callee)
            if self.transfer is None:
                relay_dtmf(self.callee if leg is self.caller else self.caller, digit)

    def on_media(self) -> None:
        if self.transfer is not None:
            self.transfer.on_media()
        else:
            self.connect_media()

    def abort(self) -> None:
        """The feature server is stopping: end the call and close its record."""
        self.finish("answered" if self.state == "answered" else "failed", 503)
        for leg in self.owned((self.caller, self.callee)):
            safe_hangup(leg, 503 if leg is self.caller else 0)

    def parties(self) -> tuple[Leg, Leg] | None:
        """The two legs talking (or one on hold), once answered."""
        if self.state == "answered" and self.callee is not None:
            return self.caller, self.callee
        return None

    def hand_off(self) -> None:
        """Ends this call without ending its record: a transfer carries the record (and its
        recording) on in another call with other parties."""
        self.state = "ended"
        self.no_answer_deadline = None
        self.ringback = self.hold_music = self.recorder = None
        self.server.retire_if_done(self)

    def owned(self, legs) -> list[Leg]:
        """The legs still this call's (a transfer hands legs on to another call)."""
        return [leg for leg in legs if leg is not None and leg.pair is self]

    def on_no_answer_timeout(self) -> None:
        log.info("call %s: %s did not answer in %d s", self.cdr_id, self.dst, self.server.cfg.no_answer_timeout)
        self.reject(480, "no_answer")
        if self.callee is not None:
            safe_hangup(self.callee)  # CANCEL towards the phone

    def on_leg_state(self, leg: Leg, info: pj.CallInfo) -> None:
        if leg in self.spent:  # a failed-over trunk leg winding down
            self.server.retire_if_done(self)
            return
        if self.state == "ended" or leg.pair is not self:
            self.server.retire_if_done(self)
            return
        if (self.transfer is not None and info.state == pj.PJSIP_INV_STATE_DISCONNECTED
                and self.transfer.party_left(leg, info.lastStatusCode)):
            return  # the transfer went on without this leg
        if leg is self.caller:
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.finish("answered" if self.state == "answered" else "cancelled", info.lastStatusCode)
                if self.callee is not None:
                    safe_hangup(self.callee)
            return
        # the callee leg
        if info.state == pj.PJSIP_INV_STATE_EARLY and self.state == "routing":
            self.state = "ringing"
            self.answer_caller(180)
            if leg.office:  # now with the ringing leg's Call-ID, for a BLF key's pickup
                self.server.board.ringing(self.cdr_id, [leg.number], {leg.number: info.callIdString})
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.state in ("routing", "ringing"):
            self.state = "answered"
            self.server.board.stopped(self.cdr_id)
            self.no_answer_deadline = None
            self.ringback = None
            self.answer_caller(200)
            if self.recorder is None:
                self.start_recording()
            self.server.cdr_answered(self.cdr_id, self.recording_path)
            self.connect_media()
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            if self.state == "answered":
                self.finish("answered", info.lastStatusCode)
                safe_hangup(self.caller)
            elif self.targets and info.lastStatusCode in FAILOVER_CODES:
                log.warning("call %s: %s answered %d; trying the next trunk", self.cdr_id, info.remoteUri,
                            info.lastStatusCode)
                self.dial_next()
            else:
                code = info.lastStatusCode if info.lastStatusCode >= 300 else 500
                self.reject(code, disposition_for_failure(code))

    def pick_up(self, leg_id: int, picker: str) -> bool:
        """Another phone dialled the pickup code: it takes the caller over, the ringing phone
        gets CANCEL, and the call goes on as one call (one CDR, one recording)."""
        if self.state not in ("routing", "ringing") or self.direction_out:
            return False
        self.state = "answered"
        self.no_answer_deadline = None
        self.targets = []
        self.server.board.stopped(self.cdr_id)
        ringing, self.callee = self.callee, Leg(self.server.account, self, "picker", leg_id, number=picker,
                                                office=True)
        if ringing is not None:
            self.spent.append(ringing)
        error = answer(self.callee, 200)
        if error:
            log.error("call %s: answering the pickup of %s failed: %s", self.cdr_id, picker, error)
        if ringing is not None:
            safe_hangup(ringing)  # CANCEL: the phone stops ringing
        self.answer_caller(200)
        self.start_recording()
        self.server.cdr_answered(self.cdr_id, self.recording_path)
        self.server.cdr_picked_up(self.cdr_id, picker)
        log.info("call %s %s -> %s picked up by %s", self.cdr_id, self.src, self.dst, picker)
        self.connect_media()
        return True

    def answer_caller(self, code: int) -> None:
        if self.caller_answered:
            return  # a transferred caller, answered long ago
        error = answer(self.caller, code)
        if error:
            log.warning("call %s: answering caller with %d failed: %s", self.cdr_id, code, error)
        elif code == 200:
            self.caller_answered = True

    # -- media ----------------------------------------------------------------------------

    def start_recording(self) -> None:
        if not self.server.cfg.recording_enabled or not room_to_record(self.server.cfg):
            return
        path = self.server.new_recording_path(self.cdr_id, self.src, self.dst)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            recorder = pj.AudioMediaRecorder()
            recorder.createRecorder(str(path))
        except (OSError, pj.Error) as exc:
            # A full disk must not drop the call: it goes on unrecorded, and the log says why.
            detail = exc.info() if isinstance(exc, pj.Error) else exc
            log.error("call %s: recording to %s failed, call continues unrecorded: %s", self.cdr_id, path, detail)
            return
        self.recorder = recorder
        self.recording_path = str(path)

    def connect_media(self) -> None:
        """Bridges both legs (and the recorder) once both have active audio; idempotent. While
        one phone holds the call, the other party hears music on hold."""
        if self.state == "answered" and self.callee is not None and self.transfer is None:
            bridge(self.caller, self.callee, self.recorder)
            self.hold_music = hold_music_for(self, self.caller, self.callee)

    # -- end ------------------------------------------------------------------------------

    def finish(self, disposition: str, code: int | None) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.no_answer_deadline = None
        self.ringback = self.hold_music = None
        if self.transfer is not None:
            self.transfer.abort()
        self.recorder = None  # closing the WAV writes its final header
        self.server.board.stopped(self.cdr_id)
        self.server.cdr_ended(self.cdr_id, disposition, code)
        log.info("call %s %s -> %s ended: %s (%s)", self.cdr_id, self.src, self.dst, disposition, code)
        self.server.retire_if_done(self)

    def legs_gone(self) -> bool:
        return all(leg.disconnected for leg in self.owned((self.caller, self.callee, *self.spent)))
