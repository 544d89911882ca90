"""Software updates of the appliance image: the self-test that confirms a booted slot, and
`edgepbx update`, which installs a RAUC bundle into the other slot (image/README.md).

An update restarts the box, so it is refused while calls are up unless the installer forces it."""
from __future__ import annotations

import http.client
import shutil
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

from .cdr import open_call_count
from .config import Config
from .sipprobe import options_ping

CDR_DATABASE = "cdr.sqlite"
DOWNLOAD_CHUNK = 1 << 20


class UpdateRefused(Exception):
    """The update was not started; the message says why and what to do."""


def selftest(cfg: Config) -> list[str]:
    """What stops this box from serving the office, empty when nothing does: the SIP edge must
    answer OPTIONS and the CDR database must open and pass SQLite's quick check."""
    problems = []
    code = options_ping(cfg.network.bind, cfg.network.sip_port, timeout=2.0)
    if code != 200:
        problems.append(f"SIP on {cfg.network.bind}:{cfg.network.sip_port} answered {code or 'nothing'} to OPTIONS")
    database = cfg.data_dir / CDR_DATABASE
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            problems.append(f"{database}: {verdict}")
    except sqlite3.Error as exc:
        problems.append(f"{database}: {exc}")
    return problems


def fetch_bundle(source: str, cfg: Config) -> Path:
    """A local bundle path as it is; an http(s) URL downloaded to the data partition first, after
    checking that it fits beside the space kept free for call records and recordings. A download
    that fails or stops midway leaves nothing behind on the data partition."""
    if not source.startswith(("http://", "https://")):
        path = Path(source)
        if not path.is_file():
            raise UpdateRefused(f"{source}: no such bundle file")
        return path
    target_dir = cfg.data_dir / "update"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "incoming.raucb"
    reserve = cfg.recording_min_free_mb << 20
    try:
        _download(source, target, room=shutil.disk_usage(target_dir).free - reserve, reserve=reserve)
    except UpdateRefused:
        target.unlink(missing_ok=True)
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:  # the server or the line failed midway
        target.unlink(missing_ok=True)
        raise UpdateRefused(f"could not download {source}: {exc or type(exc).__name__}; nothing was installed") from None
    return target


def _download(source: str, target: Path, *, room: int, reserve: int) -> None:
    """`source` into `target`, never past `room` bytes (what the data partition has beyond the
    recordings' reserve), and only whole: a bundle shorter than its Content-Length is refused."""
    too_big = (f"the bundle does not fit: the data partition has {max(room, 0) >> 20} MB beyond the "
               f"{reserve >> 20} MB kept free; free space or install from a USB stick")
    with urllib.request.urlopen(source, timeout=30) as answer:
        size = int(answer.headers.get("Content-Length") or 0)
        if size > room:
            raise UpdateRefused(f"{too_big} (it needs {size >> 20} MB)")
        written = 0
        with open(target, "wb") as out:
            while chunk := answer.read(DOWNLOAD_CHUNK):
                written += len(chunk)
                if written > room:
                    raise UpdateRefused(too_big)
                out.write(chunk)
    if size and written != size:
        raise UpdateRefused(f"could not download {source}: {written} of {size} bytes arrived; nothing was installed")


def install(bundle: Path) -> None:
    """RAUC checks the signature and compatibility, writes the other slot and makes it the one
    to boot next (once, until edgepbx-boot-check confirms it). Its progress goes to our output."""
    try:
        result = subprocess.run(["rauc", "install", str(bundle)])
    except FileNotFoundError:
        raise UpdateRefused("RAUC is not installed here: updates install on the appliance image") from None
    if result.returncode != 0:
        raise UpdateRefused(f"RAUC did not install {bundle} (its reason is above); this slot stays as it is")


def update(cfg: Config, source: str, *, force: bool = False) -> Path:
    """Refuses while calls are up (unless forced), then fetches and installs; returns the bundle."""
    busy = open_call_count(cfg.data_dir / CDR_DATABASE)
    if busy and not force:
        raise UpdateRefused(f"{busy} call(s) up; the update restarts the box. Try again later, or --force")
    bundle = fetch_bundle(source, cfg)
    try:
        install(bundle)
    finally:
        if bundle.parent == cfg.data_dir / "update":
            bundle.unlink(missing_ok=True)
    return bundle
