"""The one writer of call records (CDR events) and recording files of the feature server.

A record is opened when the INVITE arrives, updated at answer, pickup, trunk, transfer and link,
and closed at the end (appliance/cdr.py, each a short SQLite transaction). A write that fails (a
locked database; a full disk past the reserve) is logged and the call goes on: a record is never
worth a dropped call. Recording files are created here too, so every call kind records alike.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Callable

from ..cdr import CdrStore
from ..config import Config
from ..recordings import recording_path, room_to_record
from .model import Media, RecordingError

log = logging.getLogger("edgepbx.featureserver")
UNRECORDED = "unrecorded"  # the id of a call whose record could not be opened


class CallRecords:
    def __init__(self, cfg: Config, store: CdrStore):
        self.cfg = cfg
        self.store = store
        self.recording_now: set[str] = set()  # CDR ids of calls being recorded (read by the sync thread)
        self.recording_started = threading.Event()  # wakes the sync thread: a new file is on the disk at once

    def _write(self, action: Callable[[], object], what: str) -> object:
        try:
            return action()
        except sqlite3.Error as exc:
            log.error("CDR %s failed: %s", what, exc)
            return None

    def start(self, **fields: str | None) -> str:
        cdr_id = self._write(lambda: self.store.start(**fields), "insert")
        return cdr_id if isinstance(cdr_id, str) else UNRECORDED

    def picked_up(self, cdr_id: str, extension: str) -> None:
        self._write(lambda: self.store.picked_up(cdr_id, extension), "pickup update")

    def link(self, cdr_id: str, linked_id: str) -> None:
        self._write(lambda: self.store.link(cdr_id, linked_id), "link update")

    def transferred(self, cdr_id: str, target: str) -> None:
        self._write(lambda: self.store.transferred(cdr_id, target), "transfer update")

    def trunk(self, cdr_id: str, name: str) -> None:
        self._write(lambda: self.store.trunk(cdr_id, name), "trunk update")

    def rang(self, cdr_id: str, extension: str) -> None:
        self._write(lambda: self.store.rang(cdr_id, extension), "ring update")

    def answered(self, cdr_id: str, recording: str | None, by: str | None = None) -> None:
        """`by`: the office extension that answered, None for a party outside the office."""
        self._write(lambda: self.store.answered(cdr_id, recording, by), "answer update")
        if recording:
            self.recording_now.add(cdr_id)
            self.recording_started.set()

    def ended(self, cdr_id: str, disposition: str, code: int | None, quality: dict | None = None) -> None:
        self._write(lambda: self.store.ended(cdr_id, disposition, code, quality), "end update")
        self.recording_now.discard(cdr_id)

    def phone_report(self, cdr_id: str, side: str, figures: dict) -> None:
        """A phone's own figures of an ended call, beside the box's (its record goes out again)."""
        self._write(lambda: self.store.phone_report(cdr_id, side, figures), "phone report update")

    def new_recording(self, media: Media, cdr_id: str, src: str, dst: str,
                      answerer: str | None = None) -> tuple[object, str] | None:
        """(recorder, path) of a new recording of call `cdr_id`, or None: recording is off (for the
        office, or for an extension in the call: caller, dialled or `answerer`), the disk is short
        of recording.min_free_mb, or the file cannot be created (the call goes on unrecorded, and
        the log says why)."""
        if not self.cfg.recording_enabled or not room_to_record(self.cfg):
            return None
        private = [n for n in (src, dst, answerer) if n and (e := self.cfg.extension(n)) and not e.record]
        if private:
            log.info("call %s not recorded: extension %s has recording off", cdr_id, private[0])
            return None
        path = recording_path(self.cfg.data_dir, cdr_id, src, dst)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return media.recorder(str(path)), str(path)
        except (OSError, RecordingError) as exc:
            log.error("call %s: recording to %s failed, call continues unrecorded: %s", cdr_id, path, exc)
            return None
