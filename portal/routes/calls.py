"""An organisation's calls: the report, its CSV, the recordings (played with seeking, or
downloaded under a useful name) and the call-back button.

Every query asks the database for the signed-in organisation's rows only; a call id of another
organisation, guessed or copied, is "not found", the same as an id that never was.
"""
from __future__ import annotations

import json
import logging
import math
import re
from contextlib import closing
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from .. import callbacks, clock, export, i18n, reports, stats, transcode, users
from ..deps import PageRefused, db, org_user, parse_range, report_query, signed_form, storage
from ..fleet import FleetError
from ..models import CallbackRequest, Recording, Site
from ..pages import SECURITY_HEADERS, file_name, message, render, words
from ..storage import Storage

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


@router.get("/calls")
def calls_page(request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db),
               asked: tuple[reports.Query, str | None] = Depends(report_query)) -> Response:
    query, preset = asked
    page = int(request.query_params.get("page")) if (request.query_params.get("page") or "").isdigit() else 1
    found, total = reports.conversations(session, me.org_id, query, page)
    called_back = stats.callbacks_for(session, me.org_id, [c.first for c in found])
    requests = callbacks.latest_for(session, [(c.first.site_id, c.first.id) for c in found])
    queued = queued_call_back(session, me, request.query_params.get("queued", ""))
    params = {"from": query.first.isoformat(), "to": query.last.isoformat(), "view": query.view,
              "ext": query.extension, "number": query.number, "recorded": "1" if query.recorded_only else "",
              "sort": query.sort, "dir": "desc" if query.descending else "asc"}

    def link(**changes: str) -> str:
        """This report's URL with some parameters changed (empty ones left out)."""
        merged = {k: v for k, v in (params | changes).items() if v}
        return "/calls?" + urlencode(merged)
    names = reports.extension_names(session, me.org_id)
    exported = urlencode({k: v for k, v in params.items() if v})
    return render(request, "calls.html", me=me, conversations=found, total=total, page=page,
                  pages=max(1, math.ceil(total / reports.PAGE_SIZE)), query=query, views=reports.VIEWS,
                  preset=preset, many_sites=len({c.site for c in found}) > 1, link=link, callbacks=called_back,
                  requests=requests, queued=queued, back_link=link(), csv_link="/calls.csv?" + exported,
                  xlsx_link="/calls.xlsx?" + exported, local=lambda call: clock.local(call, query.zones),
                  zone_label=clock.offset_label(clock.org_zone(query.zones)),
                  ext_name=lambda site_id, ext: names.get(site_id, {}).get(ext, ""))


def queued_call_back(session: Session, me: users.SignedIn, request_id: str) -> dict | None:
    """The notice after "call back": which phone rings, when, and what it dials (this user's requests only)."""
    row = session.get(CallbackRequest, int(request_id)) if request_id.isdigit() and len(request_id) < 10 else None
    if row is None or row.user_id != me.user_id:
        return None
    site = session.get(Site, row.site_id)
    status = json.loads(site.last_status) if site and site.last_status else {}
    return {"ext": row.extension, "number": row.number, "seconds": int(status.get("heartbeat_seconds") or 60)}


@router.post("/calls/{call_id}/call-back")
def call_back(call_id: str, request: Request, posted=Depends(signed_form(org_user)),  # noqa: ANN001
              session: Session = Depends(db)) -> Response:
    """Queues the box's call back of a missed call: it rings the user's own extension, then
    dials the caller (the box's dial plan and the extension's permissions apply there)."""
    fields, me = posted
    if me.role != "admin":  # a viewer reads reports and plays recordings; calling out costs the office
        raise PageRefused(403, "forbidden", me)
    if not me.extension:
        raise PageRefused(409, "no_extension", me)
    try:
        queued = callbacks.request_call_back(session, me.org_id, me.user_id, me.extension, call_id).id
    except FleetError as exc:
        if exc.status == 404:
            raise PageRefused(404, "not_found", me) from None
        return message(request, exc.status, me, text=exc.message)
    back = fields.get("back", "")
    back = back if back.startswith("/calls?") or back == "/calls" else "/calls"
    return RedirectResponse(f"{back}{'&' if '?' in back else '?'}queued={queued}", status_code=303)


