"""A call leg on pjsua2: one SIP dialog, whose events go to the call that owns it.

All callbacks arrive on the feature server's single library thread (mainThreadOnly)."""
from __future__ import annotations

import logging
from typing import Callable

import pjsua2 as pj

from ..model import CALLING, CONFIRMED, CONNECTING, DISCONNECTED, EARLY, CallKind, DialError, LegState, Target
from ..quality import LegSample

log = logging.getLogger("edgepbx.featureserver")

STATES = {pj.PJSIP_INV_STATE_CALLING: CALLING, pj.PJSIP_INV_STATE_INCOMING: CALLING,
          pj.PJSIP_INV_STATE_EARLY: EARLY, pj.PJSIP_INV_STATE_CONNECTING: CONNECTING,
          pj.PJSIP_INV_STATE_CONFIRMED: CONFIRMED, pj.PJSIP_INV_STATE_DISCONNECTED: DISCONNECTED}
NOTIFY_ANSWER_WAIT = 2.0  # seconds a transferring phone has to answer the outcome NOTIFY


class PjLeg(pj.Call):
    def __init__(self, account: pj.Account, owner: CallKind, role: str, call_id: int = pj.PJSUA_INVALID_ID, *,
                 number: str = "", office: bool = False, later: Callable[[float, Callable[[], None]], None]):
        super().__init__(account, call_id)
        self.owner = owner
        self.role = role
        self.number = number
        self.office = office
        self.disconnected = False
        self.target: Target | None = None
        self.later = later
        self.release_after_notify = False  # hang up once the phone has answered our NOTIFY

    # -- what the calls do with a leg -------------------------------------------------------

    def dial(self, target: Target) -> None:
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        prm.txOption.localUri = target.from_uri
        self.target = target
        try:
            self.makeCall(target.uri, prm)
        except pj.Error as exc:
            raise DialError(exc.info()) from None

    def answer(self, code: int) -> str | None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        try:
            super().answer(prm)
            return None
        except pj.Error as exc:
            return exc.info()

    def hangup(self, code: int = 0) -> None:
        prm = pj.CallOpParam()
        if code:
            prm.statusCode = code
        try:
            super().hangup(prm)
        except pj.Error:
            pass

    def sip_call_id(self) -> str:
        try:
            return self.getInfo().callIdString
        except pj.Error:
            return ""

    def stream_sample(self) -> LegSample | None:
        """The audio stream's figures now (PJSIP's stream and RTCP statistics), or None when the
        leg has no media (not answered, or already gone)."""
        try:
            info = self.getInfo()
            index = next((i for i, m in enumerate(info.media) if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status in (
                pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD)), None)
            if index is None:
                return None
            rtcp = self.getStreamStat(index).rtcp
            codec = self.getStreamInfo(index).codecName
        except pj.Error:
            return None
        rx, tx = rtcp.rxStat, rtcp.txStat
        reported = tx.updateCount > 0  # the party has sent a receiver report
        return LegSample(codec=codec, received=rx.pkt, lost=rx.loss, jitter_mean_ms=rx.jitterUsec.mean / 1000,
                         jitter_max_ms=rx.jitterUsec.max / 1000,
                         rtt_ms=rtcp.rttUsec.mean / 1000 if rtcp.rttUsec.n else None, sent=tx.pkt,
                         reported_lost=tx.loss if reported else None,
                         reported_jitter_ms=tx.jitterUsec.mean / 1000 if reported else None)

    def audio(self) -> pj.AudioMedia | None:
        try:
            info = self.getInfo()
        except pj.Error:
            return None
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in (
                    pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                return self.getAudioMedia(index)
        return None

    def has_audio(self) -> bool:
        return self.audio() is not None

    def held_by_remote(self) -> bool:
        """The phone on this leg put the call on hold (re-INVITE with sendonly or inactive)."""
        try:
            info = self.getInfo()
        except pj.Error:
            return False
        return any(m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD for m in info.media)

    def send_dtmf(self, digit: str) -> None:
        """Passes a key press on to this party (an IVR they called, say): RFC 2833 when the leg
        negotiated telephone-event, else SIP INFO. RFC 2833 events do not travel in the bridged audio."""
        for method in (pj.PJSUA_DTMF_METHOD_RFC2833, pj.PJSUA_DTMF_METHOD_SIP_INFO):
            prm = pj.CallSendDtmfParam()
            prm.method, prm.digits = method, digit
            try:
                self.sendDtmf(prm)
                return
            except pj.Error:
                continue
        log.warning("cannot pass DTMF %r on", digit)

    def send_transfer_outcome(self, code: int, reason: str, cseq: str = "") -> None:
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
            self.sendRequest(prm)
        except pj.Error as exc:
            log.warning("cannot send the transfer outcome NOTIFY: %s", exc.info())

    def release_after_outcome(self) -> None:
        """Hangs the transferring phone up when it has answered the outcome NOTIFY, or in 2 s:
        Kamailio's UDP workers run in parallel, and a BYE sent right behind the NOTIFY could
        overtake it, so the phone would refuse the NOTIFY and show the transfer as failed."""
        self.release_after_notify = True
        self.later(NOTIFY_ANSWER_WAIT, lambda: self.hangup() if self.release_after_notify else None)

    # -- pjsua2's callbacks ---------------------------------------------------------------

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            info = self.getInfo()
        except pj.Error:
            return
        state = STATES.get(info.state, CALLING)
        if state == DISCONNECTED:
            self.disconnected = True
        self.owner.on_leg_state(self, LegState(state, info.lastStatusCode, info.callIdString, info.remoteUri))

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.owner.on_media()

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        if not self.release_after_notify or prm.e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = prm.e.body.tsxState.tsx
        if tsx.method == "NOTIFY" and tsx.role == pj.PJSIP_ROLE_UAC and tsx.statusCode >= 200:
            self.release_after_notify = False
            self.hangup()

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:  # RFC 2833 and SIP INFO alike
        self.owner.on_dtmf(self, prm.digit)


class PjLegs:
    """Makes legs for the calls: incoming ones on the default account (the INVITE the edge
    relayed), outgoing ones on the account their target names."""

    def __init__(self, default_account: pj.Account, later: Callable[[float, Callable[[], None]], None]):
        self.default_account = default_account
        self.later = later

    def incoming(self, leg_id: int, owner: CallKind, role: str, number: str, office: bool = False) -> PjLeg:
        return PjLeg(self.default_account, owner, role, leg_id, number=number, office=office, later=self.later)

    def outgoing(self, account: object, owner: CallKind, role: str, number: str, office: bool = False) -> PjLeg:
        return PjLeg(account, owner, role, number=number, office=office, later=self.later)
