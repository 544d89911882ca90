"""The portal's answers as the agent uses them, checked field by field (types and sizes) before
anything acts on them: a portal that answers nonsense (a bug, a proxy's error page, an attacker
on a lab's http link) gets a logged, retried PortalAnswerInvalid, never a crash loop. Standard
library only: the box carries no validation library."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .client import PortalAnswerInvalid

MAX_ACTIONS = 100  # phone actions or call-backs in one heartbeat answer


def _field(answer: dict, name: str, kind: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
    value = answer.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise PortalAnswerInvalid(f"the portal's answer to {where}: {name} is {type(value).__name__}, "
                                  f"not {getattr(kind, '__name__', kind)}")
    return value


def _items(answer: dict, name: str, where: str) -> list[dict]:
    items = _field(answer, name, list, where, optional=True) or []
    if len(items) > MAX_ACTIONS or not all(isinstance(item, dict) for item in items):
        raise PortalAnswerInvalid(f"the portal's answer to {where}: {name} is not a list of up to {MAX_ACTIONS} objects")
    return items


@dataclass(frozen=True)
class BackupOffered:
    id: int
    created_at: str
    size: int


@dataclass(frozen=True)
class Enrolment:
    site: str
    credential: str
    backup_key: str | None  # None from a portal older than backups
    backup: BackupOffered | None  # the site's newest backup: this box replaces the one that made it


def enrolment(answer: dict) -> Enrolment:
    offered = _field(answer, "backup", dict, "enrol", optional=True)
    backup = None if offered is None else BackupOffered(
        _field(offered, "id", int, "enrol"), _field(offered, "created_at", str, "enrol")[:40],
        _field(offered, "size", int, "enrol"))
    key = _field(answer, "backup_key", str, "enrol", optional=True)
    return Enrolment(_field(answer, "site", str, "enrol")[:200], _field(answer, "credential", str, "enrol")[:500],
                     key[:100] if key else None, backup)


def backup_key(answer: dict) -> str:
    return _field(answer, "backup_key", str, "backup key")[:100]


def backup_stored(answer: dict) -> int:
    return _field(answer, "id", int, "backup")


@dataclass(frozen=True)
class PhoneAction:
    id: int
    mac: str
    action: str


@dataclass(frozen=True)
class CallBackRequest:
    id: int
    extension: str
    number: str


@dataclass(frozen=True)
class CaptureRequest:
    id: int
    seconds: int


@dataclass(frozen=True)
class FirmwarePin:
    vendor: str
    model: str
    version: str
    filename: str
    sha256: str
    size: int
    pinned_at: str = ""  # a new pin (even of the same version) lets stopped upgrades go on


def _firmware_pin(item: dict, where: str) -> FirmwarePin:
    sha = _field(item, "sha256", str, where)
    size = _field(item, "size", int, where)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or not 0 < size <= 1 << 30:
        raise PortalAnswerInvalid(f"the portal's answer to {where}: a firmware pin's sha256 or size is not one")
    return FirmwarePin(_field(item, "vendor", str, where)[:32], _field(item, "model", str, where)[:64],
                       _field(item, "version", str, where)[:64], _field(item, "filename", str, where)[:200], sha, size,
                       (_field(item, "pinned_at", str, where, optional=True) or "")[:40])


@dataclass(frozen=True)
class ReleaseOffer:
    """Box software a rollout offers this box."""
    rollout: int
    version: str
    sha256: str
    size: int
    window: str | None  # HH:MM-HH:MM on the office's clock, or any time


@dataclass(frozen=True)
class HeartbeatAnswer:
    config_version: int | None
    phone_actions: list[PhoneAction]
    callbacks: list[CallBackRequest]
    captures: list[CaptureRequest]
    firmware: list[FirmwarePin] | None  # None from a portal older than phone firmware: the cache stays
    update: ReleaseOffer | None = None  # box software a rollout offers


def _release_offer(item: dict | None, where: str) -> ReleaseOffer | None:
    if item is None:
        return None
    sha, size = _field(item, "sha256", str, where), _field(item, "size", int, where)
    version, window = _field(item, "version", str, where), _field(item, "window", str, where, optional=True)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or not 0 < size <= 2 << 30:
        raise PortalAnswerInvalid(f"the portal's answer to {where}: the release's sha256 or size is not one")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}", version) or window is not None and not re.fullmatch(
            r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", window):
        raise PortalAnswerInvalid(f"the portal's answer to {where}: the release's version or window is not one")
    return ReleaseOffer(_field(item, "rollout", int, where), version, sha, size, window)


def heartbeat(answer: dict) -> HeartbeatAnswer:
    where = "a heartbeat"
    return HeartbeatAnswer(
        config_version=_field(answer, "config_version", int, where, optional=True),
        phone_actions=[PhoneAction(_field(a, "id", int, where), str(a.get("mac", ""))[:32], str(a.get("action", ""))[:32])
                       for a in _items(answer, "phone_actions", where)],
        callbacks=[CallBackRequest(_field(c, "id", int, where), str(c.get("extension", ""))[:32],
                                   str(c.get("number", ""))[:64])
                   for c in _items(answer, "callbacks", where)],
        captures=[CaptureRequest(_field(c, "id", int, where), max(1, min(120, _field(c, "seconds", int, where))))
                  for c in _items(answer, "captures", where)],
        firmware=[_firmware_pin(f, where) for f in _items(answer, "firmware", where)] if "firmware" in answer else None,
        update=_release_offer(_field(answer, "update", dict, where, optional=True), where))


@dataclass(frozen=True)
class PushedConfig:
    version: int
    text: str


def pushed_config(answer: dict) -> PushedConfig:
    return PushedConfig(_field(answer, "version", int, "GET /config"), _field(answer, "config", str, "GET /config"))


def config_version(answer: dict) -> int:
    """The version the portal keeps the box's own config as (POST /config/current)."""
    return _field(answer, "version", int, "POST /config/current")


def wake(answer: dict) -> bool:
    """Whether the portal has something for the box now (GET /wait)."""
    return _field(answer, "wake", bool, "GET /wait")


@dataclass(frozen=True)
class UploadState:
    """Where a recording's upload stands: "upload" from `offset`, or "stored"."""
    status: str
    offset: int


def upload_state(answer: dict, size: int) -> UploadState:
    where = "a recording upload"
    status = _field(answer, "status", str, where)
    if status == "stored":
        return UploadState(status, size)
    offset = _field(answer, "offset", int, where) if status == "upload" else -1
    if status != "upload" or not 0 <= offset < max(size, 1):
        raise PortalAnswerInvalid(f"the portal's answer to {where}: status {status!r} at offset {offset} of {size}")
    return UploadState(status, offset)
