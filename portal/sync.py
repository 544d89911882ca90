"""What boxes send: CDR batches (upserted by id) and recordings in resumable, verified chunks."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import String, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .fleet import FleetError
from .models import Call, Recording, Site, Upload, UploadChunk, utcnow
from .storage import Storage, staged_file

CDR_FIELDS = ("id", "sip_call_id", "started_at", "answered_at", "ended_at", "direction", "src", "src_name", "dst",
              "dst_number", "trunk", "picked_up_by", "transferred_to", "linked_id", "disposition", "sip_code",
              "duration", "billsec", "recording", "answered_by", "rang", "quality")
REQUIRED = ("id", "started_at", "direction", "src", "dst")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
EXTENSION = re.compile(r"^[0-9A-Za-z*#+]{1,16}$")
MAX_BATCH = 1000
MAX_CHUNK = 4 << 20
MAX_RECORDING = 2 << 30
STALE_UPLOAD = timedelta(days=7)  # an upload not finished in a week is abandoned
# The text fields of a call record and how long each may be (the call table's column lengths).
TEXT_LIMITS = {f: Call.__table__.c[f].type.length or 1 << 16 for f in CDR_FIELDS
               if f in Call.__table__.c and isinstance(Call.__table__.c[f].type, String)}


def _checked(record: dict) -> dict:
    """A CDR as the box sent it, or FleetError(422) naming what is wrong."""
    if not isinstance(record, dict):
        raise FleetError(422, "each call must be an object")
    missing = [f for f in REQUIRED if not record.get(f)]
    if missing:
        raise FleetError(422, f"call {record.get('id')!r}: missing {', '.join(missing)}")
    if not isinstance(record["id"], str) or not UUID.match(record["id"]):
        raise FleetError(422, f"call id {record['id']!r} is not a UUID")
    values = {f: record.get(f) for f in CDR_FIELDS}
    try:
        started = datetime.fromisoformat(values["started_at"])
    except (TypeError, ValueError):
        raise FleetError(422, f"call {record['id']}: started_at {values['started_at']!r} is not ISO 8601") from None
    values["started_utc"] = (started if started.tzinfo else started.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    for f in ("sip_code", "duration", "billsec"):
        if values[f] is not None and (not isinstance(values[f], int) or isinstance(values[f], bool)
                                      or not -(2 ** 31) <= values[f] < 2 ** 31):
            raise FleetError(422, f"call {record['id']}: {f} must be an integer")
    rang = values["rang"] or []
    if not isinstance(rang, list) or not all(isinstance(e, str) and EXTENSION.match(e) for e in rang) \
            or len(",".join(rang)) > Call.__table__.c["rang"].type.length:
        raise FleetError(422, f"call {record['id']}: rang must be a list of extension numbers")
    values["rang"] = ",".join(rang) or None
    values["quality"] = _quality(record["id"], values["quality"])
    values["mos_min"] = worst_mos(values["quality"])
    for f, most in TEXT_LIMITS.items():  # what the columns hold: a longer value would fail the whole batch
        if values[f] is not None and (not isinstance(values[f], str) or len(values[f]) > most or "\x00" in values[f]):
            raise FleetError(422, f"call {record['id']}: {f} must be text of at most {most} characters, without NUL")
    return values


QUALITY_SIDES = ("caller", "callee")
QUALITY_TEXT = {"codec": 32}
QUALITY_NUMBERS = ("packets", "lost", "loss_pct", "jitter_ms", "jitter_max_ms", "rtt_ms", "reported_loss_pct",
                   "reported_jitter_ms", "mos",
                   # what the phone itself reported (RTCP-XR, appliance/featureserver/quality.py PhoneReport)
                   "phone_mos", "phone_mos_cq", "phone_loss_pct", "phone_rtt_ms")


def worst_mos(quality: str | None) -> float | None:
    """The worse leg's MOS of a call's quality (as _quality keeps it), or None."""
    scores = [leg["mos"] for leg in json.loads(quality).values() if isinstance(leg.get("mos"), (int, float))] \
        if quality else []
    return float(min(scores)) if scores else None


def _quality(call_id: str, quality: object) -> str | None:
    """A call's measured quality as JSON text: per side, a codec name and numbers (or null), no more."""
    if quality is None:
        return None
    if not isinstance(quality, dict) or not set(quality) <= set(QUALITY_SIDES):
        raise FleetError(422, f"call {call_id}: quality must be an object with caller and callee")
    kept = {}
    for side, figures in quality.items():
        if not isinstance(figures, dict):
            raise FleetError(422, f"call {call_id}: quality.{side} must be an object")
        leg = {}
        for name, value in figures.items():
            if name in QUALITY_TEXT and isinstance(value, str) and len(value) <= QUALITY_TEXT[name] and "\x00" not in value:
                leg[name] = value
            elif name in QUALITY_NUMBERS and (value is None or isinstance(value, (int, float))
                                              and not isinstance(value, bool) and -1e9 < value < 1e12):
                leg[name] = value
            else:
                raise FleetError(422, f"call {call_id}: quality.{side}.{name} is not a figure the portal keeps")
        kept[side] = leg
    return json.dumps(kept)


