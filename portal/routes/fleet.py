"""The provider's fleet: every site with its state, a site's history, phones and config
versions, and an operator's edited config pushed to its box."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from .. import alarms, backups, captures, firmware, ladder, quality, rollouts, users
from ..configs import MAX_CONFIG_BYTES, push_config, version_diffs
from ..deps import db, operator, read_form, signed_form, storage, upload_form
from ..bodies import RowId
from ..fleet import FleetError, add_site, heartbeat_history, site_by_name, site_rows
from ..models import Organisation
from ..pages import message, render
from ..phones import site_phones
from ..storage import Storage

router = APIRouter(include_in_schema=False)


@router.get("/fleet")
def fleet_page(request: Request, me: users.SignedIn = Depends(operator), session: Session = Depends(db)) -> Response:
    return render(request, "fleet.html", me=me, sites=site_rows(session))


def rollouts_view(request: Request, session: Session, me: users.SignedIn, status: int = 200, error: str | None = None,
                  form: dict[str, str] | None = None, added: str | None = None) -> Response:
    return render(request, "rollouts.html", status, me=me, releases=rollouts.releases(session),
                  rollouts=rollouts.status(session), error=error, form=form or {}, added=added,
                  can_upload=request.app.state.release_keyring is not None)


@router.post("/rollouts/releases", max_body_size=rollouts.MAX_BUNDLE_BYTES + (1 << 20))
def rollouts_release(request: Request, posted=Depends(signed_form(operator, upload_form)),  # noqa: ANN001
                     session: Session = Depends(db), store: Storage = Depends(storage)) -> Response:
    """An uploaded bundle, checked with RAUC against the provider's keyring, becomes a release;
    the page says its version, as `edgepbx-portal release add` prints it."""
    _, me = posted
    bundle: UploadFile | None = request.state.upload
    keyring = request.app.state.release_keyring
    if keyring is None:
        return rollouts_view(request, session, me, 409, "this portal was started without --release-keyring: "
                                                        "it cannot check bundles")
    if bundle is None:
        return rollouts_view(request, session, me, 422, "choose the bundle (.raucb) to upload")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.raucb"
        with open(path, "wb") as out:
            shutil.copyfileobj(bundle.file, out, 1 << 20)
        bundle.file.close()
        try:
            release = rollouts.add_release(session, store, path, keyring, by=me.username)
        except FleetError as exc:
            session.rollback()
            return rollouts_view(request, session, me, exc.status, exc.message)
    return rollouts_view(request, session, me, added=release.version)


@router.get("/rollouts")
def rollouts_page(request: Request, me: users.SignedIn = Depends(operator), session: Session = Depends(db)) -> Response:
    """Box software: the releases, the rollouts with each site's state, and their controls."""
    return rollouts_view(request, session, me)


@router.post("/rollouts")
def rollouts_start(request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                   session: Session = Depends(db)) -> Response:
    fields, me = posted
    names = None if fields.get("all") else [n.strip() for n in fields.get("sites", "").split(",") if n.strip()]
    try:
        rollouts.start(session, fields.get("release", ""), names, me.username,
                       canary=int(fields.get("canary") or 1), wave_percent=int(fields.get("wave_percent") or 25),
                       window=fields.get("window", "").strip() or None,
                       deadline_seconds=int(fields.get("deadline_minutes") or 30) * 60)
    except ValueError:
        return rollouts_view(request, session, me, 422, "canaries, wave and minutes: whole numbers", fields)
    except FleetError as exc:
        session.rollback()
        return rollouts_view(request, session, me, exc.status, exc.message, fields)
    return RedirectResponse("/rollouts", status_code=303)


@router.post("/rollouts/{rollout_id}/{action}")
def rollouts_control(rollout_id: RowId, action: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                     session: Session = Depends(db)) -> Response:
    """Pause, resume (also after a halt) or abort."""
    _, me = posted
    try:
        rollouts.control(session, rollout_id, action)
    except FleetError as exc:
        session.rollback()
        return rollouts_view(request, session, me, exc.status, exc.message)
    return RedirectResponse("/rollouts", status_code=303)


def site_page(request: Request, session: Session, me: users.SignedIn, name: str, status: int = 200,
              pushed: int | None = None, errors: list[str] | None = None, text: str = "",
              replacement_code: str | None = None, backup_error: str | None = None,
              capture_error: str | None = None) -> Response:
    try:
        site = site_by_name(session, name)
    except FleetError:
        return message(request, 404, me, "not_found")
    row = next(r for r in site_rows(session) if r["site"] == name)
    history, versions, phones = heartbeat_history(session, name), version_diffs(session, name), site_phones(session, name)
    return render(request, "site.html", status, me=me, site=row, history=history, versions=versions,
                  phones=phones, pushed=pushed, errors=errors or [], text=text,
                  alarm_history=alarms.site_history(session, site.id), backups=backups.listing(session, site),
                  replacement_code=replacement_code, backup_error=backup_error,
                  captures=captures.listing(session, [site.id]), capture_error=capture_error,
                  capture_max=captures.MAX_SECONDS, firmware_pins=firmware.effective(session, site))


