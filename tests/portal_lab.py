"""A real portal for tests: `edgepbx-portal run` as a process, on SQLite or on a fresh PostgreSQL
database of the loopback server (started if it is not running; the test fails saying so if it
cannot be)."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sqlite3
import socket
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import write_office

ROOT = Path(__file__).resolve().parent.parent
PORTAL = [sys.executable, "-m", "portal.cli"]
EDGEPBX = [sys.executable, "-m", "appliance.cli"]
PG_HOST, PG_PORT = "127.0.0.1", 5432
FAST_CLOUD = "cloud: {heartbeat_seconds: 2, retry_max_seconds: 2, upload_kbps: 0, allow_http: true}"  # a lab portal on loopback


def _pg_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


def ensure_postgres() -> str:
    """The admin URL of the loopback PostgreSQL, starting its cluster when it is down."""
    if not _pg_answers():
        clusters = list(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").exists() else []
        for cluster in clusters:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster.parent.name, "main", "start"],
                           capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while not _pg_answers() and time.monotonic() < deadline:
            time.sleep(0.3)
    if not _pg_answers():
        pytest.fail(f"PostgreSQL is not answering on {PG_HOST}:{PG_PORT} and could not be started "
                    "(pg_ctlcluster ... main start); the portal's PostgreSQL tests need it", pytrace=False)
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


def new_database() -> str:
    """A fresh, empty PostgreSQL database for one test; returns its URL."""
    import psycopg

    admin = ensure_postgres()
    name = f"edgepbx_test_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ensure_postgres(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Portal:
    data_dir: Path
    database_url: str | None
    port: int = field(default_factory=free_tcp_port)
    procs: list[subprocess.Popen] = field(default_factory=list)
    storage: str | None = None  # --storage (default: DATA_DIR/objects)
    env: dict[str, str] = field(default_factory=dict)  # e.g. the S3 endpoint and keys
    run_args: list[str] = field(default_factory=list)  # more `run` options, e.g. --trusted-proxy

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _db_args(self) -> list[str]:
        return ["--data-dir", str(self.data_dir)] + (["--database-url", self.database_url] if self.database_url else [])

    def start(self, port: int | None = None, timeout: float = 30.0) -> subprocess.Popen:
        """Starts an instance (another one on `port` for a second instance); waits for `portal ready`."""
        port = port or self.port
        log = self.data_dir.parent / f"portal-{port}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fh = open(log, "a")
        storage = ["--storage", self.storage] if self.storage else []
        proc = subprocess.Popen(PORTAL + ["run", "--port", str(port)] + self._db_args() + storage + self.run_args, stdout=fh,
                                stderr=subprocess.STDOUT, cwd=ROOT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1", **self.env))
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"portal ready on http://127.0.0.1:{port}" in log.read_text(errors="replace"):
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"portal did not start:\n{log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(PORTAL + list(args[:1]) + self._db_args() + list(args[1:]), capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
        if check and out.returncode != 0:
            raise AssertionError(f"edgepbx-portal {' '.join(args)} failed: {out.stderr}")
        return out

    def add_site(self, org: str, site: str) -> str:
        code = self.cli("add-site", "--org", org, "--site", site).stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", code), code
        return code

    def calls(self, site: str) -> list[dict]:
        return json.loads(self.cli("calls", "--site", site, "--json").stdout)

    def wait_calls(self, site: str, predicate, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        calls: list[dict] = []
        while time.monotonic() < deadline:
            calls = self.calls(site)
            if predicate(calls):
                return calls
            time.sleep(0.5)
        raise AssertionError(f"portal's calls of {site} never matched in {timeout} s; have {len(calls)}: {calls[:2]}")

    def stored(self, sha256: str) -> Path:
        return self.data_dir / "objects" / "recordings" / sha256[:2] / f"{sha256}.wav"


def start_portal(tmp: Path, backend: str) -> Portal:
    portal = Portal(tmp / "portal", new_database() if backend == "postgresql" else None)
    portal.start()
    return portal


def close_portal(portal: Portal) -> None:
    portal.stop()
    if portal.database_url:
        drop_database(portal.database_url)


def enroll(config: Path, portal: Portal, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", "enroll", "--config", str(config), portal.url, code],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)


def enrolled_box(tmp_path: Path, portal: Portal, name: str = "box", extra: str = FAST_CLOUD, org: str = "Acme",
                 site: str = "acme-hq", via: Portal | None = None, **office) -> Path:
    """A box's office config in tmp_path/name, enrolled as `site` (through `via`, e.g. a balancer)."""
    (tmp_path / name).mkdir(exist_ok=True)
    config = write_office(tmp_path / name, extra, **office)
    enrolled = enroll(config, via or portal, portal.add_site(org, site))
    assert enrolled.returncode == 0, enrolled.stderr
    return config


