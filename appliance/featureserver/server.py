"""The feature server: a pjsua2 B2BUA that anchors every call of the office. This module wires
the parts together and runs the loop; what each call does lives in calls/, what an INVITE or a
REFER becomes in intake.py, records in records.py, the pjsua2 adapter in sip/
(docs/architecture.md draws the picture).

One thread owns the pjsua2 library: it runs `loop()`, which polls SIP/media events, fires
timers and runs work queued by other threads (`call_soon`). pjsua2 objects are created, used
and destroyed only there; this is what keeps the library's callbacks and object lifetimes
from crashing the process.
"""
from __future__ import annotations

import logging
import os
import queue
import resource
import signal
import sys
import threading
import time
from typing import Callable

from ..cdr import CdrStore
from ..config import Config
from ..dialplan import DialPlan
from ..recordings import free_mb, recover_after_crash
from ..ringing import RingingBoard
from .calls.transfer import start_if_asked
from .control import ControlSocket
from .intake import Intake
from .limits import OutsideCallLimits
from .records import CallRecords
from .services import Services
from .sip.endpoint import Endpoint
from .sip.leg import PjLegs
from .sip.media import PjMedia
from .sip.message import Invite
from .table import CallTable
from .targets import Reach

log = logging.getLogger("edgepbx.featureserver")

RECORDING_SYNC_SECONDS = 5.0  # the most of a recording a power cut can take (sync_recordings)
# Recordings in progress stop when free space falls below this share of recording.min_free_mb
# (new calls already go unrecorded below all of it): what is left stays for the call records.
RECORDING_FLOOR = 0.5


class FeatureServer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.tasks: queue.Queue[Callable[[], None]] = queue.Queue()
        self.timers: list[tuple[float, Callable[[], None]]] = []  # (when, what), on this thread only
        self.stopping = False
        self.store = CdrStore(cfg.data_dir / "cdr.sqlite")
        recover_after_crash(self.store)
        self.records = CallRecords(cfg, self.store)
        self.table = CallTable()
        self.endpoint = Endpoint(cfg)
        self.control = ControlSocket(cfg)
        self.intake: Intake | None = None

    def start(self) -> None:
        cfg = self.cfg
        self.endpoint.start(self.on_invite)
        endpoint = self.endpoint
        dialplan = DialPlan(cfg)
        services = Services(
            cfg=cfg, records=self.records, table=self.table, board=RingingBoard(), dialplan=dialplan,
            reach=Reach(cfg, dialplan, endpoint.plain, endpoint.secure, endpoint.trunks),
            limits=OutsideCallLimits(cfg, self.store, self.table),
            media=PjMedia(cfg.features.music_on_hold), legs=PjLegs(endpoint.incoming, self.later),
            later=self.later, call_soon=self.call_soon,
            start_transfer=lambda call, leg, digit, parties: start_if_asked(services, call, leg, digit, parties))
        self.intake = Intake(services, f"{cfg.network.bind}:{cfg.network.sip_port}", self.refuse)

    def on_invite(self, invite: Invite) -> None:
        self.intake.invite(invite.leg_id, invite.source, invite.edge)

    def refuse(self, leg_id: int, code: int) -> None:
        self.table.retire_object(self.endpoint.refuse(leg_id, code))

    # -- the loop ---------------------------------------------------------------------------

    def call_soon(self, task: Callable[[], None]) -> None:
        """Thread-safe: runs `task` on the library thread."""
        self.tasks.put(task)

    def later(self, seconds: float, task: Callable[[], None]) -> None:
        """Runs `task` on the library thread after `seconds` (call only from that thread)."""
        self.timers.append((time.monotonic() + seconds, task))

    def loop(self) -> None:
        while not self.stopping:
            self.endpoint.handle_events(10)
            self.control.read(self.intake)
            self.run_tasks()
            self.fire_timers()
            self.table.free_retired()  # drop pjsua2 objects outside of their callbacks
        self.shutdown()

    def run_tasks(self) -> None:
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return
            try:
                task()
            except Exception:  # a failing task must not take every call down with it
                log.exception("feature server task failed")

    def fire_timers(self) -> None:
        for call in self.table:
            call.on_timer()
        now = time.monotonic()
        due = [task for when, task in self.timers if when <= now]
        if due:
            self.timers = [(when, task) for when, task in self.timers if when > now]
            for task in due:
                try:
                    task()
                except Exception:
                    log.exception("timer task failed")

    def request_stop(self, *_args: object) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        """Hangs up every call, closes their records, and releases the library (about 1 s)."""
        for call in self.table:
            call.abort()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(not call.legs_gone() for call in self.table):
            self.endpoint.handle_events(20)
        self.table.clear()
        self.intake = None
        self.endpoint.destroy()
        self.store.close()
        log.info("feature server stopped")

    # -- recordings on the disk -------------------------------------------------------------

    def sync_recordings(self) -> None:
        """Recordings go through the page cache, and the appliance image commits its data partition
        every 30 s (fewer writes to an SD card): flush when a recording starts and every few seconds
        while calls are recorded, so a power cut loses at most that much of a recording, never the file."""
        while not self.stopping:
            self.records.recording_started.wait(RECORDING_SYNC_SECONDS)
            self.records.recording_started.clear()
            if self.records.recording_now:
                os.sync()
                if free_mb(self.cfg) < self.cfg.recording_min_free_mb * RECORDING_FLOOR:
                    self.call_soon(self.stop_recordings_for_space)

    def stop_recordings_for_space(self) -> None:
        """(library thread) The disk is filling while calls are recorded: their recordings close
        with what they hold so far, the calls go on and their records are still written."""
        stopped = []
        for call in self.table:
            for holder in (call, call.transfer):
                if holder is not None and holder.recorder is not None:
                    holder.recorder = None  # closing the WAV writes its final header
                    stopped.append(call.cdr_id)
        self.records.recording_now.clear()
        if stopped:
            log.error("ALARM disk low: %.0f MB free on %s, under half of recording.min_free_mb %d; stopped "
                      "recording %d call(s) in progress (%s), which go on unrecorded", free_mb(self.cfg),
                      self.cfg.data_dir, self.cfg.recording_min_free_mb, len(stopped), ", ".join(stopped))


def raise_file_limit() -> None:
    """Each call leg holds an RTP and an RTCP socket: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def run(cfg: Config) -> None:
    raise_file_limit()
    server = FeatureServer(cfg)
    signal.signal(signal.SIGTERM, server.request_stop)
    signal.signal(signal.SIGINT, server.request_stop)
    server.start()
    threading.Thread(target=server.sync_recordings, name="recording-sync", daemon=True).start()
    print("feature server ready", flush=True)
    server.loop()
    # Leave without Python's finalizer: it would destroy stray pjsua2 proxies after libDestroy,
    # which trips pjsua's assertions. Everything worth keeping is closed and flushed by now.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)