@router.get("/fleet/{name}")
def fleet_site(name: str, request: Request, me: users.SignedIn = Depends(operator),
               session: Session = Depends(db)) -> Response:
    return site_page(request, session, me, name)


async def config_form(request: Request) -> dict[str, str]:
    return await read_form(request, limit=3 * MAX_CONFIG_BYTES)  # urlencoded: up to 3 bytes a byte


@router.post("/fleet/{name}/config", max_body_size=3 * MAX_CONFIG_BYTES)
def fleet_push(name: str, request: Request, posted=Depends(signed_form(operator, config_form)),  # noqa: ANN001
               session: Session = Depends(db)) -> Response:
    """An operator's edited config: checked with the box's own validator before it is queued."""
    fields, me = posted
    text = fields.get("config", "").replace("\r\n", "\n")
    try:
        version = push_config(session, name, text, author=me.username)
    except FleetError as exc:
        session.rollback()
        errors = exc.message.split("\n")[1:] or [exc.message]
        return site_page(request, session, me, name, exc.status, errors=errors, text=text)
    return site_page(request, session, me, name, pushed=version)


@router.post("/fleet/{name}/backups/{backup_id}")
def fleet_backup(name: str, backup_id: RowId, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                 session: Session = Depends(db)) -> Response:
    """A backup as one file for `edgepbx restore` on a box with no internet: re-encrypted with the
    operator's passphrase (the site's key never leaves the portal)."""
    fields, me = posted
    try:
        site = site_by_name(session, name)
        blob = backups.for_installer(session, site, backup_id, fields.get("passphrase", ""))
    except FleetError as exc:
        if exc.status == 404:
            return message(request, 404, me, "not_found")
        return site_page(request, session, me, name, exc.status, backup_error=exc.message)
    session.commit()
    return attachment(blob, f"{name}-{backup_id}.edgepbx-backup", "application/octet-stream")


def attachment(data: bytes, filename: str, media_type: str) -> Response:
    """A file to save (a site's name made safe for a file name), never kept by a cache."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in filename)
    return Response(data, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{safe}"', "Cache-Control": "no-store"})


@router.post("/fleet/{name}/replacement-code")
def fleet_replacement_code(name: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                           session: Session = Depends(db)) -> Response:
    """A one-time code for the box that replaces this site's (shown once, kept only as a hash)."""
    _, me = posted
    try:
        site = site_by_name(session, name)
    except FleetError:
        return message(request, 404, me, "not_found")
    code = add_site(session, session.get(Organisation, site.org_id).name, site.name)
    return site_page(request, session, me, name, replacement_code=code)


@router.post("/fleet/{name}/captures")
def fleet_capture(name: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                  session: Session = Depends(db)) -> Response:
    """One click: the box captures N seconds of its SIP and RTP, with its status and recent logs."""
    fields, me = posted
    try:
        site = site_by_name(session, name)
    except FleetError:
        return message(request, 404, me, "not_found")
    try:
        captures.request(session, site, me.username, int(fields.get("seconds", "") or 0))
    except ValueError:
        return site_page(request, session, me, name, 422, capture_error="seconds: a whole number")
    except FleetError as exc:
        session.rollback()
        return site_page(request, session, me, name, exc.status, capture_error=exc.message)
    return RedirectResponse(f"/fleet/{quote(name)}", status_code=303)


@router.get("/fleet/{name}/captures/{capture_id}/{part}")
def fleet_capture_file(name: str, capture_id: RowId, part: str, request: Request,
                       me: users.SignedIn = Depends(operator), session: Session = Depends(db)) -> Response:
    """The capture as a .pcap (Wireshark opens it), its .txt (status and recent logs), or its SIP
    ladder as a page."""
    if part not in ("pcap", "txt", "ladder"):
        return message(request, 404, me, "not_found")
    try:
        site = site_by_name(session, name)
        data = captures.download(session, site, capture_id, "text" if part == "txt" else "pcap")
    except FleetError as exc:
        return message(request, exc.status, me, "not_found" if exc.status == 404 else None, text=exc.message)
    if part == "ladder":
        session.close()  # reading a big capture takes a moment: the connection goes back to the pool first
        return render(request, "ladder.html", me=me, site=name, capture_id=capture_id,
                      calls=ladder.calls(ladder.sip_messages(data)))
    return attachment(data, f"{name}-capture-{capture_id}.{part}",
                      "application/vnd.tcpdump.pcap" if part == "pcap" else "text/plain; charset=utf-8")


@router.get("/fleet/{name}/quality")
def fleet_quality(name: str, request: Request, me: users.SignedIn = Depends(operator),
                  session: Session = Depends(db)) -> Response:
    try:
        site = site_by_name(session, name)
    except FleetError:
        return message(request, 404, me, "not_found")
    return render(request, "quality.html", me=me, sites=[{"name": site.name, "quality": quality.site_quality(session, site)}])
