"""Call detail records in SQLite (WAL), written at call start, answer and end.

Writing at start means a crash of the feature server loses no call: on restart every record
still open is closed as `failed` (close_orphans). Ids are UUIDs so the cloud sync can upload
each record exactly once.

Every write also queues the record in the outbox, in the same transaction: the cloud agent
(appliance/cloud) can never miss a change, even across a power cut between the two.
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from .reserve import release_reserve

DIRECTIONS = ("internal", "inbound", "outbound")
SQLITE_FULL = 13  # "database or disk is full"
DISPOSITIONS = ("answered", "no_answer", "busy", "failed", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS cdr (
    id TEXT PRIMARY KEY,
    sip_call_id TEXT,
    started_at TEXT NOT NULL,
    answered_at TEXT,
    ended_at TEXT,
    direction TEXT NOT NULL,
    src TEXT NOT NULL,
    src_name TEXT,
    dst TEXT NOT NULL,
    disposition TEXT,
    sip_code INTEGER,
    duration INTEGER,
    billsec INTEGER,
    recording TEXT,
    worker INTEGER NOT NULL DEFAULT 0,
    dst_number TEXT,
    trunk TEXT,
    picked_up_by TEXT,
    transferred_to TEXT,
    linked_id TEXT,
    answered_by TEXT,
    rang TEXT,
    quality TEXT
);
CREATE INDEX IF NOT EXISTS cdr_started ON cdr(started_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order things happened in, and are sent in
    kind TEXT NOT NULL,                     -- 'cdr' or 'recording'
    ref TEXT NOT NULL,                      -- the CDR id
    version INTEGER NOT NULL DEFAULT 1,     -- bumped by each change, so a send only acks what it read
    queued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (kind, ref)
);
"""
QUEUE = ("INSERT INTO outbox (kind, ref, queued_at) VALUES (?, ?, ?) "
         "ON CONFLICT (kind, ref) DO UPDATE SET version = version + 1")

COLUMNS = ("id", "sip_call_id", "started_at", "answered_at", "ended_at", "direction", "src", "src_name",
           "dst", "dst_number", "trunk", "picked_up_by", "transferred_to", "linked_id", "disposition", "sip_code", "duration", "billsec", "recording",
           "answered_by", "rang", "quality")
# `worker` (kept, always 0 now) numbered the feature-server process of the PyPI wheel's days.
ADDED_COLUMNS = {"worker": "INTEGER NOT NULL DEFAULT 0", "dst_number": "TEXT", "trunk": "TEXT", "picked_up_by": "TEXT",
                 "transferred_to": "TEXT", "linked_id": "TEXT",
                 # the office extension that answered, and those the call rang ("101,102")
                 "answered_by": "TEXT", "rang": "TEXT",
                 # JSON: what each leg measured, with a MOS (featureserver/quality.py)
                 "quality": "TEXT",
                 # set by the cloud agent once the portal acknowledged the recording's hash
                 "recording_sha256": "TEXT", "recording_synced_at": "TEXT",
                 # set when the file left the box (appliance/recordings.prune)
                 "recording_pruned_at": "TEXT"}


def now() -> str:
    """Local time with its UTC offset, millisecond precision (ISO 8601). Local is the site's zone
    (appliance/clock.py); records written before a zone change keep their offset, so times are
    compared and ordered as instants (SQLite's julianday), never as text."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _seconds_between(start: str, end: str) -> int:
    return max(0, round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()))


def open_call_count(path: Path) -> int:
    """Calls whose record is still open (ringing or talking), read without writing: what a config
    change or an update must not cut. No database yet means no calls."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return db.execute("SELECT count(*) FROM cdr WHERE ended_at IS NULL").fetchone()[0]
    finally:
        db.close()


@dataclass
class OrphanedCall:
    id: str
    recording: str | None


