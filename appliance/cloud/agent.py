"""The cloud agent (`edgepbx cloud`, started by `edgepbx run`): store and forward.

CDRs go first, in batches, oldest first; then recordings, each resumably in chunks under the
configured bandwidth cap; a heartbeat every `cloud.heartbeat_seconds`. When the portal cannot be
reached the agent waits with exponential back-off and jitter and nothing is lost: the outbox
lives in the CDR database and an entry leaves it only when the portal has acknowledged it.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import random
import signal
import sqlite3
import time
from datetime import datetime
from pathlib import Path

from ..opus import RecordingEncoder
from ..recordings import finished_writing, free_mb, low_on_space, prune
from ..reserve import keep_reserve, reserve_path
from ..config import Config, InvalidConfig, load
from . import answers
from .assets import drop_unused_sounds, fetch_sounds
from . import diagnostics
from .answers import CallBackRequest, CaptureRequest, PhoneAction
from .backups import BackupKeeper
from .firmware import FirmwareFetcher
from .software import SoftwareUpdater
from .upgrades import PhoneUpgrades
from .callback import request_call_back
from .client import PortalClient, PortalRefused, PortalUnreachable, PortalUrlRefused, Trust
from .link import CloudLink, load_link, save_link
from .outbox import Entry, Outbox
from .phones import ACTIONS, notify_event, phone_list, send_notify
from .remote_config import check, install, previous_path, remote_state, running_state, set_remote_state, sha256_text
from .settings import settings_summary
from .status import collect_status, write_state
from .wakeup import WakeUp

log = logging.getLogger("edgepbx.cloud")

CDR_BATCH = 500
CHUNK_BYTES = 1024 * 1024  # resumable in 1 MiB steps; bigger chunks, fewer requests per recording
IDLE_POLL_SECONDS = 1.0
NOT_ENROLLED_POLL_SECONDS = 5.0
MAX_RECORDING_ATTEMPTS = 5
PRUNE_SECONDS = 60.0
SPACE_CHECK_SECONDS = 2.0


class Throttle:
    """Keeps uploads under a byte rate so they never crowd out live calls' RTP."""

    def __init__(self, kbps: int):
        self.bytes_per_second = kbps * 125 if kbps > 0 else 0
        self.next_free = time.monotonic()

    def wait(self, nbytes: int) -> None:
        if not self.bytes_per_second:
            return
        now = time.monotonic()
        if self.next_free > now:
            time.sleep(self.next_free - now)
        self.next_free = max(now, self.next_free) + nbytes / self.bytes_per_second