def upsert_calls(session: Session, site: Site, records: list) -> int:
    """Inserts or updates a batch in one statement; a record sent twice (at start and at end,
    or again after a lost answer) is one call."""
    if not isinstance(records, list) or len(records) > MAX_BATCH:
        raise FleetError(422, f"calls must be a list of at most {MAX_BATCH}")
    rows = {}
    for record in records:
        values = _checked(record)
        rows[values["id"]] = dict(values, site_id=site.id, updated_at=utcnow())  # the last copy in a batch wins
    if not rows:
        return 0
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Call)
    changing = {f: stmt.excluded[f] for f in CDR_FIELDS if f != "id"} | {
        "started_utc": stmt.excluded.started_utc, "updated_at": stmt.excluded.updated_at, "mos_min": stmt.excluded.mos_min}
    # executemany with the rows as parameters: SQLAlchemy batches them into multi-row statements it
    # compiles once; .values(rows) compiled a 10,000-parameter statement per batch, 10-18x slower.
    session.execute(stmt.on_conflict_do_update(index_elements=["site_id", "id"], set_=changing), list(rows.values()))
    session.commit()
    return len(rows)


def offer_recording(session: Session, storage: Storage, site: Site, call_id: str, sha256: str, size: int) -> dict:
    """The box announces a call's recording: `stored` if the portal has it (it is linked to the
    call), else where to resume uploading."""
    if not SHA256.match(str(sha256)) or not isinstance(size, int) or not 0 < size <= MAX_RECORDING:
        raise FleetError(422, "a recording needs sha256 (64 hex digits) and a size in bytes")
    call = session.get(Call, (site.id, call_id))
    if call is None:
        raise FleetError(409, f"call {call_id} is not here yet; send its record first")
    if session.get(Recording, (site.id, sha256)) is not None:
        _link(session, site, call_id, sha256)
        return {"status": "stored"}
    upload = session.scalar(select(Upload).where(Upload.site_id == site.id, Upload.sha256 == sha256))
    if upload is None:
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(Upload).values(site_id=site.id, sha256=sha256, size=size, received=0,
                                                      created_at=utcnow()).on_conflict_do_nothing())
        session.commit()
        upload = session.scalar(select(Upload).where(Upload.site_id == site.id, Upload.sha256 == sha256))
    if upload.size != size:
        raise FleetError(409, f"an upload of {sha256} with another size ({upload.size}) is in progress")
    return {"status": "upload", "offset": upload.received}


def _link(session: Session, site: Site, call_id: str, sha256: str) -> None:
    session.execute(update(Call).where(Call.site_id == site.id, Call.id == call_id).values(recording_sha256=sha256))
    session.commit()


