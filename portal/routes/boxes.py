"""The sync and fleet API boxes talk to: JSON over HTTPS, a site credential as Bearer token.

The app holds no state of its own: every instance behind a load balancer sees the same database
and storage, so a box may reach a different instance with each request.
"""
from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from .. import backups, callbacks, captures, configs, firmware, fleet, phones, rollouts, sounds, sync
from ..bodies import (Accepted, BackupKey, BackupStored, BoxConfig, ByteOffset, CallBatch, CallbackResult, CaptureResult,
                      ConfigResult,
                      ConfigVersion, Count, Done, Enrolled, Enrolment, Heartbeat, HeartbeatAnswer, PhoneActionResult, PushedConfig, RecordingOffer,
                      RecordingState, RowId, WaitSeconds, WaitVersion, WakeAnswer)
from ..deps import box_site, db, storage, stored_file
from ..fleet import FleetError, authenticate
from ..models import Site
from ..storage import Storage

log = logging.getLogger("edgepbx.portal")
router = APIRouter(strict_content_type=False)  # boxes' JSON, with or without its Content-Type


@router.get("/healthz")
def healthz() -> dict:
    return {"ok": True}


ENROL_BODY_LIMIT = 4 << 10  # anonymous: a code and a host name
BATCH_BODY_LIMIT = 4 << 20  # sync.MAX_BATCH records of a few hundred bytes each
HEARTBEAT_BODY_LIMIT = 1 << 20  # the status with up to 2,000 phones


@router.post("/api/v1/enroll", response_model=Enrolled, max_body_size=ENROL_BODY_LIMIT)
def enroll(body: Enrolment, session: Session = Depends(db)) -> Enrolled:
    """The site's credential and backup key; for a site whose box was backed up (a replacement
    box), the newest backup, which the box restores before it serves."""
    site, credential = fleet.enrol(session, body.code)
    key, newest = backups.site_key(session, site), backups.latest(session, site)
    session.commit()
    log.info("site %s enrolled (box %s)%s", site.name, body.hostname, f"; backup {newest.id} to restore" if newest else "")
    return Enrolled(site=site.name, credential=credential, backup_key=key,
                    backup={"id": newest.id, "created_at": newest.created_at, "size": newest.size} if newest else None)


async def backup_bytes(request: Request) -> bytes:
    """The encrypted backup, refused before it is read when the header says too many bytes."""
    if int(request.headers.get("content-length") or 0) > backups.MAX_BACKUP_BYTES:
        raise FleetError(413, f"a backup may hold at most {backups.MAX_BACKUP_BYTES >> 20} MB")
    return await request.body()


@router.put("/api/v1/backup", response_model=BackupStored, status_code=201, max_body_size=backups.MAX_BACKUP_BYTES)
def put_backup(extensions: Count = 0, phones: Count = 0, files: Count = 0, data: bytes = Depends(backup_bytes),
               session: Session = Depends(db), site: Site = Depends(box_site)) -> BackupStored:
    """The box's newest backup, encrypted by the box with the site's key; the counts are what the
    box says it holds (the portal cannot look), for the site's page."""
    stored = backups.store(session, site, data, {"extensions": extensions, "phones": phones, "files": files})
    return BackupStored(id=stored.id, created_at=stored.created_at)


@router.get("/api/v1/backup/key", response_model=BackupKey)
def backup_key(session: Session = Depends(db), site: Site = Depends(box_site)) -> BackupKey:
    """For a box enrolled before backups began: its site's key."""
    key = backups.site_key(session, site)
    session.commit()
    return BackupKey(backup_key=key)


@router.get("/api/v1/backups/{backup_id}")
def get_backup(backup_id: RowId, session: Session = Depends(db), site: Site = Depends(box_site)) -> Response:
    """A backup of the box's own site, as the box sealed it (a replacement box restores it)."""
    return Response(backups.one(session, site, backup_id).data, media_type="application/octet-stream")


