"""Waking a box that waits: a saved config, a call-back or a phone action reaches the box in
seconds, not at its next heartbeat.

Each box holds one request open (`GET /api/v1/wait`, routes/boxes.py) to whichever portal
instance the load balancer gave it. Whoever saves work for a site calls `notify` in the same
transaction; on PostgreSQL that is a `pg_notify` on one channel, delivered at commit to every
instance, whose one listening connection (Waker) wakes the site's waiters. On SQLite (one
instance) there is no channel: a waiter looks for work once a second instead."""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

log = logging.getLogger("edgepbx.portal")

CHANNEL = "edgepbx_wake"
POLL_SECONDS = 1.0  # SQLite, or while the listening connection is down
RECHECK_SECONDS = 60.0  # with a listener: looks anyway now and then (a wait is 40-50 s: in effect never)


def notify(session: Session, site_id: int) -> None:
    """Tells every instance that the site has work; sent when the session commits (not before,
    so the woken box finds it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :site)"), {"channel": CHANNEL, "site": str(site_id)})


class Waker:
    """One instance's listening connection and the boxes waiting on it."""

    def __init__(self, engine: Engine):
        self.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False) \
            if engine.dialect.name == "postgresql" else None
        self.waiters: dict[int, set[asyncio.Event]] = {}
        self.notified: dict[int, float] = {}  # site -> the loop time of its last wake-up
        self.all_since = float("-inf")  # the listener's last (re)connection: every site may have work
        self.loop: asyncio.AbstractEventLoop | None = None
        self.listening = False
        self.stopping = threading.Event()

    def _start(self) -> None:
        """On the first wait, in the server's event loop (the app has no other start-up)."""
        self.loop = asyncio.get_running_loop()
        if self.url:
            threading.Thread(target=self._listen, name="wake-listener", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _listen(self) -> None:
        import psycopg

        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    self.loop.call_soon_threadsafe(self._wake_all)  # what was saved while it was down
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.payload.isdigit():
                                self.loop.call_soon_threadsafe(self._wake, int(note.payload))
            except Exception as exc:  # noqa: BLE001 - the database restarting: waiters poll meanwhile
                if self.listening:
                    log.warning("wake-up listener lost its connection (%s); boxes are polled until it is back", exc)
                self.listening = False
                self.stopping.wait(2.0)
        self.listening = False

    def _wake_all(self) -> None:
        self.notified.clear()
        self.all_since = self.loop.time()
        for waiting in self.waiters.values():
            for event in waiting:
                event.set()

    def _wake(self, site_id: int) -> None:
        now = self.loop.time()
        if len(self.notified) > 10_000:  # only the last minute's matter (a look takes milliseconds)
            self.notified = {site: at for site, at in self.notified.items() if at > now - 60}
        self.notified[site_id] = now
        for event in self.waiters.get(site_id, ()):
            event.set()

    async def wait(self, site_id: int, seconds: float, has_work: Callable[[], bool], since: float | None = None) -> bool:
        """True as soon as the site has work (`has_work` runs in a worker thread: it reads the
        database), False after `seconds` without any. `since`: the loop time at which the caller
        began a look that found none; it is looked at again only if a wake-up for the site came
        after that (the waiter was not yet in place to get it)."""
        if self.loop is None:
            self._start()
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self.waiters.setdefault(site_id, set()).add(event)
        look = since is None or not self.listening or max(self.notified.get(site_id, self.all_since), self.all_since) >= since
        try:
            deadline = loop.time() + seconds
            while True:
                if look and await asyncio.to_thread(has_work):
                    return True
                left = deadline - loop.time()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(event.wait(), min(left, RECHECK_SECONDS if self.listening else POLL_SECONDS))
                    look = True  # woken
                except asyncio.TimeoutError:  # a poll or a recheck looks; the end of the wait need not
                    look = not self.listening or loop.time() < deadline
                event.clear()
        finally:
            waiting = self.waiters.get(site_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self.waiters[site_id]
