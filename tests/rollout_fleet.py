"""A simulated fleet for box software rollouts (issue 23): many boxes in one process, each
speaking the agent's protocol (heartbeats with version, slot, board and the update's state; the
bundle fetched with Range requests and checked against its SHA-256), some set to roll back or to
vanish. The real agent and RAUC are tested on the booted image (test_image.py); this is for
many boxes at once, which no machine here could boot."""
from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field

from fleet_client import Connection

OLD = "0.9.0"
CHUNK = 64 << 10


@dataclass
class SimBox:
    name: str
    conn: Connection
    fails: bool = False  # its new slot fails the self-test: it boots the old one again
    vanishes: bool = False  # it goes to install and never comes back
    version: str = OLD
    slot: str = "A"
    compatible: str = "edgepbx-x86"
    report: dict | None = None  # the update's state, said in the next heartbeat
    rebooting: str | None = None  # the version being installed, until the next round's "reboot"
    gone: bool = False
    offered_in: int | None = None  # the round it was first offered the release
    done_in: int | None = None
    chunk: int = CHUNK  # bytes per Range request (the agent fetches firmware 4 MiB at a time)
    bytes_fetched: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)

    async def _call(self, method: str, path: str, body: bytes = b"", **kw) -> tuple[int, bytes]:
        self.requests += 1
        return await self.conn.request(method, path, body, **kw)

    async def round(self, number: int) -> None:
        """One heartbeat and what its answer asks for. A box that fetched the release says
        "installing" in its next heartbeat, then reboots: into the release, back into the old
        slot (fails), or never (vanishes)."""
        if self.gone:
            return
        status = {"version": self.version, "slot": self.slot, "compatible": self.compatible, "heartbeat_seconds": 60}
        if self.report:
            status["update"] = self.report
        code, data = await self._call("POST", "/api/v1/heartbeat", json.dumps(status).encode())
        if code != 200:
            self.errors.append(f"heartbeat {code}: {data[:200]!r}")
            return
        if self.rebooting is not None:
            self._reboot(number)
            return
        offer = json.loads(data).get("update")
        if offer is None or self.report is not None:
            return
        if self.offered_in is None:
            self.offered_in = number
        if await self._fetch(offer):
            self.report, self.rebooting = {"version": offer["version"], "state": "installing"}, offer["version"]

    def _reboot(self, number: int) -> None:
        if self.vanishes:
            self.gone = True
        elif self.fails:
            self.report = {"version": self.rebooting, "state": "failed",
                           "detail": "slot B failed its self-test; back on slot A"}
        else:
            self.version, self.slot, self.report = self.rebooting, "B" if self.slot == "A" else "A", None
            self.done_in = number
        self.rebooting = None

    async def _fetch(self, offer: dict) -> bool:
        digest, offset = hashlib.sha256(), 0
        while offset < offer["size"]:
            end = min(offset + self.chunk, offer["size"]) - 1
            code, data = await self._call("GET", f"/api/v1/releases/{offer['sha256']}",
                                          headers={"Range": f"bytes={offset}-{end}"})
            if code != 206 or len(data) != end - offset + 1:
                self.errors.append(f"bundle at {offset}: {code}, {len(data)} bytes")
                return False
            digest.update(data)
            offset += len(data)
            self.bytes_fetched += len(data)
        if digest.hexdigest() != offer["sha256"]:
            self.errors.append("bundle's SHA-256 does not match")
            return False
        return True


async def rounds(boxes: list[SimBox], first: int, count: int) -> None:
    """`count` heartbeat rounds of every box at once, numbered from `first` (the connections are
    closed after: each asyncio.run has its own loop)."""
    try:
        for number in range(first, first + count):
            await asyncio.gather(*(box.round(number) for box in boxes))
    finally:
        for box in boxes:
            box.conn.close()
