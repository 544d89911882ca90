"""An office's own greetings and music on hold: a WAV, MP3 or OGG file from the browser, converted
by sox into what the box plays (16 kHz, mono, 16-bit WAV, at most 10 minutes), kept in the store by
its SHA-256 and named so in the site's config ("sha256:<hash>"); the box fetches it by that name
and keeps it only if its bytes hash to it."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .fleet import FleetError
from .models import Site, Sound
from .storage import Storage
from .storage.base import put_copy

MAX_UPLOAD_BYTES = 20 << 20     # a 10-minute MP3 at 256 kbit/s is 19.2 MB
MAX_SECONDS = 600
RATE, BYTES_PER_SECOND = 16000, 32000  # what the feature server plays (appliance/sounds/README.md)
SLOTS = ("greeting", "night_greeting", "music_on_hold")  # the config's keys a sound may fill


class SoundRefused(Exception):
    """`key` names the i18n text the page shows beside the upload."""

    def __init__(self, key: str, detail: str = ""):
        super().__init__(key)
        self.key, self.detail = key, detail


def kind_of(head: bytes) -> str | None:
    """The file's type from its first bytes (a file's name says nothing trustworthy)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def convert(source: Path, target: Path) -> float:
    """`source` as the box's WAV at `target`; its length in seconds. sox decodes (MP3 through
    libsox-fmt-mp3, Ogg Vorbis through libsox-fmt-base) and resamples."""
    with open(source, "rb") as fh:
        kind = kind_of(fh.read(16))
    if kind is None:
        raise SoundRefused("sound_not_audio")
    try:
        done = subprocess.run(["sox", "--no-show-progress", "-V1", "-t", kind, str(source), "-t", "wav",
                               "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(target),
                               "trim", "0", str(MAX_SECONDS + 1)],
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise SoundRefused("sound_unreadable", "sox took over 2 minutes") from None
    if done.returncode != 0 or not target.is_file():
        raise SoundRefused("sound_unreadable", done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else "")
    seconds = (target.stat().st_size - 44) / BYTES_PER_SECOND
    if seconds > MAX_SECONDS:
        raise SoundRefused("sound_too_long")
    if seconds < 0.2:
        raise SoundRefused("sound_too_short")
    return round(seconds, 1)


def add(session: Session, store: Storage, site: Site, upload: Path, filename: str, by: str) -> Sound:
    """The uploaded file converted and stored for `site` (the same sound twice is one row)."""
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "sound.wav"
        seconds = convert(upload, wav)
        sha256 = put_copy(store, wav, "sounds")
        size = wav.stat().st_size
    found = session.scalar(select(Sound).where(Sound.site_id == site.id, Sound.sha256 == sha256))
    if found is None:
        found = Sound(site_id=site.id, sha256=sha256, size=size, seconds=seconds, filename=filename[-200:] or "sound",
                      uploaded_by=by)
        session.add(found)
        session.flush()
    return found


def of_site(session: Session, site: Site, sha256: str) -> Sound:
    """A sound of this site (its box's fetch, its people's player); another site's is not found."""
    found = session.scalar(select(Sound).where(Sound.site_id == site.id, Sound.sha256 == sha256))
    if found is None:
        raise FleetError(404, "no such sound for this site")
    return found


def named(session: Session, site: Site) -> dict[str, Sound]:
    """The site's sounds by hash (what the incoming-calls page shows beside each slot)."""
    return {s.sha256: s for s in session.scalars(select(Sound).where(Sound.site_id == site.id))}