class CdrStore:
    """One connection per process; every write is its own short transaction."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: each call event is on the disk when its commit returns, so a power cut never takes a
        # call record back (NORMAL could lose the last commits); a few fsyncs per call cost nothing.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(cdr)")}
        for column, kind in ADDED_COLUMNS.items():  # databases from older versions
            if column not in columns:
                self.db.execute(f"ALTER TABLE cdr ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self.db.close()

    def _change(self, cdr_id: str, sql: str | Callable[[], None], args: tuple = (), recording_done: bool = False) -> None:
        """One transaction: the change (an UPDATE, or a function that reads and writes) and its
        outbox entry (and the recording's, once closed). A full disk gives up the space kept for
        records (appliance/reserve.py) and tries again."""
        try:
            self._transaction(cdr_id, sql, args, recording_done)
        except sqlite3.OperationalError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) != SQLITE_FULL or not release_reserve(self.path.parent):
                raise
            self._transaction(cdr_id, sql, args, recording_done)

    def _transaction(self, cdr_id: str, sql: str | Callable[[], None], args: tuple, recording_done: bool) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if callable(sql):
                sql()
            else:
                self.db.execute(sql, args)
            self.db.execute(QUEUE, ("cdr", cdr_id, now()))
            if recording_done:
                self.db.execute("INSERT INTO outbox (kind, ref, queued_at) SELECT 'recording', id, ? FROM cdr "
                                "WHERE id=? AND recording IS NOT NULL ON CONFLICT (kind, ref) DO NOTHING",
                                (now(), cdr_id))
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def start(self, *, direction: str, src: str, dst: str, src_name: str | None = None,
              sip_call_id: str | None = None, dst_number: str | None = None, linked_id: str | None = None) -> str:
        """`dst` is what was dialled, `dst_number` the normalised number sent out (external calls);
        `linked_id` the record of the call this one was transferred from."""
        assert direction in DIRECTIONS
        cdr_id = str(uuid.uuid4())
        self._change(cdr_id, "INSERT INTO cdr (id, sip_call_id, started_at, direction, src, src_name, dst, dst_number, "
                     "linked_id) VALUES (?,?,?,?,?,?,?,?,?)",
                     (cdr_id, sip_call_id, now(), direction, src, src_name, dst, dst_number, linked_id))
        return cdr_id

    def link(self, cdr_id: str, linked_id: str) -> None:
        self._change(cdr_id, "UPDATE cdr SET linked_id=? WHERE id=?", (linked_id, cdr_id))

    def transferred(self, cdr_id: str, target: str) -> None:
        self._change(cdr_id, "UPDATE cdr SET transferred_to=? WHERE id=?", (target, cdr_id))

    def picked_up(self, cdr_id: str, extension: str) -> None:
        self._change(cdr_id, "UPDATE cdr SET picked_up_by=?, answered_by=? WHERE id=?", (extension, extension, cdr_id))

    def trunk(self, cdr_id: str, name: str) -> None:
        self._change(cdr_id, "UPDATE cdr SET trunk=? WHERE id=?", (name, cdr_id))

    def rang(self, cdr_id: str, extension: str) -> None:
        """An office extension this call rang (a ring group's member, the extension dialled)."""
        self._change(cdr_id, "UPDATE cdr SET rang = CASE WHEN rang IS NULL THEN ?1 "
                     "WHEN instr(',' || rang || ',', ',' || ?1 || ',') > 0 THEN rang ELSE rang || ',' || ?1 END "
                     "WHERE id = ?2", (extension, cdr_id))

    def answered(self, cdr_id: str, recording: str | None, by: str | None = None) -> None:
        """`by`: the office extension that answered (None: a number outside the office did)."""
        self._change(cdr_id, "UPDATE cdr SET answered_at=?, recording=?, answered_by=? WHERE id=? AND ended_at IS NULL",
                     (now(), recording, by, cdr_id))

    def ended(self, cdr_id: str, disposition: str, sip_code: int | None = None, quality: dict | None = None) -> None:
        assert disposition in DISPOSITIONS
        row = self.db.execute("SELECT started_at, answered_at FROM cdr WHERE id=?", (cdr_id,)).fetchone()
        if row is None:
            return
        ended_at = now()
        billsec = _seconds_between(row["answered_at"], ended_at) if row["answered_at"] else 0
        self._change(cdr_id, "UPDATE cdr SET ended_at=?, disposition=?, sip_code=?, duration=?, billsec=?, quality=? "
                     "WHERE id=? AND ended_at IS NULL",
                     (ended_at, disposition, sip_code, _seconds_between(row["started_at"], ended_at), billsec,
                      json.dumps(quality) if quality else None, cdr_id),
                     recording_done=True)

    def close_orphans(self, last_alive: dict[str, str] | None = None) -> list[OrphanedCall]:
        """Closes the records left open by a crash as `failed`; returns them (their WAVs need repair).

        last_alive maps a record id to the last moment it is known to have been alive (e.g. its
        recording's mtime); without it the end is the answer or start time.
        """
        last_alive = last_alive or {}
        orphans = []
        for row in self.db.execute("SELECT id, started_at, answered_at, recording FROM cdr WHERE ended_at IS NULL").fetchall():
            ended_at = last_alive.get(row["id"]) or row["answered_at"] or row["started_at"]
            billsec = _seconds_between(row["answered_at"], ended_at) if row["answered_at"] else 0
            self._change(row["id"], "UPDATE cdr SET ended_at=?, disposition='failed', duration=?, billsec=? WHERE id=?",
                         (ended_at, _seconds_between(row["started_at"], ended_at), billsec, row["id"]),
                         recording_done=True)
            orphans.append(OrphanedCall(row["id"], row["recording"]))
        return orphans

    def outside_usage(self, src: str | None, hour_ago: datetime, midnight: datetime) -> tuple[int, int]:
        """(calls that went to a trunk since `hour_ago`, seconds talked on calls out since
        `midnight`, those still up included) for extension `src`, or for the whole site."""
        who = "AND src = ?" if src is not None else ""
        args = (src,) if src is not None else ()
        rows = self.db.execute(
            f"SELECT started_at, answered_at, billsec, ended_at FROM cdr WHERE direction = 'outbound' "
            f"AND trunk IS NOT NULL {who} AND julianday(started_at) >= julianday(?)", (*args, min(hour_ago, midnight).isoformat())).fetchall()
        moment = datetime.now().astimezone()
        calls = seconds = 0
        for row in rows:
            started = datetime.fromisoformat(row["started_at"])
            calls += started >= hour_ago
            if started >= midnight and row["answered_at"]:
                seconds += row["billsec"] if row["ended_at"] else _seconds_between(row["answered_at"], moment.isoformat())
        return calls, seconds

    def phone_report(self, cdr_id: str, side: str, figures: dict) -> None:
        """Adds what a side's phone reported (featureserver/quality.py PhoneReport) to the record's
        `quality`, read and written in one transaction; the record goes to the portal again."""
        def add() -> None:
            row = self.db.execute("SELECT quality FROM cdr WHERE id=?", (cdr_id,)).fetchone()
            if row is None:
                return
            quality = json.loads(row[0]) if row[0] else {}
            quality.setdefault(side, {}).update(figures)
            self.db.execute("UPDATE cdr SET quality=? WHERE id=?", (json.dumps(quality), cdr_id))
        self._change(cdr_id, add)

    def recording_encoded(self, cdr_id: str, before: str, after: str) -> bool:
        """The call's recording is now `after` (its Opus file, appliance/opus.py); the record goes to
        the portal again with it. False if the record no longer names `before`."""
        self._change(cdr_id, "UPDATE cdr SET recording=? WHERE id=? AND recording=?", (after, cdr_id, before))
        return self.db.execute("SELECT recording FROM cdr WHERE id=?", (cdr_id,)).fetchone()[0] == after

    def open_recordings(self) -> list[tuple[str, str]]:
        """(id, recording path) of records still open: the calls a crash may have cut."""
        return [(r["id"], r["recording"]) for r in
                self.db.execute("SELECT id, recording FROM cdr WHERE ended_at IS NULL AND recording IS NOT NULL")]

    def list(self, limit: int = 100, include_live: bool = False) -> list[dict]:
        where = "" if include_live else "WHERE ended_at IS NOT NULL"
        rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM cdr {where} ORDER BY julianday(started_at) DESC, rowid DESC LIMIT ?",
                               (limit,))
        return [as_record(r) for r in rows]

    def get(self, cdr_id: str) -> dict | None:
        row = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM cdr WHERE id=?", (cdr_id,)).fetchone()
        return as_record(row) if row else None


def as_record(row: sqlite3.Row) -> dict:
    """A CDR as `edgepbx cdr list --json` and the sync carry it: `rang` as a list of extensions."""
    record = {c: row[c] for c in COLUMNS}
    record["rang"] = record["rang"].split(",") if record["rang"] else []
    record["quality"] = json.loads(record["quality"]) if record["quality"] else None
    return record
