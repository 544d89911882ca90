"""Each box's backup of what makes it itself (issue 24): the box encrypts it with its site's
backup key before it leaves; the portal keeps the newest KEEP, hands the newest to a box enrolled
with a replacement code, and lets an operator take one away re-encrypted with a passphrase of
their own, for `edgepbx restore` from a USB stick.

The site's key is made at the site's first enrolment and kept sealed with the portal's key
(portal/sealing.py): a copy of the database alone opens no backup."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .db import as_utc
from .fleet import FleetError
from .models import Site, SiteBackup, utcnow

KEEP = 10  # versions a site keeps: a day of changes, or the ones before a bad edit
MAX_BACKUP_BYTES = 16 << 20  # the config, the box's secrets and registry, greetings and music
SUMMARY_FIELDS = ("extensions", "phones", "files")


def site_key(session: Session, site: Site) -> str:
    """The site's backup key (base64), made on first use; the caller commits."""
    if site.backup_key is None:
        site.backup_key = base64.b64encode(secrets.token_bytes(32)).decode()
        session.flush()
    return site.backup_key


def store(session: Session, site: Site, blob: bytes, summary: dict[str, int]) -> SiteBackup:
    """Keeps a backup (the same bytes as the newest: that one) and lets the oldest past KEEP go."""
    if not blob:
        raise FleetError(422, "an empty backup")
    if len(blob) > MAX_BACKUP_BYTES:
        raise FleetError(413, f"a backup may hold at most {MAX_BACKUP_BYTES >> 20} MB")
    digest = hashlib.sha256(blob).hexdigest()
    newest = latest(session, site)
    if newest is not None and newest.sha256 == digest:
        return newest
    backup = SiteBackup(site_id=site.id, created_at=utcnow(), size=len(blob), sha256=digest, data=blob,
                        summary=json.dumps({k: int(v) for k, v in summary.items() if k in SUMMARY_FIELDS}))
    session.add(backup)
    session.flush()
    kept = select(SiteBackup.id).where(SiteBackup.site_id == site.id).order_by(SiteBackup.id.desc()).limit(KEEP)
    session.execute(delete(SiteBackup).where(SiteBackup.site_id == site.id, SiteBackup.id.not_in(kept)))
    session.commit()
    return backup


def latest(session: Session, site: Site) -> SiteBackup | None:
    return session.scalar(select(SiteBackup).where(SiteBackup.site_id == site.id).order_by(SiteBackup.id.desc())
                          .limit(1))


def listing(session: Session, site: Site) -> list[dict]:
    """The site's backups, newest first, without their bytes (for the site page)."""
    rows = session.execute(select(SiteBackup.id, SiteBackup.created_at, SiteBackup.size, SiteBackup.summary)
                           .where(SiteBackup.site_id == site.id).order_by(SiteBackup.id.desc())).all()
    return [{"id": r.id, "created_at": as_utc(r.created_at).isoformat(), "size": r.size, **json.loads(r.summary or "{}")}
            for r in rows]


def one(session: Session, site: Site, backup_id: int) -> SiteBackup:
    backup = session.get(SiteBackup, backup_id)
    if backup is None or backup.site_id != site.id:
        raise FleetError(404, f"no backup {backup_id} of this site")
    return backup


def for_installer(session: Session, site: Site, backup_id: int, passphrase: str) -> bytes:
    """The backup re-encrypted with the operator's passphrase, as `edgepbx backup` writes it."""
    from appliance.backup import BackupRefused, seal, unseal

    backup = one(session, site, backup_id)
    try:
        contents = unseal(backup.data, key=base64.b64decode(site_key(session, site)))
        return seal(contents, passphrase)
    except BackupRefused as exc:
        raise FleetError(422, str(exc)) from None
