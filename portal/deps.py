"""FastAPI dependencies every route declares instead of checking by hand: the database session
of the request, the recordings store, the box whose credential a request carries, the person
signed in and whether the page is for their role, a posted form with its CSRF token checked,
and the report's parameters from the URL.

A refusal is raised, not returned: SignInNeeded becomes a redirect to /login and PageRefused a
page saying why (app.py installs both handlers), FleetError the box API's JSON error."""
from __future__ import annotations

import re
import secrets
from datetime import date
from typing import Iterator
from urllib.parse import parse_qs

from fastapi import Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import UploadFile
from sqlalchemy.orm import Session

from . import clock, reports, users
from .fleet import FleetError, authenticate
from .models import Site
from .storage import Storage

SESSION_COOKIE = "edgepbx_session"
MAX_FORM_BYTES = 8 << 10


class SignInNeeded(Exception):
    """Nobody is signed in (or the session ended): the page is /login."""


class PageRefused(Exception):
    """A page this person may not have: `key` names the i18n text shown with `status`."""

    def __init__(self, status: int, key: str, me: users.SignedIn | None):
        super().__init__(key)
        self.status, self.key, self.me = status, key, me


def db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def storage(request: Request) -> Storage:
    return request.app.state.storage


def box_site(request: Request, session: Session = Depends(db)) -> Site:
    """The site whose box sent this request (its credential as a Bearer token)."""
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        raise FleetError(401, "missing site credential")
    return authenticate(session, header[len("Bearer "):].strip())


def signed_in(request: Request, session: Session = Depends(db)) -> users.SignedIn:
    me = users.current(session, request.cookies.get(SESSION_COOKIE))
    if me is None:
        raise SignInNeeded()
    return me


def org_user(me: users.SignedIn = Depends(signed_in)) -> users.SignedIn:
    """Someone of an organisation (admin or viewer): its calls, statistics and settings."""
    if me.org_id is None:
        raise PageRefused(403, "forbidden", me)
    return me


def operator(me: users.SignedIn = Depends(signed_in)) -> users.SignedIn:
    """The provider's staff: the fleet of sites."""
    if me.role != "operator":
        raise PageRefused(403, "forbidden", me)
    return me


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    body = await request.body()
    if len(body) > limit:
        raise FleetError(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


async def form(request: Request) -> dict[str, str]:
    return await read_form(request)


async def upload_form(request: Request) -> dict[str, str]:
    """A multipart form with one file (a release bundle, a greeting): its text fields; the file,
    spooled to disk by the parser, waits on request.state.upload for the endpoint (which runs in a
    worker thread, so copying it does not stall other requests)."""
    try:
        parsed = await request.form(max_files=1, max_fields=8)
    except Exception as exc:  # noqa: BLE001 - the parser's errors (not multipart, too many parts) are the client's
        raise FleetError(400, f"the upload is not a form with one file: {exc}") from None
    request.state.upload = next((v for v in parsed.values() if isinstance(v, UploadFile)), None)
    return {k: v for k, v in parsed.items() if isinstance(v, str)}


def csrf_checked(fields: dict[str, str], me: users.SignedIn) -> dict[str, str]:
    """The form, if it carries the token of the session that posts it (else another site made
    the browser post it)."""
    if not secrets.compare_digest(me.csrf_token, fields.get("csrf", "")):
        raise PageRefused(403, "expired_form", me)
    return fields


def signed_form(who=signed_in, read=form):  # noqa: ANN001,ANN201 - dependency factories
    """A dependency: (the posted form, who posted it), for people `who` allows, CSRF checked."""
    # `who` first: FastAPI solves dependencies in order, so someone refused is refused before
    # their body is read (an upload of 20 MB is not parsed for a viewer's 403)
    def dependency(me: users.SignedIn = Depends(who), fields: dict[str, str] = Depends(read)) \
            -> tuple[dict[str, str], users.SignedIn]:
        return csrf_checked(fields, me), me
    return dependency


def report_query(request: Request, me: users.SignedIn = Depends(org_user),
                 session: Session = Depends(db)) -> tuple[reports.Query, str | None]:
    """The report's parameters from the URL, forgiving: anything unknown falls back to a default.
    Days are the organisation's sites' own (portal/clock.py)."""
    zones = clock.site_zones(session, me.org_id)
    q = request.query_params
    preset = q.get("preset") if q.get("preset") in ("today", "yesterday", "week", "month") else None
    if preset is None:
        try:  # any range the user typed; this week when there is none (or it is not a date)
            first, last = sorted((date.fromisoformat(q.get("from", "")), date.fromisoformat(q.get("to", ""))))
        except ValueError:
            preset = "week"
    if preset:
        first, last = reports.preset_range(preset, clock.today(zones))
    query = reports.Query(first, last, q.get("view") if q.get("view") in reports.VIEWS else "all",
                          extension=q.get("ext", "").strip()[:32], number=q.get("number", "").strip()[:32],
                          recorded_only=q.get("recorded") == "1",
                          sort=q.get("sort") if q.get("sort") in reports.SORTS else "time",
                          descending=q.get("dir") != "asc", zones=zones)
    return query, preset


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


def stored_file(request: Request, store: Storage, sha256: str, size: int, kind: str,
                media_type: str = "application/octet-stream") -> Response:
    """A file of the store, streamed; a Range resumes a download."""
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted or (0, size - 1)
    headers = {"Content-Length": str(end - start + 1), "Accept-Ranges": "bytes"}
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(store.read_range(sha256, start, end, kind=kind),
                             status_code=206 if wanted else 200, media_type=media_type, headers=headers)