def seed_calls(data_dir: Path, count: int, recording_seconds: float = 0.0, src: str = "101") -> list[str]:
    """Writes finished calls through the box's own CDR store (as the feature server does), with
    a WAV of noise each when recording_seconds > 0; returns their ids."""
    sys.path.insert(0, str(ROOT))
    from appliance.cdr import CdrStore

    store = CdrStore(data_dir / "cdr.sqlite")
    ids = []
    rng = np.random.default_rng()
    for i in range(count):
        cdr_id = store.start(direction="internal", src=src, dst="102")
        recording = None
        if recording_seconds:
            recording = data_dir / "recordings" / f"{cdr_id}.wav"
            recording.parent.mkdir(parents=True, exist_ok=True)
            with wave.open(str(recording), "wb") as w:
                w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
                w.writeframes(rng.integers(-3000, 3000, int(16000 * recording_seconds), dtype="<i2").tobytes())
        store.answered(cdr_id, str(recording) if recording else None)
        store.ended(cdr_id, "answered", 200)
        ids.append(cdr_id)
    store.close()
    return ids


def box_recordings(data_dir: Path) -> dict[str, Path | None]:
    """Each call's recording as the box's record names it now: its Opus file once the agent
    encoded it (appliance/opus.py), its WAV before."""
    db = sqlite3.connect(data_dir / "cdr.sqlite")
    try:
        return {i: Path(r) if r else None for i, r in db.execute("SELECT id, recording FROM cdr")}
    finally:
        db.close()


class AgentProcess:
    """`edgepbx cloud` alone: the agent `edgepbx run` starts, without the SIP services."""

    def __init__(self, config: Path):
        self.config = config
        self.log = config.parent / "cloud.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "AgentProcess":
        fh = open(self.log, "a")
        self.proc = subprocess.Popen(EDGEPBX + ["cloud", "--config", str(self.config)], stdout=fh, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


S3_KEYS = {"AWS_ACCESS_KEY_ID": "edgepbx-test", "AWS_SECRET_ACCESS_KEY": "edgepbx-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """moto's S3 server (PyPI `moto[server]`) on a loopback port: Debian 12 packages no
    S3-compatible server, and Debian's rclone is built without `serve s3` (docs/cloud.md)."""

    def __init__(self, workdir: Path):
        self.port = free_tcp_port()
        self.log = workdir / "s3.log"
        self.proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                                      "-p", str(self.port)], stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not start: {self.log.read_text()[-2000:]}")

    @property
    def env(self) -> dict[str, str]:
        return dict(S3_KEYS, AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}")

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Balancer:
    """HAProxy round-robin in front of portal instances: what a provider's load balancer does."""

    def __init__(self, workdir: Path, ports: list[int], close_each_request: bool = False, maxconn: int = 4000,
                 tls_pem: Path | None = None, keep_alive_seconds: int | None = None):
        """`tls_pem` (certificate + key): HTTPS in front, as a provider's balancer terminates TLS;
        `keep_alive_seconds`: how long an idle client connection is kept before HAProxy closes it."""
        self.port = free_tcp_port()
        self.stats = workdir / "haproxy.sock"
        servers = "\n".join(f"    server portal{i} 127.0.0.1:{port}" for i, port in enumerate(ports))
        config = workdir / "haproxy.cfg"
        config.write_text(f"""global
    maxconn {maxconn}
    stats socket {self.stats} mode 600 level admin
defaults
    mode http
    {"option httpclose" if close_each_request else "option http-keep-alive"}
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    {f"timeout http-keep-alive {keep_alive_seconds}s" if keep_alive_seconds else ""}
frontend portal
    bind 127.0.0.1:{self.port}{f" ssl crt {tls_pem}" if tls_pem else ""}
    maxconn {maxconn}
    default_backend instances
backend instances
    balance roundrobin
{servers}
""")
        self.proc = subprocess.Popen(["haproxy", "-f", str(config), "-db"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.stats.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def requests(self) -> dict[str, int]:
        """Requests each instance has served, from HAProxy's stats socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.stats))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: int(r["stot"]) for r in rows if r["pxname"] == "instances" and r["svname"].startswith("portal")}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