@router.post("/api/v1/calls", response_model=Accepted, max_body_size=BATCH_BODY_LIMIT)
def calls(body: CallBatch, session: Session = Depends(db), site: Site = Depends(box_site)) -> Accepted:
    return Accepted(accepted=sync.upsert_calls(session, site, body.calls))


@router.post("/api/v1/recordings", response_model=RecordingState, response_model_exclude_none=True)
def offer(body: RecordingOffer, session: Session = Depends(db), site: Site = Depends(box_site),
          store: Storage = Depends(storage)) -> dict:
    return sync.offer_recording(session, store, site, body.call_id, body.sha256, body.size)


async def chunk_bytes(request: Request) -> bytes:
    """The chunk's bytes, refused before they are read when the header says too many."""
    if int(request.headers.get("content-length") or 0) > sync.MAX_CHUNK:
        raise FleetError(413, f"a chunk may hold at most {sync.MAX_CHUNK} bytes")
    return await request.body()


@router.put("/api/v1/recordings/{sha256}", response_model=RecordingState, response_model_exclude_none=True,
            max_body_size=sync.MAX_CHUNK)
def chunk(sha256: str, call_id: str, offset: ByteOffset, data: bytes = Depends(chunk_bytes),
          session: Session = Depends(db), site: Site = Depends(box_site), store: Storage = Depends(storage)) -> dict:
    return sync.put_chunk(session, store, site, call_id, sha256, offset, data)


@router.post("/api/v1/heartbeat", response_model=HeartbeatAnswer, max_body_size=HEARTBEAT_BODY_LIMIT)
def heartbeat(status: Heartbeat, session: Session = Depends(db), site: Site = Depends(box_site)) -> HeartbeatAnswer:
    """Answers with the newest config version (the box pulls only when there is a newer one),
    the operator's pending phone actions and the users' call-back requests."""
    said = status.model_dump(mode="json", exclude_unset=True)
    if fleet.record_heartbeat(session, site, said):
        sync.discard_stale_uploads(session, site)
        captures.expire(session, site)
    desired = configs.desired_config(session, site)
    answer = HeartbeatAnswer(ok=True, config_version=desired.version if desired else None,
                             phone_actions=phones.hand_out(session, site), callbacks=callbacks.hand_out(session, site),
                             captures=captures.hand_out(session, site), firmware=firmware.effective(session, site),
                             update=rollouts.on_heartbeat(session, site, said))
    session.commit()  # one transaction for the whole heartbeat
    return answer


@router.get("/api/v1/config", response_model=PushedConfig)
def config(session: Session = Depends(db), site: Site = Depends(box_site)) -> PushedConfig:
    desired = configs.desired_config(session, site)
    if desired is None:
        raise FleetError(404, "no config pushed for this site")
    return PushedConfig(version=desired.version, sha256=desired.sha256, config=desired.text)


@router.post("/api/v1/config/current", response_model=ConfigVersion, max_body_size=configs.MAX_CONFIG_BYTES + (64 << 10))
def box_config(body: BoxConfig, session: Session = Depends(db), site: Site = Depends(box_site)) -> ConfigVersion:
    """The config the box runs, when it was not pulled from here (an installer edited it on site)."""
    return ConfigVersion(version=configs.record_box_config(session, site, body.config))


WAIT_SECONDS = 45.0  # under the box's read timeout (60 s) and common proxies' idle limit (60 s)


@router.get("/api/v1/wait", response_model=WakeAnswer)
async def wait(request: Request, config_version: WaitVersion = None, seconds: WaitSeconds = WAIT_SECONDS) -> WakeAnswer:
    """Held open until the box has something to collect (a newer config than `config_version`,
    a call-back, a phone action) or `seconds` pass. Async and without a database session while
    it waits, so a held box costs a socket and a few kilobytes, not a thread or a connection."""
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        raise FleetError(401, "missing site credential")
    credential = header[len("Bearer "):].strip()

    def first_look() -> tuple[int, bool]:  # one worker-thread hop and one session for both
        with request.app.state.sessions() as session:
            site = authenticate(session, credential)
            return site.id, configs.has_work(session, site.id, config_version)

    def has_work(site_id: int) -> bool:
        with request.app.state.sessions() as session:
            return configs.has_work(session, site_id, config_version)

    began = asyncio.get_running_loop().time()
    site_id, waiting = await asyncio.to_thread(first_look)
    if waiting:
        return WakeAnswer(wake=True)
    return WakeAnswer(wake=await request.app.state.waker.wait(site_id, seconds, lambda: has_work(site_id), since=began))


