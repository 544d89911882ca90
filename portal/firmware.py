"""Phone firmware from the portal (issue 27): an operator uploads a vendor model's firmware file
(`edgepbx-portal firmware add`), pins a version for the whole fleet or one site (a site's pin
wins), and each box is told in its heartbeat's answer which files its phones should run; it
fetches them (resumably, `GET /api/v1/firmware/SHA256` with a Range) into its own cache and
serves them through its templates' firmware keys.

The bytes go to the store (local directory or S3) by content hash, streamed: a file of hundreds of
megabytes never sits in the portal's memory."""
from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from .db import as_utc
from .fleet import FleetError, site_by_name
from .models import FirmwarePin, PhoneFirmware, Site, utcnow
from .storage import Storage, put_copy

MAX_FIRMWARE_BYTES = 1 << 30
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def _checked(vendor: str, model: str, version: str) -> tuple[str, str, str]:
    for what, value in (("vendor", vendor), ("model", model), ("version", version)):
        if not NAME.fullmatch(value or ""):
            raise FleetError(422, f"{what} {value!r}: letters, digits, '.', '_', '+', '-' (at most 64)")
    return vendor.lower(), model, version


def add(session: Session, store: Storage, vendor: str, model: str, version: str, source: Path, by: str) -> PhoneFirmware:
    """Copies the file into the store (hashing as it goes) and records it; the same version of
    the same model twice is refused (409): a pinned version never changes under the phones."""
    vendor, model, version = _checked(vendor, model, version)
    if session.scalar(select(PhoneFirmware.id).where(PhoneFirmware.vendor == vendor, PhoneFirmware.model == model,
                                                     PhoneFirmware.version == version)) is not None:
        raise FleetError(409, f"{vendor} {model} {version} is there already")
    size = source.stat().st_size
    if not 0 < size <= MAX_FIRMWARE_BYTES:
        raise FleetError(413 if size else 422, f"a firmware file holds 1 byte to {MAX_FIRMWARE_BYTES >> 20} MB")
    sha256 = put_copy(store, source, "firmware")
    row = PhoneFirmware(vendor=vendor, model=model, version=version, filename=_filename(source.name),
                        sha256=sha256, size=size, uploaded_by=by, uploaded_at=utcnow())
    session.add(row)
    session.commit()
    return row


def _filename(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._+-" else "_" for c in name).lstrip(".")
    return cleaned[:200] or "firmware.bin"


def pin(session: Session, vendor: str, model: str, version: str, site_name: str | None, by: str) -> FirmwarePin:
    """Pins a version (fleet-wide, or for one site) in place of the pin before it."""
    vendor, model, version = _checked(vendor, model, version)
    firmware = session.scalar(select(PhoneFirmware).where(PhoneFirmware.vendor == vendor, PhoneFirmware.model == model,
                                                          PhoneFirmware.version == version))
    if firmware is None:
        raise FleetError(404, f"no firmware {vendor} {model} {version}: add it first")
    site_id = site_by_name(session, site_name).id if site_name else None
    unpin(session, vendor, model, site_name, commit=False)
    row = FirmwarePin(vendor=vendor, model=model, site_id=site_id, firmware_id=firmware.id, pinned_by=by,
                      pinned_at=utcnow())
    session.add(row)
    session.commit()
    return row


def unpin(session: Session, vendor: str, model: str, site_name: str | None, commit: bool = True) -> int:
    site_id = site_by_name(session, site_name).id if site_name else None
    gone = session.execute(delete(FirmwarePin).where(
        FirmwarePin.vendor == vendor.lower(), FirmwarePin.model == model,
        FirmwarePin.site_id == site_id if site_id is not None else FirmwarePin.site_id.is_(None)))
    if commit:
        session.commit()
    return gone.rowcount


def effective(session: Session, site: Site) -> list[dict]:
    """What the site's phones should run, per vendor and model: the site's pin, else the fleet's."""
    rows = session.execute(select(FirmwarePin.vendor, FirmwarePin.model, FirmwarePin.site_id, FirmwarePin.pinned_at,
                                  PhoneFirmware)
                           .join(PhoneFirmware, PhoneFirmware.id == FirmwarePin.firmware_id)
                           .where(or_(FirmwarePin.site_id == site.id, FirmwarePin.site_id.is_(None)))).all()
    chosen: dict[tuple[str, str], tuple[bool, object, PhoneFirmware]] = {}
    for vendor, model, site_id, pinned_at, firmware in rows:
        own = site_id is not None
        if (vendor, model) not in chosen or own:
            chosen[(vendor, model)] = (own, pinned_at, firmware)
    # pinned_at: pinning again (the same version too) lets a site whose upgrades stopped go on
    return [{"vendor": v, "model": m, "version": f.version, "filename": f.filename, "sha256": f.sha256,
             "size": f.size, "scope": "site" if own else "fleet", "pinned_at": as_utc(at).isoformat()}
            for (v, m), (own, at, f) in sorted(chosen.items())]


def for_box(session: Session, site: Site, sha256: str) -> PhoneFirmware:
    """A file the site's box may fetch: one pinned for it (no browsing of the others)."""
    if not any(p["sha256"] == sha256 for p in effective(session, site)):
        raise FleetError(404, "no such firmware pinned for this site")
    return session.scalar(select(PhoneFirmware).where(PhoneFirmware.sha256 == sha256).limit(1))


def listing(session: Session) -> list[dict]:
    pins = session.execute(select(FirmwarePin.firmware_id, FirmwarePin.site_id, Site.name)
                           .join(Site, Site.id == FirmwarePin.site_id, isouter=True)).all()
    out = []
    for f in session.scalars(select(PhoneFirmware).order_by(PhoneFirmware.vendor, PhoneFirmware.model,
                                                            PhoneFirmware.uploaded_at)):
        pinned = [name or "fleet" for fid, _, name in pins if fid == f.id]
        out.append({"vendor": f.vendor, "model": f.model, "version": f.version, "filename": f.filename,
                    "sha256": f.sha256, "size": f.size, "pinned": pinned})
    return out

