"""The agent's side of the outbox the CDR store fills (appliance/cdr.py): what is pending, in
the order it happened, and acknowledging exactly what was sent."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..cdr import COLUMNS, CdrStore, as_record, now


@dataclass
class Entry:
    seq: int
    version: int
    ref: str
    attempts: int


class Outbox:
    def __init__(self, cdr_db: Path):
        self.store = CdrStore(cdr_db)  # creates or migrates the tables if the feature server has not yet
        self.db = sqlite3.connect(str(cdr_db), timeout=10.0, isolation_level=None)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()
        self.store.close()

    def pending_cdrs(self, limit: int) -> list[tuple[Entry, dict]]:
        rows = self.db.execute(
            f"SELECT o.seq, o.version, o.ref, o.attempts, {', '.join('c.' + c for c in COLUMNS)} "
            "FROM outbox o JOIN cdr c ON c.id = o.ref WHERE o.kind = 'cdr' ORDER BY o.seq LIMIT ?", (limit,)).fetchall()
        return [(Entry(r["seq"], r["version"], r["ref"], r["attempts"]), as_record(r)) for r in rows]

    def pending_recordings(self, limit: int = 20) -> list[tuple[Entry, dict]]:
        rows = self.db.execute(
            "SELECT o.seq, o.version, o.ref, o.attempts, c.recording, c.ended_at FROM outbox o JOIN cdr c ON c.id = o.ref "
            "WHERE o.kind = 'recording' ORDER BY o.seq LIMIT ?", (limit,)).fetchall()
        return [(Entry(r["seq"], r["version"], r["ref"], r["attempts"]),
                 {"recording": r["recording"], "ended_at": r["ended_at"]}) for r in rows]

    def ack(self, entries: list[Entry]) -> None:
        """Removes what was sent, unless it changed meanwhile (then its newer version goes next)."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("DELETE FROM outbox WHERE seq = ? AND version = ?", [(e.seq, e.version) for e in entries])
        self.db.execute("COMMIT")

    def recording_synced(self, entry: Entry, sha256: str) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("UPDATE cdr SET recording_sha256 = ?, recording_synced_at = ? WHERE id = ?",
                        (sha256, now(), entry.ref))
        self.db.execute("DELETE FROM outbox WHERE seq = ?", (entry.seq,))
        self.db.execute("COMMIT")

    def failed(self, entry: Entry, error: str) -> None:
        self.db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error[:500], entry.seq))

    def set_aside(self, entry: Entry, kind: str, error: str) -> None:
        """Moves an entry the portal will never accept out of the queue (kept for `edgepbx status`)."""
        self.db.execute("UPDATE OR REPLACE outbox SET kind = ?, last_error = ?, attempts = attempts + 1 WHERE seq = ?",
                        (kind, error[:500], entry.seq))

    def set_aside_recording_of(self, cdr_id: str, error: str) -> None:
        """The recording of a call whose record the portal refused: it would be refused too (409)."""
        self.db.execute("UPDATE OR REPLACE outbox SET kind = 'recording-rejected', last_error = ? "
                        "WHERE kind = 'recording' AND ref = ?", (error[:500], cdr_id))

    def depth(self) -> dict[str, int]:
        counts = dict(self.db.execute("SELECT kind, count(*) FROM outbox GROUP BY kind").fetchall())
        return {"cdr": counts.get("cdr", 0), "recording": counts.get("recording", 0),
                "rejected": sum(v for k, v in counts.items() if k.endswith("-rejected"))}
