"""The portal's tables: organisations own sites (one box each); a site's calls, recordings,
credentials, heartbeats and uploads in progress.

Every row a box writes is keyed by its site, so one site's credential can never touch another's.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false as sa_false

from .sealing import SealedText


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Organisation(Base):
    __tablename__ = "organisation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Site(Base):
    __tablename__ = "site"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[str | None] = mapped_column(Text)  # the last heartbeat's JSON
    # The office's IANA zone, as its box's config says (heartbeats carry it): the pages' clock
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # The key the site's box encrypts its backups with (base64), sealed with the portal's key
    backup_key: Mapped[str | None] = mapped_column(SealedText)
    # The provider lets the office's admins change its trunks in the configurator (else operators only)
    office_edits_trunks: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())


class EnrolmentCode(Base):
    """A one-time code an operator hands to the installer; only its hash is kept."""
    __tablename__ = "enrolment_code"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SiteCredential(Base):
    """The bearer token a box holds; only its hash is kept, revocable."""
    __tablename__ = "site_credential"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Call(Base):
    """A box's CDR as the box last sent it (upserted by its id), plus the recording's hash."""
    __tablename__ = "call"
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sip_call_id: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[str] = mapped_column(String(40))  # the box's local time with its UTC offset
    started_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    answered_at: Mapped[str | None] = mapped_column(String(40))
    ended_at: Mapped[str | None] = mapped_column(String(40))
    direction: Mapped[str] = mapped_column(String(16))
    src: Mapped[str] = mapped_column(String(64))
    src_name: Mapped[str | None] = mapped_column(String(255))
    dst: Mapped[str] = mapped_column(String(64))
    dst_number: Mapped[str | None] = mapped_column(String(64))
    trunk: Mapped[str | None] = mapped_column(String(64))
    picked_up_by: Mapped[str | None] = mapped_column(String(16))
    answered_by: Mapped[str | None] = mapped_column(String(16))  # the office extension that answered
    rang: Mapped[str | None] = mapped_column(String(255))  # the extensions it rang, "101,102"
    quality: Mapped[str | None] = mapped_column(Text)  # JSON: each leg's figures and MOS, as the box measured
    mos_min: Mapped[float | None] = mapped_column(Float)  # the worse leg's MOS: the quality page and poor-line alarms
    transferred_to: Mapped[str | None] = mapped_column(String(64))
    linked_id: Mapped[str | None] = mapped_column(String(36))
    disposition: Mapped[str | None] = mapped_column(String(16))
    sip_code: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[int | None] = mapped_column(Integer)
    billsec: Mapped[int | None] = mapped_column(Integer)
    recording: Mapped[str | None] = mapped_column(Text)  # the file's path on the box
    recording_sha256: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Recording(Base):
    """A site's recording, stored once by content hash in the storage backend."""
    __tablename__ = "recording"
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # "opus" (Ogg Opus, what boxes send since issue 26) or "wav"; told from the bytes at upload
    audio_format: Mapped[str] = mapped_column(String(8), default="wav", server_default="wav")