def _export_parts(request: Request, me: users.SignedIn, session: Session, query: reports.Query):
    found = reports.all_conversations(session, me.org_id, query)
    names = reports.extension_names(session, me.org_id)
    backs = stats.callbacks_for(session, me.org_id, [c.first for c in found])
    return found, words(request), (lambda site_id, ext: names.get(site_id, {}).get(ext, "")), backs


@router.get("/calls.csv")
def calls_csv(request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db),
              asked: tuple[reports.Query, str | None] = Depends(report_query)) -> Response:
    """The report as CSV that Excel opens with Cyrillic intact: UTF-8 with a byte order mark,
    `;` between fields for a Russian page (what Russian Excel expects), `,` for an English one;
    talk time in seconds (a plain number Excel sums; `0:06` would be read as six minutes)."""
    query, _preset = asked
    found, t, names, backs = _export_parts(request, me, session, query)
    body = export.to_csv(found, t, t is i18n.WORDS["ru"], names, backs)
    name = f"calls_{query.first.isoformat()}_{query.last.isoformat()}.csv"
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers=dict(SECURITY_HEADERS, **{"Content-Disposition": f'attachment; filename="{name}"'}))


@router.get("/calls.xlsx")
def calls_xlsx(request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db),
               asked: tuple[reports.Query, str | None] = Depends(report_query)) -> Response:
    """The report as an Excel workbook (portal/export.py)."""
    query, _preset = asked
    found, t, names, backs = _export_parts(request, me, session, query)
    body = export.to_xlsx(found, t, clock.offset_label(clock.org_zone(query.zones)), names, backs)
    name = f"calls_{query.first.isoformat()}_{query.last.isoformat()}.xlsx"
    return Response(body, media_type=export.XLSX_TYPE,
                    headers=dict(SECURITY_HEADERS, **{"Content-Disposition": f'attachment; filename="{name}"'}))


@router.get("/calls/{call_id}/recording")
def recording(call_id: str, request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db),
              store: Storage = Depends(storage)) -> Response:
    """The call's recording as stored (played with seeking: HTTP ranges), or, with `format`,
    converted to Opus, WAV or MP3 (portal/transcode.py); `download` names the file."""
    call = reports.call_of_org(session, me.org_id, call_id)
    stored = session.get(Recording, (call.site_id, call.recording_sha256)) \
        if call is not None and call.recording_sha256 else None
    if stored is None:
        raise PageRefused(404, "not_found", me)
    wanted_format = request.query_params.get("format") or stored.audio_format
    if wanted_format not in transcode.FORMATS:
        raise PageRefused(400, "recording_format_unknown", me)
    media_type, extension = transcode.FORMATS[wanted_format]
    headers = dict(SECURITY_HEADERS, **{"Cache-Control": "private, max-age=3600"})
    if request.query_params.get("download"):
        name = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", request.query_params.get("name") or file_name(call)).strip()
        name = re.sub(r"\.(wav|opus|ogg|mp3)$", "", name, flags=re.IGNORECASE) + extension
        ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
        headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    sha256, size, source_format = stored.sha256, stored.size, stored.audio_format
    session.close()  # a recording plays for minutes: the database connection goes back to the pool first
    if wanted_format != source_format:
        try:
            with closing(store.open(sha256)) as stored:  # an S3 body or a file: both close
                chunks, length = transcode.converted(stored, source_format, wanted_format, store.staging_dir())
        except transcode.Busy:
            answer = message(request, 503, me, "recording_converting_busy")
            answer.headers["Retry-After"] = "5"
            return answer
        except transcode.ConversionFailed as exc:
            log.error("recording %s could not be converted to %s: %s", sha256, wanted_format, exc)
            raise PageRefused(422, "recording_not_convertible", me) from None
        headers["Content-Length"] = str(length)
        return StreamingResponse(chunks, media_type=media_type, headers=headers)
    headers["Accept-Ranges"] = "bytes"
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted or (0, size - 1)
    headers["Content-Length"] = str(end - start + 1)
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(store.read_range(sha256, start, end), status_code=206 if wanted else 200,
                             media_type=media_type, headers=headers)
