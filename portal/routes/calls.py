"""An organisation's calls: the report, its CSV, the recordings (played with seeking, or
downloaded under a useful name) and the call-back button.

Every query asks the database for the signed-in organisation's rows only; a call id of another
organisation, guessed or copied, is "not found", the same as an id that never was.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from .. import callbacks, i18n, reports, stats, users
from ..deps import PageRefused, db, org_user, report_query, signed_form, storage
from ..fleet import FleetError
from ..models import CallbackRequest, Recording, Site
from ..pages import SECURITY_HEADERS, file_name, message, render, talk, words
from ..storage import Storage

router = APIRouter(include_in_schema=False)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range of a `Range: bytes=...` header (what audio players send), or None for
    the whole file; ValueError when it cannot be satisfied."""
    if not header:
        return None
    found = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not found or found.group(1) == found.group(2) == "":
        return None  # several ranges or a malformed header: the whole file, as RFC 9110 allows
    first, last = found.group(1), found.group(2)
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ValueError("unsatisfiable range")
    return start, end


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
    return render(request, "calls.html", me=me, conversations=found, total=total, page=page,
                  pages=max(1, math.ceil(total / reports.PAGE_SIZE)), query=query, views=reports.VIEWS,
                  preset=preset, many_sites=len({c.site for c in found}) > 1, link=link, callbacks=called_back,
                  requests=requests, queued=queued, back_link=link(),
                  csv_link="/calls.csv?" + urlencode({k: v for k, v in params.items() if v}))


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


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+")


def spreadsheet_safe(cell: str | None) -> str:
    """A cell Excel or LibreOffice would evaluate as a formula (a caller's From user can be
    `=HYPERLINK(...)`) gets a leading apostrophe; phone numbers such as +79161234567 stay as they are."""
    text = cell or ""
    if text.startswith(FORMULA_START) and text != "+" and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


@router.get("/calls.csv")
def calls_csv(request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db),
              asked: tuple[reports.Query, str | None] = Depends(report_query)) -> Response:
    """The report as CSV that Excel opens with Cyrillic intact: UTF-8 with a byte order mark,
    `;` between fields for a Russian page (what Russian Excel expects), `,` for an English one."""
    query, _preset = asked
    found = reports.all_conversations(session, me.org_id, query)
    t = words(request)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if t is i18n.WORDS["ru"] else ",")
    writer.writerow([t["col_time"], t["col_direction"], t["col_from"], t["col_to"], t["col_result"],
                     t["col_talk"], t["col_site"], t["col_recording"], "id"])
    for c in found:
        call = c.first
        legs = "; ".join(f"→ {leg.dst_number or leg.dst}" for leg in c.linked)
        writer.writerow([spreadsheet_safe(cell) for cell in (
            call.started_at[:19].replace("T", " "), t.get("dir_" + call.direction, call.direction),
            call.src + (f" ({call.src_name})" if call.src_name and call.src_name != call.src else ""),
            (call.dst_number or call.dst) + (f" {legs}" if legs else ""),
            t.get("res_" + (call.disposition or "live"), call.disposition), talk(call.billsec), c.site,
            "+" if call.recording_sha256 else "", call.id)])
    name = f"calls_{query.first.isoformat()}_{query.last.isoformat()}.csv"
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers=dict(SECURITY_HEADERS, **{"Content-Disposition": f'attachment; filename="{name}"'}))


@router.get("/calls/{call_id}/recording")
def recording(call_id: str, request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db),
              store: Storage = Depends(storage)) -> Response:
    call = reports.call_of_org(session, me.org_id, call_id)
    stored = session.get(Recording, (call.site_id, call.recording_sha256)) \
        if call is not None and call.recording_sha256 else None
    if stored is None:
        raise PageRefused(404, "not_found", me)
    headers = dict(SECURITY_HEADERS, **{"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"})
    if request.query_params.get("download"):
        name = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", request.query_params.get("name") or file_name(call)).strip()
        name = name if name.lower().endswith(".wav") else name + ".wav"
        ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
        headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    try:
        wanted = parse_range(request.headers.get("range"), stored.size)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{stored.size}"})
    start, end = wanted or (0, stored.size - 1)
    headers["Content-Length"] = str(end - start + 1)
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
    return StreamingResponse(store.read_range(stored.sha256, start, end), status_code=206 if wanted else 200,
                             media_type="audio/wav", headers=headers)
