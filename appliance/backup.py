"""An installer's offline backup of what makes a box itself, and its restore onto a replacement:
`edgepbx backup --config FILE --output BACKUP`, `edgepbx restore --config FILE BACKUP`.

What a replacement needs so that no phone is touched: the office config as text (comments
kept), the SIP passwords the box generated, its TLS key and certificate, the phones'
provisioning credentials, the device registry and the auto-enrolled phones, and the files the
config names (greetings, music on hold, certificates) unless they ship with the software. The
cloud link is left out: a replacement enrols with its own code (a backup must not let a second
box speak as the first), and so are call records and recordings (the portal has them).

The portal keeps a copy of its own (appliance/cloud/backups.py), sealed the same way under the
site's backup key instead of a passphrase.

The file is encrypted with a passphrase: scrypt (N=2^15, r=8, p=1: 32 MiB and about 0.1 s per
try, so guessing is slow) derives an AES-256-GCM key; the header (format, KDF parameters, salt,
nonce) is authenticated with the content, so a wrong passphrase and a changed byte are both
refused, before anything on the box is touched."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .config import Config, InvalidConfig, load, parse
from .config.schema import ASSETS_DIR, SOUNDS
from .files import write_private

MAGIC = b"EDGEPBX-BACKUP 1\n"
KDF = {"kdf": "scrypt", "n": 2 ** 15, "r": 8, "p": 1}
SITE_KEY = {"kdf": "site-key"}  # AES-256-GCM under the site's backup key: the portal's copy
MAX_BACKUP_BYTES = 256 << 20
DATA_FILES = ("credentials.json", "device-credentials.json", "enrolled.json",
              "remote-config.json")  # which portal config version the config is: a replacement does not pull it again
DATABASES = ("devices.sqlite",)


class BackupRefused(Exception):
    """What the installer is told (exit 2): a wrong passphrase, not a backup, cannot write."""


@dataclass
class Contents:
    config: str
    data: dict[str, bytes]  # relative to data_dir: credentials, tls/..., devices.sqlite
    files: dict[str, bytes]  # the config's own files: "config-dir/REL" or "abs/PATH"
    site: str
    created_at: str
    network: dict[str, str] = field(default_factory=dict)  # the LAN address phones knew the box by (lan_settings)


def lan_settings() -> dict[str, str]:
    """The box's LAN address with its prefix, gateway and DNS server, as the phones know it: a
    replacement may take them when the installer agrees (no DHCP reservation to move). Empty
    when there is no default route (a lab on loopback) or no `ip`."""
    try:
        ask = lambda *a: json.loads(subprocess.run(["ip", "-j", "-4", *a], capture_output=True, text=True,  # noqa: E731
                                                   timeout=5).stdout or "[]")
        route = next(iter(ask("route", "show", "default")), None)
        if not route or "dev" not in route or "gateway" not in route:
            return {}
        info = next((a for link in ask("addr", "show", "dev", route["dev"]) for a in link.get("addr_info", [])
                     if a.get("scope") == "global"), None)
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}
    if not info:
        return {}
    return {"address": f"{info['local']}/{info['prefixlen']}", "gateway": route["gateway"],
            "dns": _nameserver() or route["gateway"]}


def _nameserver() -> str | None:
    """The first resolver that is not this box itself (systemd-resolved's 127.0.0.53)."""
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith("127."):
                return parts[1]
    except OSError:
        pass
    return None


def _key(passphrase: str, salt: bytes, kdf: dict) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    if kdf.get("kdf") != "scrypt" or not all(isinstance(kdf.get(k), int) for k in ("n", "r", "p")) \
            or kdf["n"] > 2 ** 20 or kdf["r"] > 16 or kdf["p"] > 4:  # a file must not make the box spend minutes
        raise BackupRefused("this backup names a key derivation the box does not use")
    return Scrypt(salt=salt, length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(passphrase.encode())


def named_files(cfg: Config) -> list[Path]:
    """The files the config names that do not ship with the software."""
    named = [cfg.inbound.greeting, cfg.inbound.night_greeting, cfg.inbound.invalid_prompt, cfg.features.music_on_hold,
             cfg.security.tls_certificate, cfg.security.tls_key, cfg.cloud.ca_file]
    shipped_or_data = (SOUNDS, (cfg.data_dir / ASSETS_DIR).resolve())  # the portal's sounds travel as data
    return [p for p in named if p is not None and not any(f in p.resolve().parents for f in shipped_or_data)
            and p.is_file()]


def collect(cfg: Config) -> Contents:
    data: dict[str, bytes] = {}
    for name in DATA_FILES:
        if (cfg.data_dir / name).is_file():
            data[name] = (cfg.data_dir / name).read_bytes()
    for folder in ("tls", ASSETS_DIR):  # the box's certificate; the sounds the portal sent (by hash)
        found = cfg.data_dir / folder
        for path in sorted(found.iterdir()) if found.is_dir() else []:
            if path.is_file() and not path.name.endswith(".tmp"):
                data[f"{folder}/{path.name}"] = path.read_bytes()
    for name in DATABASES:
        if (cfg.data_dir / name).is_file():
            data[name] = _database_bytes(cfg.data_dir / name)
    home = cfg.path.resolve().parent
    files = {}
    for path in named_files(cfg):
        resolved = path.resolve()
        key = f"config-dir/{resolved.relative_to(home)}" if home in resolved.parents else f"abs/{resolved}"
        files[key] = resolved.read_bytes()
    return Contents(cfg.path.read_text(encoding="utf-8"), data, files, cfg.site_name,
                    datetime.now().astimezone().isoformat(timespec="seconds"), lan_settings())


def _database_bytes(path: Path) -> bytes:
    """A consistent copy of a live SQLite database (its WAL included), through SQLite's backup API."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        source, target = sqlite3.connect(path), sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        return copy.read_bytes()


def seal(contents: Contents, passphrase: str | None = None, key: bytes | None = None) -> bytes:
    """The encrypted file: under a key from the passphrase (an installer's copy), or under the
    site's backup key (32 bytes) the portal gave the box at enrolment (the copy the portal keeps)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    b64 = lambda d: {k: base64.b64encode(v).decode() for k, v in d.items()}  # noqa: E731
    body = zlib.compress(json.dumps({"site": contents.site, "created_at": contents.created_at,
                                     "config": contents.config, "data": b64(contents.data),
                                     "files": b64(contents.files), "network": contents.network}).encode(), 6)
    nonce = os.urandom(12)
    if key is not None:
        header_fields, aes_key = dict(SITE_KEY), key
    else:
        if passphrase is None or len(passphrase) < 10:
            raise BackupRefused("a backup passphrase has at least 10 characters")
        salt = os.urandom(16)
        header_fields, aes_key = KDF | {"salt": base64.b64encode(salt).decode()}, _key(passphrase, salt, KDF)
    header = json.dumps(header_fields | {"nonce": base64.b64encode(nonce).decode()}, sort_keys=True).encode() + b"\n"
    return MAGIC + header + AESGCM(aes_key).encrypt(nonce, body, MAGIC + header)


def unseal(blob: bytes, passphrase: str | None = None, key: bytes | None = None) -> Contents:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC) or b"\n" not in blob[len(MAGIC):]:
        raise BackupRefused("this is not an edgepbx backup")
    header_line, sealed = blob[len(MAGIC):].split(b"\n", 1)
    try:
        header = json.loads(header_line)
        nonce = base64.b64decode(header["nonce"])
        by_site_key = header.get("kdf") == SITE_KEY["kdf"]
        salt = b"" if by_site_key else base64.b64decode(header["salt"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BackupRefused("this backup's header is damaged") from None
    if by_site_key and key is None:
        raise BackupRefused("this backup is the portal's copy, sealed with the site's key: restore it by enrolling "
                            "with a replacement code, or download it from the site's page with a passphrase")
    if not by_site_key and passphrase is None:
        raise BackupRefused("this backup is sealed with a passphrase")
    what = "the site's key does not open it" if by_site_key else "wrong passphrase"
    try:
        aes_key = key if by_site_key else _key(passphrase, salt, header)
        body = AESGCM(aes_key).decrypt(nonce, sealed, MAGIC + header_line + b"\n")
    except (InvalidTag, ValueError):
        raise BackupRefused(f"{what}, or the backup was changed or damaged; nothing was restored") from None
    raw = json.loads(zlib.decompress(body))
    unb64 = lambda d: {k: base64.b64decode(v) for k, v in d.items()}  # noqa: E731
    network = raw.get("network") if isinstance(raw.get("network"), dict) else {}
    return Contents(raw["config"], unb64(raw["data"]), unb64(raw["files"]), raw.get("site", ""), raw.get("created_at", ""),
                    {k: str(v) for k, v in network.items() if k in ("address", "gateway", "dns")})


def fingerprint(contents: Contents) -> str:
    """What a backup holds that is worth a new one: the device registry's fetch log and last-seen
    times change with every phone's fetch, so devices.sqlite travels with a backup but does not
    call for one (MAC -> extension and auto-enrolled phones live in the config and enrolled.json)."""
    digest = hashlib.sha256(contents.config.encode() + json.dumps(contents.network, sort_keys=True).encode())
    for kind, items in (("data", contents.data), ("files", contents.files)):
        for name in sorted(items):
            if name not in DATABASES:
                digest.update(f"\0{kind}\0{name}\0{len(items[name])}\0".encode() + items[name])
    return digest.hexdigest()


def _inside(base: Path, name: str) -> Path:
    """`name` under `base`, refusing any name that would leave it (a backup is data, not a path)."""
    target = (base / name).resolve()
    if base.resolve() not in target.parents:
        raise BackupRefused(f"this backup names a file outside its folder: {name!r}")
    return target


def restore(contents: Contents, config_path: Path) -> Config:
    """Writes the backup over the box whose config is `config_path` (the old text kept as
    FILE.previous): data_dir's files and the config's own files, then the config. Checked first
    without the files (they come with it), then with them: a config this software refuses is not
    installed, and the old one stays."""
    try:
        new = parse(contents.config, config_path, on_box=False)
    except InvalidConfig as exc:
        raise BackupRefused("the backup's config does not validate here:\n" + "\n".join(
            str(e).replace(str(config_path), "backup config") for e in exc.errors)) from None
    home = config_path.resolve().parent
    writes = [(_inside(new.data_dir, name), data) for name, data in contents.data.items()]
    for name, data in contents.files.items():
        kind, _, rest = name.partition("/")
        if kind == "config-dir":
            writes.append((_inside(home, rest), data))
        elif kind == "abs" and rest.startswith("/"):
            writes.append((Path(rest), data))
        else:
            raise BackupRefused(f"this backup names a file the box does not know how to place: {name!r}")
    new.data_dir.mkdir(parents=True, exist_ok=True)
    for name in DATABASES:  # a WAL left from the old database would be replayed over the restored one
        for suffix in ("-wal", "-shm"):
            (new.data_dir / (name + suffix)).unlink(missing_ok=True)
    for path, data in writes:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, data)
    previous = config_path.read_bytes() if config_path.exists() else None
    if previous is not None:
        write_private(config_path.with_name(config_path.name + ".previous"), previous)
    write_private(config_path, contents.config)
    try:
        return load(config_path)
    except InvalidConfig as exc:
        if previous is not None:
            write_private(config_path, previous)
        raise BackupRefused("the backup's config does not run here:\n" + "\n".join(map(str, exc.errors))) from None