class Agent:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.outbox = Outbox(cfg.data_dir / "cdr.sqlite")
        self.throttle = Throttle(cfg.cloud.upload_kbps)
        self.link: CloudLink | None = None
        self.client: PortalClient | None = None
        self.refused_url: str | None = None  # a stored portal URL the config does not allow, said once
        self.stopping = False
        self.next_heartbeat = 0.0
        self.started = time.monotonic()
        self.state: dict = {"last_sync_at": None, "last_error": None, "last_error_at": None}
        self.hashes: dict[tuple[str, float, int], str] = {}
        self.next_prune = 0.0
        self.next_space_check = 0.0
        self.disk_alarm = False
        self.reserve_released = False
        self.own_config_refused = False  # an older portal without POST /config/current
        self.wakeup = WakeUp(lambda: remote_state(self.cfg).get("version"))
        self.backups = BackupKeeper(cfg.path, cfg.data_dir)
        self.capture_job: diagnostics.CaptureJob | None = None
        self.firmware = FirmwareFetcher(cfg.data_dir)
        self.upgrades = PhoneUpgrades(cfg)
        self.encoder: RecordingEncoder | None = None
        self.encoder = self._encoder()
        self.software = SoftwareUpdater(cfg)

    def _encoder(self) -> RecordingEncoder | None:
        """The encoder the config asks for. One already running is kept, with the opusenc it may be
        waiting on: a second would encode the same WAV into the same file beside it."""
        if self.cfg.recording_format != "opus":
            if self.encoder is not None:
                self.encoder.stop()
            return None
        return self.encoder or RecordingEncoder(self.outbox.store)

    def reload_settings(self) -> None:
        """A config from the portal was applied: the agent's own settings (cloud:, recording:) may
        have changed with it."""
        try:
            self.cfg = load(self.cfg.path)
        except InvalidConfig:
            return
        self.throttle = Throttle(self.cfg.cloud.upload_kbps)
        self.encoder = self._encoder()

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        self.wakeup.start()
        backoff = 0.0
        while not self.stopping:
            self.housekeeping()
            encoded = self.encoder is not None and self.encoder.step()  # linked to a portal or not
            if not self._linked():
                if not encoded:
                    self._sleep(NOT_ENROLLED_POLL_SECONDS)
                continue
            try:
                busy = self.cycle() or encoded
                if backoff:
                    log.info("portal %s reachable again; outbox %s", self.link.portal_url, self.outbox.depth())
                backoff = 0.0
                if not busy:
                    self._sleep(IDLE_POLL_SECONDS)
            except PortalUnreachable as exc:
                backoff = min(self.cfg.cloud.retry_max_seconds, max(1.0, backoff * 2))
                self._error(str(exc), warn=backoff <= 1.0)
                self._sleep(random.uniform(0.5, 1.0) * backoff)  # jitter: a fleet does not come back in step
            except PortalRefused as exc:
                self._error(f"portal refused: {exc}")
                if exc.status == 401:  # revoked or unknown credential: nothing will pass until re-enrolled
                    self.link = self.wakeup.target = None
                    self._sleep(self.cfg.cloud.retry_max_seconds)
                else:
                    self._sleep(5.0)
        self.wakeup.stopping.set()
        if self.encoder is not None:
            self.encoder.stop()  # its WAV is encoded again at the next start
        self.outbox.close()

    def housekeeping(self) -> None:
        """Recordings the box no longer needs leave it (appliance/recordings.prune): once a
        minute, and within seconds when free space falls under the low-water mark or the space
        kept for call records was used (it is kept again as soon as there is room)."""
        now = time.monotonic()
        short = lambda: low_on_space(self.cfg) or not reserve_path(self.cfg.data_dir).exists()  # noqa: E731
        if now < self.next_prune and not (now >= self.next_space_check and short()):
            return
        self.next_prune = now + PRUNE_SECONDS
        self.next_space_check = now + SPACE_CHECK_SECONDS
        enrolled = load_link(self.cfg.data_dir) is not None
        try:
            pruned = prune(self.cfg, enrolled)
        except (OSError, sqlite3.Error) as exc:
            log.error("pruning recordings failed: %s", exc)
            return
        if pruned.still_low and not self.disk_alarm:
            log.error("ALARM disk low: %.0f MB free on %s and no %srecording left to delete; new calls are not "
                      "recorded%s", free_mb(self.cfg), self.cfg.data_dir, "synced " if enrolled else "",
                      " until the portal has the pending ones" if enrolled else "")
        elif self.disk_alarm and not pruned.still_low:
            log.info("disk space recovered: %.0f MB free; calls are recorded again", free_mb(self.cfg))
        if not pruned.still_low and keep_reserve(self.cfg.data_dir) and self.reserve_released:
            log.info("space for call records kept again on %s", self.cfg.data_dir)
        self.reserve_released = not reserve_path(self.cfg.data_dir).exists()
        self.disk_alarm = pruned.still_low

    def _sleep(self, seconds: float) -> None:
        """Sleeps, cut short when the portal wakes the box: its heartbeat is then due at once."""
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            if self.wakeup.woken.is_set():
                self.wakeup.woken.clear()
                self.next_heartbeat = 0.0
                return
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _linked(self) -> bool:
        link = load_link(self.cfg.data_dir)
        if link is None:
            self.link = self.wakeup.target = None
            return False
        trust = Trust.of(self.cfg.cloud)
        if self.link != link or self.client is None or self.client.trust != trust:
            if self.client:
                self.client.close()
            try:
                self.client = PortalClient(link.portal_url, link.credential, trust=trust)
            except PortalUrlRefused as exc:
                if self.refused_url != link.portal_url:
                    log.error("cloud sync stopped: %s", exc)
                    self._error(str(exc))
                self.link, self.client, self.refused_url = None, None, link.portal_url
                self.wakeup.target = None
                return False
            self.link, self.refused_url = link, None
            self.wakeup.target = (link, trust)
            self.next_heartbeat = 0.0
            log.info("syncing to %s as site %s", link.portal_url, link.site)
        return True

    def _error(self, message: str, warn: bool = True) -> None:
        if warn or message != self.state["last_error"]:
            log.warning("cloud sync: %s", message)
        self.state.update(last_error=message, last_error_at=datetime.now().astimezone().isoformat(timespec="seconds"))
        self._save_state()

    def _synced(self) -> None:
        self.state.update(last_sync_at=datetime.now().astimezone().isoformat(timespec="seconds"), last_error=None)
        self._save_state()

    def _save_state(self) -> None:
        write_state(self.cfg.data_dir, dict(self.state, outbox=self.outbox.depth(),
                                            portal_url=self.link.portal_url if self.link else None))

    def cycle(self) -> bool:
        """One round: heartbeat if due, a batch of CDRs, else one recording. True if it did work."""
        if time.monotonic() >= self.next_heartbeat or self.install_settled():
            self.heartbeat()
        self.back_up()
        self.finish_capture()
        self.install_software()
        if self.send_cdrs():
            return True
        return self.send_one_recording() or self.firmware.step(self.client) or self.software.step(self.client)

    # --- what is sent ---------------------------------------------------------------------
    def heartbeat(self) -> None:
        status = collect_status(self.cfg, self.outbox.depth(), time.monotonic() - self.started)
        remote = remote_state(self.cfg)
        status["config"] = {"version": remote.get("version"), "state": remote.get("state")}
        status["phones"] = phone_list(self.cfg)
        running = self.running_config()
        self.upgrades.cfg = running  # its window, wave and deadline as the office has them now
        status["firmware_upgrades"] = self.upgrades.tick(status["phones"])
        status["settings"] = settings_summary(running)
        status["update"] = self.software.report(status["version"])
        answer = answers.heartbeat(self.client.request("POST", "/api/v1/heartbeat", status))
        self.next_heartbeat = time.monotonic() + self.cfg.cloud.heartbeat_seconds
        for action in answer.phone_actions:
            self.phone_action(action, status["phones"])
        for request in answer.callbacks:
            self.call_back(request)
        for wanted in answer.captures:
            self.start_capture(wanted)
        if answer.firmware is not None:
            self.firmware.want(answer.firmware)
        self.software.follow(answer.update)
        self.follow_config(answer.config_version)
        self.send_own_config()

    def install_software(self) -> None:
        """A fetched release, installed when its window is open and no call is up: the portal is
        told "installing" first, then the system's root unit installs it and reboots."""
        if not self.software.due(datetime.now()):  # the agent runs on the office's clock (TZ)
            return
        self.software.mark_installing()
        try:
            self.heartbeat()
        except Exception:
            self.software.mark_ready()  # the portal did not hear it: tried again next round
            raise
        self.software.ask_system()

    def back_up(self) -> None:
        """A new backup on the portal within seconds of a change to what makes the box itself."""
        if not self.backups.due(time.monotonic()):
            return
        try:
            if not self.link.backup_key:  # enrolled before backups began: the site's key, once
                self.link.backup_key = answers.backup_key(self.client.request("GET", "/api/v1/backup/key"))
                save_link(self.cfg.data_dir, self.link)
            self.backups.send(self.client, base64.b64decode(self.link.backup_key))
        except PortalRefused as exc:
            if exc.status == 401:
                raise
            if exc.status in (404, 405):
                log.info("the portal keeps no backups (an older version): none sent")
                self.backups.refused = True
                return
            self._error(f"backup refused: {exc}")
            self.backups.next_check = time.monotonic() + 60.0  # tried again in a minute, or at the next change
        except ValueError as exc:
            self._error(f"the site's backup key from the portal is not base64: {exc}")
            self.backups.refused = True

    def start_capture(self, wanted: CaptureRequest) -> None:
        """An operator's remote diagnostics: `edgepbx capture` runs beside the agent."""
        if self.capture_job is not None:
            self.client.request("POST", f"/api/v1/captures/{wanted.id}/result",
                                {"ok": False, "detail": f"capture {self.capture_job.id} is still under way on the box"})
            return
        log.info("capture %d: %d s of SIP and RTP for the portal's operator", wanted.id, wanted.seconds)
        self.capture_job = diagnostics.start(self.running_config(), wanted.id, wanted.seconds)

    def finish_capture(self) -> None:
        """A finished capture goes to the portal with the box's status and recent logs, then
        leaves the box (it holds digests and audio)."""
        job = self.capture_job
        if job is None or job.proc.poll() is None:
            return
        captured, packets, detail = diagnostics.outcome(job)
        try:
            if captured:
                self.client.request("PUT", f"/api/v1/captures/{job.id}/pcap", job.pcap.read_bytes())
                self.client.request("PUT", f"/api/v1/captures/{job.id}/text",
                                    diagnostics.report_text(self.running_config()).encode())
            self.client.request("POST", f"/api/v1/captures/{job.id}/result",
                                {"ok": captured, "packets": packets, "detail": detail})
            log.info("capture %d sent: %s", job.id, detail)
        except PortalRefused as exc:
            if exc.status == 401:
                raise
            log.error("capture %d refused by the portal (%s); deleted", job.id, exc)
        job.pcap.unlink(missing_ok=True)
        self.capture_job = None

    def running_config(self) -> Config:
        """The office config as the box runs it now (an installer may have edited it on site)."""
        try:
            return load(self.cfg.path)
        except InvalidConfig:
            return self.cfg

    def phone_action(self, action: PhoneAction, phones: list[dict]) -> None:
        """An operator's resync or reboot: the NOTIFY the phone's vendor understands, and the
        phone's answer back to the portal."""
        phone = next((p for p in phones if p["mac"] == action.mac), None)
        if action.action not in ACTIONS:
            code, detail = None, f"unknown action {action.action!r}"
        elif phone is None or not phone["extension"]:
            code, detail = None, "no such phone on this box (or it has no extension)"
        else:
            event = notify_event(phone["vendor"], action.action)
            code, detail = send_notify(self.cfg, phone["extension"], event)
            detail = f"NOTIFY Event: {event} to {phone['extension']}: " + (f"{code} {detail}" if code else detail)
        log.info("phone %s %s: %s", action.mac, action.action, detail)
        self.client.request("POST", f"/api/v1/phone-actions/{action.id}/result", {"code": code, "detail": detail})

    def call_back(self, request: CallBackRequest) -> None:
        """A portal user's "call back": the feature server rings their extension, then dials the
        number; the portal learns at once whether the phone is ringing (the call itself arrives as
        a call record like any other)."""
        started, detail = request_call_back(self.cfg, request.extension, request.number)
        log.info("call back %s for extension %s: %s", request.number, request.extension, detail)
        self.client.request("POST", f"/api/v1/callbacks/{request.id}/result",
                            {"started": started, "detail": detail})

    # --- configs from the portal ----------------------------------------------------------
    def follow_config(self, desired: int | None) -> None:
        """Pulls a newer config, checks it like `edgepbx check`, installs it for the supervisor
        to apply when no call is up, and reports the outcome (never the config's text)."""
        state = remote_state(self.cfg)
        if state.get("state") == "installed":
            self._report_install(state)
            return
        if not desired or desired <= (state.get("version") or 0):
            return
        pushed = answers.pushed_config(self.client.request("GET", "/api/v1/config"))
        version, text = pushed.version, pushed.text
        errors = fetch_sounds(self.client, self.cfg, text) or check(self.cfg, version, text)
        if errors:
            log.error("config version %d from the portal refused:\n%s", version, "\n".join(errors))
            set_remote_state(self.cfg, version=version, sha256=sha256_text(text), state="rejected", errors=errors)
            self.client.request("POST", f"/api/v1/config/{version}/result", {"applied": False, "errors": errors})
            return
        log.info("config version %d from the portal installed; it applies when no call is up", version)
        install(self.cfg, version, text)
        try:
            drop_unused_sounds(self.cfg, text, previous_path(self.cfg.path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            pass  # no previous file to keep sounds for: they stay until the next install

    def send_own_config(self) -> None:
        """The config file as the box runs it, when it is not the one last pulled or sent: an
        installer edited it on site, the box was just enrolled, or a pushed one was refused and
        the box kept its own. The portal keeps it as the newest version, so its configurator
        edits what the office really has."""
        state = remote_state(self.cfg)
        if state.get("state") == "installed" or self.own_config_refused:
            return  # a pulled config is about to apply: it is what the portal has
        try:
            text = self.cfg.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        sha = sha256_text(text)
        if sha == state.get("sha256"):
            return
        try:
            answer = self.client.request("POST", "/api/v1/config/current", {"config": text})
        except PortalRefused as exc:
            if exc.status in (404, 405):
                self.own_config_refused = True
                return
            if exc.status == 409:  # one saved in the portal waits: the next heartbeat pulls it
                return
            raise
        version = answers.config_version(answer)
        set_remote_state(self.cfg, version=version, sha256=sha, state="applied", errors=[])
        log.info("the config this box runs is version %d on the portal", version)

    def _install_outcome(self, state: dict) -> str | None:
        """What became of an installed config: "applied", "rolled_back", or None while it waits."""
        running = running_state(self.cfg)
        if running.get("sha256") == state.get("sha256") and running.get("state") in ("applied", "running"):
            return "applied"
        if running.get("state") == "rolled_back" and running.get("at", "") >= state.get("at", ""):
            return "rolled_back"
        return None

    def install_settled(self) -> bool:
        """An installed config was applied or rolled back since the last heartbeat: the portal
        hears it now, not at the next interval (a local file read: cheap each round)."""
        state = remote_state(self.cfg)
        return state.get("state") == "installed" and self._install_outcome(state) is not None

    def _report_install(self, state: dict) -> None:
        outcome = self._install_outcome(state)
        version = state["version"]
        if outcome == "applied":
            self.client.request("POST", f"/api/v1/config/{version}/result", {"applied": True, "errors": []})
            set_remote_state(self.cfg, state="applied", errors=[])
            log.info("config version %d from the portal applied", version)
            self.reload_settings()
        elif outcome == "rolled_back":
            errors = [f"portal config v{version}: {running_state(self.cfg).get('error')}"]
            self.client.request("POST", f"/api/v1/config/{version}/result", {"applied": False, "errors": errors})
            set_remote_state(self.cfg, state="rejected", errors=errors)

    def send_cdrs(self) -> bool:
        pending = self.outbox.pending_cdrs(CDR_BATCH)
        if not pending:
            return False
        try:
            self.client.request("POST", "/api/v1/calls", {"calls": [record for _, record in pending]})
        except PortalRefused as exc:
            if exc.status != 422:
                raise
            self._send_one_by_one(pending)  # find the record the portal refuses; send the rest
            return True
        self.outbox.ack([entry for entry, _ in pending])
        self._synced()
        return True

    def _send_one_by_one(self, pending: list[tuple[Entry, dict]]) -> None:
        for entry, record in pending:
            try:
                self.client.request("POST", "/api/v1/calls", {"calls": [record]})
                self.outbox.ack([entry])
            except PortalRefused as exc:
                if exc.status != 422:
                    raise
                log.error("cloud sync: the portal refuses call record %s (%s); set aside", entry.ref, exc.message)
                self.outbox.set_aside(entry, "cdr-rejected", exc.message)
                # its recording cannot go without it: aside too, so the recordings after it flow
                self.outbox.set_aside_recording_of(entry.ref, "its call record was refused")

    def send_one_recording(self) -> bool:
        for entry, row in self.outbox.pending_recordings():
            path = Path(row["recording"])
            if not path.exists():
                log.error("cloud sync: recording %s of call %s is gone; its call record is synced without it",
                          path, entry.ref)
                self.outbox.set_aside(entry, "recording-rejected", "file missing")
                return True
            try:
                if not finished_writing(path, row["ended_at"]):
                    continue  # the feature server closes it a media tick after the call ends
            except (OSError, ValueError) as exc:
                log.error("cloud sync: recording %s of call %s could not be repaired (%s); it is sent as it is",
                          path, entry.ref, exc)
            if self.encoder is not None and self.encoder.waits_for(path):
                continue  # encoded first (appliance/opus.py): the next round sends the Opus file
            try:
                self.upload(entry, path)
            except PortalRefused as exc:
                if exc.status == 401:
                    raise
                self.outbox.failed(entry, exc.message)
                if entry.attempts + 1 >= MAX_RECORDING_ATTEMPTS:
                    log.error("cloud sync: recording of call %s refused %d times (%s); set aside",
                              entry.ref, MAX_RECORDING_ATTEMPTS, exc.message)
                    self.outbox.set_aside(entry, "recording-rejected", exc.message)
                raise
            return True
        return False

    def _hash(self, path: Path) -> tuple[str, int]:
        st = path.stat()
        key = (str(path), st.st_mtime, st.st_size)
        if key not in self.hashes:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                while data := fh.read(1 << 20):
                    digest.update(data)
            self.hashes = {key: digest.hexdigest()}  # only the file being uploaded is worth keeping
        return self.hashes[key], st.st_size

    def upload(self, entry: Entry, path: Path) -> None:
        sha256, size = self._hash(path)
        offer = {"call_id": entry.ref, "sha256": sha256, "size": size}
        answer = answers.upload_state(self.client.request("POST", "/api/v1/recordings", offer), size)
        if answer.status == "upload" and answer.offset:
            log.info("resuming the upload of call %s's recording at byte %d of %d", entry.ref, answer.offset, size)
        with open(path, "rb") as fh:
            while answer.status == "upload":
                offset = answer.offset
                fh.seek(offset)
                data = fh.read(CHUNK_BYTES)
                self.throttle.wait(len(data))
                try:
                    answer = answers.upload_state(self.client.request(
                        "PUT", f"/api/v1/recordings/{sha256}?call_id={entry.ref}&offset={offset}", data), size)
                except PortalRefused as exc:
                    if exc.status == 409:  # another offset on the portal (a lost answer): ask again
                        answer = answers.upload_state(self.client.request("POST", "/api/v1/recordings", offer), size)
                        continue
                    if exc.status == 422 and "sha256" in exc.message:
                        self.hashes.clear()
                    raise
        self.outbox.recording_synced(entry, sha256)
        self._synced()


def run(cfg: Config) -> None:
    Agent(cfg).run()