def put_chunk(session: Session, storage: Storage, site: Site, call_id: str, sha256: str, offset: int,
              data: bytes) -> dict:
    """Appends one chunk at exactly `offset`; the last one is verified against the hash before
    the portal says `stored`. A stale or repeated chunk gets 409 with the offset to resume from."""
    upload = session.scalar(select(Upload).where(Upload.site_id == site.id, Upload.sha256 == sha256))
    if upload is None:
        if session.get(Recording, (site.id, sha256)) is not None:
            _link(session, site, call_id, sha256)
            return {"status": "stored"}
        raise FleetError(404, "no upload in progress for this recording; offer it first")
    if not data or len(data) > MAX_CHUNK or offset + len(data) > upload.size:
        raise FleetError(422, f"a chunk must be 1 byte to {MAX_CHUNK} bytes and end within the recording")
    moved = session.execute(update(Upload).where(Upload.id == upload.id, Upload.received == offset)
                            .values(received=offset + len(data)))
    if moved.rowcount != 1:
        session.rollback()
        current = session.scalar(select(Upload.received).where(Upload.id == upload.id))
        raise FleetError(409, f"resume at offset {current}")
    session.add(UploadChunk(upload_id=upload.id, offset=offset, data=data))
    session.commit()
    if offset + len(data) < upload.size:
        return {"status": "upload", "offset": offset + len(data)}
    return _complete(session, storage, site, upload, call_id)


def _complete(session: Session, storage: Storage, site: Site, upload: Upload, call_id: str) -> dict:
    """Joins the chunks, checks the hash, moves the file into storage, links the call."""
    digest = hashlib.sha256()
    head = b""
    fh, staged = staged_file(storage)
    try:
        with fh:
            offsets = session.scalars(select(UploadChunk.offset).where(UploadChunk.upload_id == upload.id)
                                      .order_by(UploadChunk.offset)).all()
            for offset in offsets:  # one chunk in memory at a time
                data = session.scalar(select(UploadChunk.data).where(UploadChunk.upload_id == upload.id,
                                                                     UploadChunk.offset == offset))
                digest.update(data)
                fh.write(data)
                head = head or data[:4]
        if digest.hexdigest() != upload.sha256:
            _discard(session, upload)
            raise FleetError(422, f"sha256 mismatch: got {digest.hexdigest()}; upload discarded, send it again")
        storage.put_file(upload.sha256, staged)
    finally:
        staged.unlink(missing_ok=True)
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(Recording).values(site_id=site.id, sha256=upload.sha256, size=upload.size,
                                                     audio_format="opus" if head == b"OggS" else "wav",
                                                     stored_at=utcnow()).on_conflict_do_nothing())
    _discard(session, upload)
    _link(session, site, call_id, upload.sha256)
    return {"status": "stored"}


def discard_stale_uploads(session: Session, site: Site) -> int:
    """Uploads the site began more than STALE_UPLOAD ago and never finished (a box replaced, its
    recording set aside) leave with their chunks; a box that comes back later starts that
    recording again from its first byte. In the caller's transaction."""
    stale = select(Upload.id).where(Upload.site_id == site.id, Upload.created_at < utcnow() - STALE_UPLOAD)
    session.execute(delete(UploadChunk).where(UploadChunk.upload_id.in_(stale)))
    return session.execute(delete(Upload).where(Upload.id.in_(stale.scalar_subquery()))).rowcount


def _discard(session: Session, upload: Upload) -> None:
    session.execute(delete(UploadChunk).where(UploadChunk.upload_id == upload.id))
    session.execute(delete(Upload).where(Upload.id == upload.id))
    session.commit()


def site_calls(session: Session, site: Site) -> list[dict]:
    """The site's calls in the order they started, with the box's CDR fields and the recording hash."""
    calls = session.scalars(select(Call).where(Call.site_id == site.id).order_by(Call.started_utc, Call.id)).all()
    return [{f: getattr(c, f) for f in CDR_FIELDS} | {"rang": c.rang.split(",") if c.rang else [],
                                                     "quality": json.loads(c.quality) if c.quality else None,
                                                     "recording_sha256": c.recording_sha256} for c in calls]