class Upload(Base):
    """A recording arriving in chunks; `received` moves only by compare-and-set, so two portal
    instances (or a retried request) can never append the same chunk twice."""
    __tablename__ = "upload"
    __table_args__ = (UniqueConstraint("site_id", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UploadChunk(Base):
    __tablename__ = "upload_chunk"
    upload_id: Mapped[int] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Heartbeat(Base):
    __tablename__ = "heartbeat"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    status: Mapped[str] = mapped_column(Text)  # JSON as the box sent it


class SiteConfig(Base):
    """A version of a site's office config (pushed from the portal, or the one its box runs, which the
    box sends when it was written on site), who saved it, and what its box said of it."""
    __tablename__ = "site_config"
    __table_args__ = (UniqueConstraint("site_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(SealedText)  # the YAML (holds SIP passwords: sealed, never listed or logged)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, applied, rejected
    errors: Mapped[str | None] = mapped_column(Text)  # JSON list of the box's FILE:LINE: messages
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    author: Mapped[str | None] = mapped_column(String(64))  # who saved it: a user name, or "box" for one written on site
    summary: Mapped[str | None] = mapped_column(String(200))  # what changed, as the configurator said it


class SiteBackup(Base):
    """What a site's box needs to be itself, as the box encrypted it with the site's backup key
    (the portal cannot read it without unsealing that key); the newest few are kept."""
    __tablename__ = "site_backup"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # of the encrypted file
    summary: Mapped[str] = mapped_column(Text, default="{}")  # JSON: what the box said it holds (counts)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Capture(Base):
    """An operator's remote diagnostics of a site: N seconds of the box's SIP and RTP (pcap) and
    its status and recent logs (text). It holds SIP digests and audio: operators only, and its
    files are deleted when it expires; the office's settings page says one was taken."""
    __tablename__ = "capture"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(120))
    seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sent, done, failed
    detail: Mapped[str | None] = mapped_column(Text)  # what the box said (packets, or why it failed)
    packets: Mapped[int | None] = mapped_column(Integer)
    pcap: Mapped[bytes | None] = mapped_column(LargeBinary)
    text: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PhoneFirmware(Base):
    """A firmware file an operator uploaded for one vendor's model; its bytes live in the store
    (storage/, kind "firmware") by content hash."""
    __tablename__ = "phone_firmware"
    __table_args__ = (UniqueConstraint("vendor", "model", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(200))  # as uploaded (the name the phone is told)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[str] = mapped_column(String(120))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Sound(Base):
    """A greeting or music an office uploaded, converted to what the box plays (16 kHz mono WAV);
    its bytes live in the store (kind "sounds") by content hash, which is how the site's config
    names it ("sha256:<hash>") and what the box checks when it fetches it."""
    __tablename__ = "sound"
    __table_args__ = (UniqueConstraint("site_id", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)
    filename: Mapped[str] = mapped_column(String(200))  # as uploaded, shown beside the player
    uploaded_by: Mapped[str] = mapped_column(String(120))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FirmwarePin(Base):
    """The firmware a model runs: for the whole fleet (site_id NULL) or one site, which wins."""
    __tablename__ = "firmware_pin"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"), index=True)
    firmware_id: Mapped[int] = mapped_column(ForeignKey("phone_firmware.id"))
    pinned_by: Mapped[str] = mapped_column(String(120))
    pinned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PhoneAction(Base):
    """An operator's request that a site's phone re-fetch its config or reboot, and its outcome."""
    __tablename__ = "phone_action"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    mac: Mapped[str] = mapped_column(String(12))
    action: Mapped[str] = mapped_column(String(16))  # resync, reboot
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sent, done, failed
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[str | None] = mapped_column(Text)  # what the box says the phone answered
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackRequest(Base):
    """A user's "call back" on a missed call: the box rings their extension, then dials the caller."""
    __tablename__ = "callback_request"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    call_id: Mapped[str] = mapped_column(String(36))  # the missed call
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_user.id", ondelete="CASCADE"))
    extension: Mapped[str] = mapped_column(String(16))
    number: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sent, ringing, refused, expired
    detail: Mapped[str | None] = mapped_column(Text)  # what the box said
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PortalUser(Base):
    """A person who signs in to the web pages: an organisation's admin or viewer, or a provider's
    operator (no organisation). Only an argon2 hash of the password is kept."""
    __tablename__ = "portal_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"), index=True)
    username: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # admin, viewer, operator
    extension: Mapped[str | None] = mapped_column(String(16))  # the user's own phone: "call back" rings it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, the table its hash (log out deletes
    it, and every portal instance behind a load balancer sees it)."""
    __tablename__ = "web_session"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_user.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginFailure(Base):
    """A failed sign-in, kept for the rate limit (shared by every portal instance)."""
    __tablename__ = "login_failure"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(120), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Alarm(Base):
    """Something an operator or an office must be told of, with its start and its end: one row
    per (site, key, subject) while it lasts, so a trunk failing for an hour is one alarm."""
    __tablename__ = "alarm"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    key: Mapped[str] = mapped_column(String(32))  # offline, trunk_failing, disk_low, set_aside, toll
    subject: Mapped[str] = mapped_column(String(64), default="")  # what it is about (a trunk's name)
    severity: Mapped[str] = mapped_column(String(16))  # critical or warning
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON values of its i18n text
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    told_start: Mapped[bool] = mapped_column(Boolean, default=False)  # every contact was told it began
    told_end: Mapped[bool] = mapped_column(Boolean, default=False)


class AlarmContact(Base):
    """Who is told: an e-mail address or a webhook, for one organisation's sites or (org_id NULL)
    for the provider's operators (every site), from a severity up; or once a day in a digest."""
    __tablename__ = "alarm_contact"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # email or webhook
    target: Mapped[str] = mapped_column(String(500))  # the address or the URL
    severity: Mapped[str] = mapped_column(String(16), default="warning")  # the least severe it is told of
    secret: Mapped[str | None] = mapped_column(SealedText)  # a webhook's HMAC key
    digest: Mapped[bool] = mapped_column(Boolean, default=False)  # one e-mail a day instead of each alarm
    language: Mapped[str] = mapped_column(String(2), default="en")
    last_digest_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Release(Base):
    """A signed RAUC bundle of box software an operator uploaded; its bytes live in the store
    (kind "releases") by content hash. `compatible` is the board it is for (edgepbx-x86, ...)."""
    __tablename__ = "release"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(120), unique=True)
    compatible: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    signer: Mapped[str] = mapped_column(String(200), default="")  # whose certificate signed it, as RAUC said
    uploaded_by: Mapped[str] = mapped_column(String(120))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Rollout(Base):
    """A release going to a set of sites: canaries first, then waves; it halts itself when a
    box fails and stays halted until an operator resumes or aborts it."""
    __tablename__ = "rollout"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("release.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running, paused, halted, aborted, done
    window: Mapped[str | None] = mapped_column(String(11))  # HH:MM-HH:MM in each site's zone, or any time
    canary: Mapped[int] = mapped_column(Integer, default=0)
    wave_percent: Mapped[int] = mapped_column(Integer, default=25)
    deadline_seconds: Mapped[int] = mapped_column(Integer, default=1800)  # from "installing" to back on the release
    reason: Mapped[str | None] = mapped_column(Text)  # why it halted
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RolloutSite(Base):
    """One site of a rollout: its wave (0 = canaries) and how far its box is."""
    __tablename__ = "rollout_site"
    __table_args__ = (UniqueConstraint("rollout_id", "site_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    wave: Mapped[int] = mapped_column(Integer)
    # waiting (its wave has not come), offered, downloading, ready (waiting for its window or for
    # calls to end), installing, done, failed, skipped (another board)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    detail: Mapped[str | None] = mapped_column(Text)
    offered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    installing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
