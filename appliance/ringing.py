"""Which extensions are ringing, and in which feature-server worker: the board call pickup reads.
Also which office phones are in a call in which worker (`parties`): Kamailio sends a phone's next
call to the same worker, where a REFER with Replaces can join the two.

Each worker writes its own rows (a call starts ringing, stops ringing); Kamailio's routing reads
the board to send a pickup INVITE to the worker that holds the oldest ringing call of the
picker's group (kemi_router.pickup_worker). SQLite in WAL mode, one short statement each time.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA = """CREATE TABLE IF NOT EXISTS ringing (cdr_id TEXT NOT NULL, extension TEXT NOT NULL, worker INTEGER NOT NULL,
started REAL NOT NULL, sip_call_id TEXT NOT NULL DEFAULT '', PRIMARY KEY (cdr_id, extension));
CREATE TABLE IF NOT EXISTS parties (cdr_id TEXT NOT NULL, extension TEXT NOT NULL, worker INTEGER NOT NULL,
started REAL NOT NULL, PRIMARY KEY (cdr_id, extension));"""


def board_path(data_dir: Path) -> Path:
    return data_dir / "ringing.sqlite"


def create_board(data_dir: Path) -> None:
    """Creates the board (WAL mode) once, before the workers start and open it together."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(board_path(data_dir)), timeout=5.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    columns = {row[1] for row in db.execute("PRAGMA table_info(ringing)")}
    if columns and "sip_call_id" not in columns:
        db.execute("DROP TABLE ringing")  # from an older version; its rows only live as long as a call rings
    db.executescript(SCHEMA)
    db.close()


class RingingBoard:
    def __init__(self, data_dir: Path, worker: int):
        self.worker = worker
        self.db = sqlite3.connect(str(board_path(data_dir)), timeout=5.0, isolation_level=None)
        # No fsync per write: the board only describes calls in progress, and a worker clears its
        # rows when it starts, so nothing is lost by a power cut that a call setup should wait for.
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(SCHEMA)
        for table in ("ringing", "parties"):  # rows left by a crash
            self.db.execute(f"DELETE FROM {table} WHERE worker=?", (worker,))

    def ringing(self, cdr_id: str, extensions: list[str], sip_call_ids: dict[str, str] | None = None) -> None:
        """`sip_call_ids`: extension -> Call-ID of the leg ringing it, which a phone's BLF key
        names in an INVITE with Replaces (from the dialog-info it was notified)."""
        ids = sip_call_ids or {}
        try:
            self.db.executemany("INSERT OR REPLACE INTO ringing VALUES (?,?,?,?,?)",
                                [(cdr_id, e, self.worker, time.time(), ids.get(e, "")) for e in extensions])
        except sqlite3.Error:
            pass  # pickup of this call will not work; the call itself goes on

    def stopped(self, cdr_id: str) -> None:
        try:
            self.db.execute("DELETE FROM ringing WHERE cdr_id=?", (cdr_id,))
        except sqlite3.Error:
            pass

    def in_call(self, cdr_id: str, extensions: list[str]) -> None:
        try:
            self.db.executemany("INSERT OR REPLACE INTO parties VALUES (?,?,?,?)",
                                [(cdr_id, e, self.worker, time.time()) for e in extensions if e])
        except sqlite3.Error:
            pass  # the phone's next call may land in another worker; calls go on

    def call_ended(self, cdr_id: str) -> None:
        try:
            self.db.execute("DELETE FROM parties WHERE cdr_id=?", (cdr_id,))
        except sqlite3.Error:
            pass
