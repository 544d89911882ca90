"""Which extensions are ringing, and in which feature-server worker: the board call pickup reads.

Each worker writes its own rows (a call starts ringing, stops ringing); Kamailio's routing reads
the board to send a pickup INVITE to the worker that holds the oldest ringing call of the
picker's group (kemi_router.pickup_worker). SQLite in WAL mode, one short statement each time.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA = """CREATE TABLE IF NOT EXISTS ringing (cdr_id TEXT NOT NULL, extension TEXT NOT NULL, worker INTEGER NOT NULL,
started REAL NOT NULL, PRIMARY KEY (cdr_id, extension))"""


def board_path(data_dir: Path) -> Path:
    return data_dir / "ringing.sqlite"


def create_board(data_dir: Path) -> None:
    """Creates the board (WAL mode) once, before the workers start and open it together."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(board_path(data_dir)), timeout=5.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    db.close()


class RingingBoard:
    def __init__(self, data_dir: Path, worker: int):
        self.worker = worker
        self.db = sqlite3.connect(str(board_path(data_dir)), timeout=5.0, isolation_level=None)
        self.db.execute(SCHEMA)
        self.db.execute("DELETE FROM ringing WHERE worker=?", (worker,))  # left by a crash

    def ringing(self, cdr_id: str, extensions: list[str]) -> None:
        try:
            self.db.executemany("INSERT OR REPLACE INTO ringing VALUES (?,?,?,?)",
                                [(cdr_id, e, self.worker, time.time()) for e in extensions])
        except sqlite3.Error:
            pass  # pickup of this call will not work; the call itself goes on

    def stopped(self, cdr_id: str) -> None:
        try:
            self.db.execute("DELETE FROM ringing WHERE cdr_id=?", (cdr_id,))
        except sqlite3.Error:
            pass
