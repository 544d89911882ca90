"""Remote diagnostics (issue 27): an operator asks a site's box for N seconds of its SIP and RTP;
the box captures them (appliance/capture.py) with its status and recent logs and puts
both here; the operator downloads a .pcap for Wireshark and a .txt.

A capture holds SIP digests and the calls' audio: only operators request or read one (the routes
sit under /fleet), its files are deleted LIFETIME after it was asked for, and the office's
settings page lists the captures taken of its sites (who asked, when, how long)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import wake
from .db import as_utc
from .fleet import FleetError
from .models import Capture, Site, utcnow

MAX_SECONDS = 120  # a call's worth; longer problems are caught with several
MAX_PCAP_BYTES = 16 << 20  # the box stops its capture there (about 2 minutes of 40 calls' RTP)
MAX_TEXT_BYTES = 1 << 20
LIFETIME = timedelta(days=7)
PARTS = ("pcap", "text")
# A box that restarts or dies mid-capture never reports it; past its length and this grace the
# capture is given up so that the site can be asked again.
GRACE = timedelta(minutes=5)


def request(session: Session, site: Site, operator: str, seconds: int) -> Capture:
    """Queues a capture (one at a time per site) and wakes the box."""
    if not 1 <= seconds <= MAX_SECONDS:
        raise FleetError(422, f"a capture lasts 1 to {MAX_SECONDS} seconds")
    _give_up_unreported(session, site)
    busy = session.scalar(select(Capture.id).where(Capture.site_id == site.id, Capture.state.in_(("pending", "sent"))))
    if busy is not None:
        raise FleetError(409, "a capture of this site is already under way")
    now = utcnow()
    capture = Capture(site_id=site.id, requested_by=operator, seconds=seconds, created_at=now, state="pending",
                      expires_at=now + LIFETIME)
    session.add(capture)
    wake.notify(session, site.id)
    session.commit()
    return capture


def _give_up_unreported(session: Session, site: Site) -> None:
    now = utcnow()
    for capture in session.scalars(select(Capture).where(Capture.site_id == site.id,
                                                         Capture.state.in_(("pending", "sent")))):
        if as_utc(capture.created_at) + timedelta(seconds=capture.seconds) + GRACE < now:
            capture.state, capture.done_at = "failed", now
            capture.detail = (f"the box did not report it within {int(GRACE.total_seconds() // 60)} minutes "
                              "of its end (offline, restarted or powered off)")


def hand_out(session: Session, site: Site) -> list[dict]:
    """Pending captures for the box that just sent a heartbeat (in its transaction), each once."""
    handed = []
    for capture in session.scalars(select(Capture).where(Capture.site_id == site.id, Capture.state == "pending")):
        taken = session.execute(update(Capture).where(Capture.id == capture.id, Capture.state == "pending")
                                .values(state="sent"))
        if taken.rowcount == 1:
            handed.append({"id": capture.id, "seconds": capture.seconds})
    return handed


def _of_site(session: Session, site: Site, capture_id: int) -> Capture:
    capture = session.get(Capture, capture_id)
    if capture is None or capture.site_id != site.id:
        raise FleetError(404, f"no capture {capture_id} of this site")
    return capture


def put_part(session: Session, site: Site, capture_id: int, part: str, data: bytes) -> None:
    """The box's pcap or text; the capture is done once both are there."""
    capture = _of_site(session, site, capture_id)
    if part not in PARTS:
        raise FleetError(404, f"a capture's parts are {', '.join(PARTS)}")
    if capture.state not in ("sent", "pending"):
        raise FleetError(409, f"capture {capture_id} is {capture.state}")
    if part == "pcap":
        if len(data) > MAX_PCAP_BYTES:
            raise FleetError(413, f"a capture may hold at most {MAX_PCAP_BYTES >> 20} MB")
        if data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
            raise FleetError(422, "not a pcap file")
        capture.pcap = data
    else:
        if len(data) > MAX_TEXT_BYTES:
            raise FleetError(413, f"a capture's text may hold at most {MAX_TEXT_BYTES >> 20} MB")
        capture.text = data.decode("utf-8", errors="replace").replace("\x00", "")
    session.commit()


def finish(session: Session, site: Site, capture_id: int, ok: bool, packets: int | None, detail: str) -> None:
    capture = _of_site(session, site, capture_id)
    capture.state = "done" if ok and capture.pcap is not None else "failed"
    capture.packets, capture.detail, capture.done_at = packets, detail[:500], utcnow()
    session.commit()


def listing(session: Session, site_ids: list[int]) -> list[dict]:
    """Captures of these sites, newest first, without their files (the site page, the office's
    settings page)."""
    rows = session.execute(select(Capture.id, Capture.site_id, Capture.requested_by, Capture.seconds, Capture.created_at,
                                  Capture.state, Capture.detail, Capture.packets, Capture.expires_at,
                                  Capture.pcap.isnot(None).label("has_pcap"))
                           .where(Capture.site_id.in_(site_ids)).order_by(Capture.id.desc()).limit(50)).all()
    now = utcnow()
    return [{"id": r.id, "site_id": r.site_id, "requested_by": r.requested_by, "seconds": r.seconds,
             "created_at": as_utc(r.created_at).isoformat(), "state": r.state, "detail": r.detail or "",
             "packets": r.packets, "expired": as_utc(r.expires_at) <= now, "has_pcap": bool(r.has_pcap)} for r in rows]


def download(session: Session, site: Site, capture_id: int, part: str) -> bytes:
    capture = _of_site(session, site, capture_id)
    if as_utc(capture.expires_at) <= utcnow():
        raise FleetError(410, f"capture {capture_id} expired; its files were deleted")
    data = capture.pcap if part == "pcap" else capture.text.encode() if capture.text is not None else None
    if data is None:
        raise FleetError(404, f"capture {capture_id} has no {part} (yet)")
    return data


def expire(session: Session, site: Site) -> None:
    """Deletes the files of the site's expired captures (the record that one was taken stays)."""
    session.execute(update(Capture).where(Capture.site_id == site.id, Capture.expires_at <= utcnow(),
                                          (Capture.pcap.isnot(None)) | (Capture.text.isnot(None)))
                    .values(pcap=None, text=None))
