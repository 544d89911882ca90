"""The live calls of the feature server: what the timer loop ticks, what pickup and REFER look
calls up in, what the concurrency limits count, and when a call's pjsua2 objects may go."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

from .model import CallKind, Leg

ENDED_LEGS_KEPT = 2000  # a phone's report of a call comes seconds after it ends; a busy box ends ~5 a minute


class CallTable:
    def __init__(self) -> None:
        self.calls: dict[int, CallKind] = {}  # keyed by id(call); calls keep their legs alive
        self.retired: list[object] = []        # ended calls (and refused legs) freed on the next loop turn
        # SIP Call-ID -> (CDR id, side, extension) of the answered calls that ended last: where a
        # phone's own report of a call (RTCP-XR, after its BYE) belongs
        self.ended_legs: OrderedDict[str, tuple[str, str, str]] = OrderedDict()

    def add(self, call: CallKind) -> None:
        self.calls[id(call)] = call

    def __iter__(self) -> Iterator[CallKind]:
        return iter(list(self.calls.values()))

    def retire_if_done(self, call: CallKind) -> None:
        """An ended call whose legs are all gone leaves the table; its objects die next loop turn,
        outside the pjsua2 callback that reported the last leg's end."""
        if call.state == "ended" and call.legs_gone() and self.calls.pop(id(call), None) is not None:
            self.retired.append(call)

    def retire_object(self, thing: object) -> None:
        self.retired.append(thing)

    def free_retired(self) -> None:
        self.retired.clear()

    def in_progress(self) -> int:
        return sum(call.state != "ended" for call in self.calls.values())

    def by_cdr_id(self, cdr_id: str | None) -> CallKind | None:
        return next((call for call in self.calls.values() if cdr_id and call.cdr_id == cdr_id), None)

    def party(self, sip_call_id: str) -> tuple[CallKind, Leg] | None:
        """(call, leg) of the answered call whose leg has this SIP Call-ID, or None."""
        for call in self.calls.values():
            for leg in call.parties() or ():
                if leg.sip_call_id() == sip_call_id:
                    return call, leg
        return None

    def note_ended(self, cdr_id: str, legs: dict[str, Leg]) -> None:
        for side, leg in legs.items():
            if leg.sip_call_id():
                self.ended_legs[leg.sip_call_id()] = (cdr_id, side, leg.number)
        while len(self.ended_legs) > ENDED_LEGS_KEPT:
            self.ended_legs.popitem(last=False)

    def calls_out(self, except_call: object = None) -> list[CallKind]:
        """Calls up with a leg out over a trunk (what the toll-fraud limits count)."""
        return [call for call in self.calls.values()
                if call.direction_out and call.state != "ended" and call is not except_call]

    def clear(self) -> None:
        self.calls.clear()
        self.retired.clear()
