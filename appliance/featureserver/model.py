"""The feature server's vocabulary, at the bottom of its imports (standard library only): how a
callee is reached (Target), what a call leg and the media bridge can do (Leg, Media), what the
call kinds have in common (CallKind), and the SIP codes that decide a call's outcome.

The call logic in calls/ is written against these protocols only, so it runs on pjsua2 legs in
the box (sip/) and on fake legs in tests/test_call_logic.py alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from .quality import LegSample

BUSY_CODES = {486, 600, 603}  # the callee (or its user) refused: the caller hears busy
# A trunk answering these (or not at all) is the trunk's problem, not the callee's: try the next one.
FAILOVER_CODES = {0, 408, 480} | set(range(500, 600))

# A leg's SIP state, as the calls see it (pjsua's INVITE session states, by name).
CALLING, EARLY, CONNECTING, CONFIRMED, DISCONNECTED = "calling", "early", "connecting", "confirmed", "disconnected"


def disposition_for_failure(code: int) -> str:
    return "busy" if code in BUSY_CODES else "failed"


class DialError(Exception):
    """A leg could not be placed (no RTP port free, a bad URI): the text says why."""


class RecordingError(Exception):
    """A recording file could not be created (a full disk): the call goes on unrecorded."""


@dataclass
class Target:
    """One way to reach the callee: an extension through the edge, or a number over a trunk.
    `account` is the SIP adapter's own (which credentials and SRTP policy the leg leaves with)."""
    uri: str
    from_uri: str
    account: object
    trunk: str | None = None
    number: str | None = None


@dataclass
class LegState:
    """What a leg reports when its SIP state changes."""
    state: str          # CALLING, EARLY, CONNECTING, CONFIRMED or DISCONNECTED
    code: int           # the last SIP status code (0 before any answer)
    sip_call_id: str
    remote_uri: str


class Leg(Protocol):
    """One SIP dialog of a call. The call that owns it (`owner`, which a transfer may change)
    hears of its events through on_leg_state / on_media / on_dtmf."""
    owner: "CallKind"
    role: str              # caller, callee, picker, target: for logs
    number: str            # the extension or outside number on this side
    office: bool           # an office phone, which may start a transfer
    disconnected: bool
    target: Target | None  # how an outgoing leg was placed

    def dial(self, target: Target) -> None: ...          # raises DialError
    def answer(self, code: int) -> str | None: ...       # pjsua's error text, or None
    def hangup(self, code: int = 0) -> None: ...         # never raises: the leg may be gone
    def sip_call_id(self) -> str: ...                    # "" when unknown
    def has_audio(self) -> bool: ...
    def held_by_remote(self) -> bool: ...
    def send_dtmf(self, digit: str) -> None: ...
    def send_transfer_outcome(self, code: int, reason: str, cseq: str = "") -> None: ...
    def release_after_outcome(self) -> None: ...          # hang up once the phone answered that NOTIFY
    def stream_sample(self) -> LegSample | None: ...      # its audio stream's figures; None without media


class LegFactory(Protocol):
    def incoming(self, leg_id: int, owner: "CallKind", role: str, number: str, office: bool = False) -> Leg: ...
    def outgoing(self, account: object, owner: "CallKind", role: str, number: str, office: bool = False) -> Leg: ...


class Media(Protocol):
    """The conference bridge. Handles it returns play or record for as long as they are held."""

    def bridge(self, one: Leg, other: Leg, recorder: object | None) -> bool: ...
    def unbridge(self, one: Leg, other: Leg) -> None: ...
    def stop_recording(self, leg: Leg, recorder: object) -> None: ...
    def ringback(self, leg: Leg) -> object | None: ...
    def music_on_hold(self, leg: Leg) -> object | None: ...
    def recorder(self, path: str) -> object: ...             # raises RecordingError
    def prompt(self, leg: Leg, path: str, on_end: Callable[[], None]) -> object | None: ...
    def tones(self, leg: Leg, tones: tuple[tuple[int, int], ...]) -> object | None: ...


class TransferKind(Protocol):
    """A transfer in progress inside a call (calls/transfer.py): the call passes its events on."""
    target: Leg | None
    recorder: object | None  # the consultation's own recording

    def on_dtmf(self, leg: Leg, digit: str) -> None: ...
    def on_timer(self) -> None: ...
    def on_media(self) -> None: ...
    def party_left(self, leg: Leg, code: int) -> bool: ...
    def abort(self) -> None: ...


class CallKind(Protocol):
    """What the call table, the timer loop, pickup and transfers may ask of any call."""
    cdr_id: str
    state: str            # ... -> "ended"
    src: str
    created: float
    outbound: bool        # placed by an office phone to an outside number (# may stay the far end's)
    direction_out: bool   # it holds (or is placing) a leg out over a trunk: counted by the toll-fraud limits
    transfer: TransferKind | None
    recorder: object | None
    spent: list[Leg]      # legs winding down that still keep the call in the table

    def on_leg_state(self, leg: Leg, info: LegState) -> None: ...
    def on_media(self) -> None: ...
    def on_dtmf(self, leg: Leg, digit: str) -> None: ...
    def on_timer(self) -> None: ...
    def abort(self) -> None: ...
    def finish(self, disposition: str, code: int | None) -> None: ...
    def parties(self) -> tuple[Leg, Leg] | None: ...
    def legs_gone(self) -> bool: ...
    def pick_up(self, leg_id: int, picker: str) -> bool: ...
