"""The box's TLS identity: the certificate SIP over TLS (Kamailio) and HTTPS provisioning present.

The installer's own (security.tls_certificate and security.tls_key), or one the box makes for
itself once (self-signed, ten years, its LAN address and SIP domain as names) and keeps in
data_dir/tls/. Phones cannot verify a self-signed certificate against a public CA, so provisioning
tells those that can be told to accept it (docs/security.md)."""
from __future__ import annotations

import ipaddress
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import Config


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    self_signed: bool  # made by the box, not the installer's


def box_certificate(cfg: Config) -> Certificate:
    """The certificate and key to use, making the box's own the first time it is needed."""
    sec = cfg.security
    if sec.tls_certificate and sec.tls_key:
        return Certificate(sec.tls_certificate, sec.tls_key, self_signed=False)
    folder = cfg.data_dir / "tls"
    cert, key = folder / "box.crt", folder / "box.key"
    old_cert, old_key = folder / "provisioning.crt", folder / "provisioning.key"  # before SIP used it too
    if not cert.exists() and old_cert.exists() and old_key.exists():
        os.replace(old_key, key)
        os.replace(old_cert, cert)
    if not (cert.exists() and key.exists()):
        _make_self_signed(folder, cert, key, cfg)
    return Certificate(cert, key, self_signed=True)


def _subject_names(cfg: Config) -> str:
    names = {cfg.network.bind, cfg.domain}
    entries = []
    for name in sorted(names):
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return ",".join(entries)


def _make_self_signed(folder: Path, cert: Path, key: Path, cfg: Config) -> None:
    """openssl writes into a private temporary folder (the key is never readable by others, not
    even for a moment), then both files are renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".new-") as tmp:
        os.chmod(tmp, 0o700)
        new_cert, new_key = Path(tmp) / cert.name, Path(tmp) / key.name
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-sha256",
             "-subj", f"/O=edgepbx/CN={cfg.domain}", "-addext", f"subjectAltName={_subject_names(cfg)}",
             "-keyout", str(new_key), "-out", str(new_cert)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"could not make the box's TLS certificate: {done.stderr.strip()[-300:]}")
        new_key.chmod(0o600)
        os.replace(new_key, key)
        os.replace(new_cert, cert)