@router.post("/api/v1/config/{version}/result", response_model=Done)
def config_result(version: RowId, body: ConfigResult, session: Session = Depends(db),
                  site: Site = Depends(box_site)) -> Done:
    errors = body.errors or []
    configs.report(session, site, version, bool(body.applied), errors if isinstance(errors, list) else [str(errors)])
    return Done()


@router.post("/api/v1/phone-actions/{action_id}/result", response_model=Done)
def phone_action_result(action_id: RowId, body: PhoneActionResult, session: Session = Depends(db),
                        site: Site = Depends(box_site)) -> Done:
    code = body.code if isinstance(body.code, int) else None
    phones.record_result(session, site, action_id, code, body.detail)
    return Done()


@router.post("/api/v1/callbacks/{request_id}/result", response_model=Done)
def callback_result(request_id: RowId, body: CallbackResult, session: Session = Depends(db),
                    site: Site = Depends(box_site)) -> Done:
    callbacks.record_result(session, site, request_id, body.started is True, body.detail)
    return Done()


async def capture_bytes(request: Request) -> bytes:
    if int(request.headers.get("content-length") or 0) > captures.MAX_PCAP_BYTES:
        raise FleetError(413, f"a capture may hold at most {captures.MAX_PCAP_BYTES >> 20} MB")
    return await request.body()


@router.put("/api/v1/captures/{capture_id}/{part}", response_model=Done, max_body_size=captures.MAX_PCAP_BYTES)
def put_capture(capture_id: RowId, part: str, data: bytes = Depends(capture_bytes), session: Session = Depends(db),
                site: Site = Depends(box_site)) -> Done:
    """A capture's pcap or its text (status and recent logs), from the box that took it."""
    captures.put_part(session, site, capture_id, part, data)
    return Done(ok=True)


@router.post("/api/v1/captures/{capture_id}/result", response_model=Done)
def capture_result(capture_id: RowId, body: CaptureResult, session: Session = Depends(db),
                   site: Site = Depends(box_site)) -> Done:
    captures.finish(session, site, capture_id, body.ok, body.packets, body.detail)
    return Done(ok=True)


@router.get("/api/v1/firmware/{sha256}")
def get_firmware(sha256: str, request: Request, session: Session = Depends(db), site: Site = Depends(box_site),
                 store: Storage = Depends(storage)) -> Response:
    """A phone firmware file pinned for the box's site."""
    found = firmware.for_box(session, site, sha256)
    session.close()  # the stream may last minutes: its database connection goes back to the pool first
    return stored_file(request, store, found.sha256, found.size, "firmware")


@router.get("/api/v1/releases/{sha256}")
def get_release(sha256: str, request: Request, session: Session = Depends(db), site: Site = Depends(box_site),
                store: Storage = Depends(storage)) -> Response:
    """The box software bundle a running rollout offers the box's site."""
    found = rollouts.for_box(session, site, sha256)
    session.close()  # as for firmware: a fleet fetching bundles must not hold the pool's connections
    return stored_file(request, store, found.sha256, found.size, "releases")


@router.get("/api/v1/assets/{sha256}")
def get_sound(sha256: str, request: Request, session: Session = Depends(db), site: Site = Depends(box_site),
              store: Storage = Depends(storage)) -> Response:
    """A greeting or music the site's config names by hash (uploaded for this site only)."""
    found = sounds.of_site(session, site, sha256)
    session.close()
    return stored_file(request, store, found.sha256, found.size, "sounds", "audio/wav")
