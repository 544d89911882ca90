"""Which office phones are ringing, for which call: the board call pickup reads.

The feature server is one process, so the board lives in its memory: each call says when a phone
starts and stops ringing for it (with the Call-ID of the ringing leg, which a phone's BLF key
names in an INVITE with Replaces), and a pickup looks up the oldest call ringing on one of the
phones it may take calls from.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Ring:
    cdr_id: str
    extension: str
    started: float
    sip_call_id: str = ""


class RingingBoard:
    def __init__(self) -> None:
        self.rings: dict[tuple[str, str], Ring] = {}  # (cdr_id, extension) -> since when

    def ringing(self, cdr_id: str, extensions: list[str], sip_call_ids: dict[str, str] | None = None) -> None:
        """`sip_call_ids`: extension -> Call-ID of the leg ringing it, once it is known."""
        ids = sip_call_ids or {}
        for extension in extensions:
            ring = self.rings.get((cdr_id, extension))
            if ring is None:
                self.rings[(cdr_id, extension)] = Ring(cdr_id, extension, time.monotonic(), ids.get(extension, ""))
            elif extension in ids:
                ring.sip_call_id = ids[extension]

    def stopped(self, cdr_id: str) -> None:
        for key in [key for key in self.rings if key[0] == cdr_id]:
            del self.rings[key]

    def oldest_ringing(self, extensions: set[str]) -> str | None:
        """The call ringing longest on any of `extensions` (its CDR id), or None."""
        rings = [ring for ring in self.rings.values() if ring.extension in extensions]
        return min(rings, key=lambda ring: ring.started).cdr_id if rings else None

    def by_sip_call_id(self, sip_call_id: str) -> str | None:
        """The call whose ringing leg has this Call-ID (a BLF key's Replaces), or None."""
        return next((ring.cdr_id for ring in self.rings.values() if ring.sip_call_id == sip_call_id), None)
