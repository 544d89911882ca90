"""`edgepbx run`: starts every service the config enables and keeps them running.

Each service is a child process in its own process group, so stopping kills its workers too,
and with PR_SET_PDEATHSIG so it dies with the supervisor even after a SIGKILL. A child that
exits unexpectedly is restarted with back-off; SIGTERM/SIGINT stop everything within 5 s.

SIGHUP (sent by the cloud agent after it installed a config from the portal) re-reads the config
and applies it once no call is up, restarting only the services whose config changed: Kamailio
keeps running (and its phones' registrations) unless its own config file changed, since it
re-reads the routing data itself. If the services do not come up on the new config, the previous
one (FILE.previous) is put back and started again.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import credentials
from .cloud.diagnostics import LOG_DIR_ENV
from .cloud.remote_config import RUNNING_STATE, SUPERVISOR_PID_ENV, previous_path, sha256_text
from .config import Config, InvalidConfig, load
from .files import write_state_json
from .cdr import CdrStore, now, open_call_count
from .clock import use_site_clock
from .reserve import keep_reserve
from .kamailio import render
from .kamailio.render import public_address
from .nat import STUN_EVERY_SECONDS, public_address_source, refresh_stun
from .servicelog import ServiceLog
from .sipprobe import options_ping

log = logging.getLogger("edgepbx.supervisor")

STOP_GRACE_SECONDS = 3.0
# Kamailio and the feature server answer OPTIONS within seconds on a Pi or a PC; an emulated arm64
# box (the image tests) needed over 30 s for the feature server. A service that exits ends the
# wait at once, so a long bound costs nothing when something is broken.
READY_TIMEOUT_SECONDS = 180.0


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the supervisor dies, however it dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    failures: int = 0
    restart_at: float = 0.0
    started_at: float = 0.0
    output: ServiceLog | None = None
    reader: threading.Thread | None = None

    def start(self, log_dir: Path) -> None:
        """Starts the service with its output going to log_dir/NAME.log (servicelog.py)."""
        env = dict(os.environ, **self.env)
        if self.output is None:
            self.output = ServiceLog(self.name, log_dir)
        self.proc = subprocess.Popen(self.argv, env=env, start_new_session=True, preexec_fn=_die_with_parent,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.reader = self.output.follow(self.proc.stdout)
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def last_words(self) -> str:
        """What the service said last (it just exited), for the supervisor's error line."""
        if self.reader is not None:
            self.reader.join(timeout=0.5)  # its last lines may still be in the pipe
        if self.output is None or not self.output.last_lines:
            return ""
        lines = list(self.output.last_lines)[-5:]
        return "; its last lines (all in {}):\n  {}".format(self.output.path, "\n  ".join(lines))

    def signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def reap_group(self) -> None:
        """Kills whatever is left in the group (Kamailio's workers outlive a killed main process)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def prepare_databases(cfg: Config) -> None:
    """Creates (or migrates) the CDR database before the services start and open it, and keeps
    its reserve of disk space (appliance/reserve.py)."""
    CdrStore(cfg.data_dir / "cdr.sqlite").close()
    keep_reserve(cfg.data_dir)


def services(cfg: Config) -> list[Service]:
    prepare_databases(cfg)
    passwords = credentials.sip_passwords(cfg)
    extra: list[Service] = []
    if cfg.provisioning.enabled and cfg.provisioning.dhcp.mode == "serve":
        from provisioning.dhcp import dnsmasq_command, write_dnsmasq_conf
        extra.append(Service("dnsmasq", dnsmasq_command(write_dnsmasq_conf(cfg))))
    # Benchmark only (bench/bench_calls.py): Kamailio routes calls straight to the phones, to
    # measure the SIP edge alone against the full path through the feature server.
    direct = os.environ.get("EDGEPBX_BENCH_DIRECT_ROUTING") == "1"
    cfg_path, routing_path = render.write(cfg, passwords, direct_routing=direct)
    return [Service("kamailio", render.command(cfg, cfg_path), {"EDGEPBX_ROUTING": str(routing_path)})] + [
        Service("featureserver", [sys.executable, "-m", "appliance.cli", "featureserver", "--config", str(cfg.path)])
    ] + ([
        Service("provisioning", [sys.executable, "-m", "appliance.cli", "provision", "--config", str(cfg.path)])]
        if cfg.provisioning.enabled else []) + extra + ([
        Service("trunks", [sys.executable, "-m", "appliance.cli", "trunks", "--config", str(cfg.path)])]
        if any(t.register for t in cfg.trunks) else []) + [
        # Always: it idles until `edgepbx enroll` links the box, then syncs what happened before too.
        Service("cloud", [sys.executable, "-m", "appliance.cli", "cloud", "--config", str(cfg.path)])]


def _without_nonce_secret(kamailio_cfg: str) -> str:
    """Kamailio's config as far as a restart matters: the digest nonce secret is new at each render."""
    return "\n".join(line for line in kamailio_cfg.splitlines() if '"auth", "secret"' not in line)


class Supervisor:
    def __init__(self, cfg: Config, log_dir: Path | None = None):
        self.cfg = cfg
        self.log_dir = log_dir or cfg.data_dir / "log"  # each service's whole output (servicelog.py)
        refresh_stun(cfg)  # before the edge's config is written: it advertises the answer
        self.services = services(cfg)
        self.stopping = False
        self.reload_requested = False
        self.pending: Config | None = None
        self.waiting_logged = False
        self.advertised = public_address(cfg)  # what the edge's outside face was started with
        self.readvertise = False
        self.next_nat_check = 0.0
        self.next_stun = time.monotonic() + STUN_EVERY_SECONDS

    def request_stop(self, *_args: object) -> None:
        self.stopping = True

    def request_reload(self, *_args: object) -> None:
        self.reload_requested = True

    def wait_ready(self) -> bool:
        net = self.cfg.network
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        pending = {"kamailio": net.sip_port, "featureserver": net.feature_port}
        while pending and not self.stopping and time.monotonic() < deadline:
            for name, port in list(pending.items()):
                if options_ping(net.bind, port, timeout=0.3) is not None:
                    del pending[name]
            if any(s.proc.poll() is not None for s in self.services):
                return False
        return not pending

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)
        os.environ[SUPERVISOR_PID_ENV] = str(os.getpid())  # the cloud agent signals us after a config push
        os.environ[LOG_DIR_ENV] = str(self.log_dir)  # a remote capture sends the services' recent lines
        for service in self.services:
            service.start(self.log_dir)
        if not self.wait_ready():
            if not self.stopping:
                for service in self.services:
                    if service.proc is not None and service.proc.poll() is not None:
                        log.error("%s exited with status %s%s", service.name, service.proc.returncode,
                                  service.last_words())
                log.error("services did not come up; see the errors above (each service's output: %s)", self.log_dir)
            self.stop_all()
            return 1
        self.record_running("running")
        print("edgepbx ready", flush=True)
        while not self.stopping:
            self.watch()
            self.reload_when_idle()
            self.follow_public_address()
            time.sleep(0.2)
        self.stop_all()
        return 0

    # --- the public address -------------------------------------------------------------
    def follow_public_address(self) -> None:
        """A learned public address (STUN, or the provider's answers noted by the edge) that
        differs from the one the edge advertises: the edge and trunk registration start again
        with it once no call is up (registrations survive: Kamailio keeps them on disk)."""
        now = time.monotonic()
        if now < self.next_nat_check:
            return
        self.next_nat_check = now + 2.0
        if self.cfg.network.stun_server and now >= self.next_stun:
            self.next_stun = now + STUN_EVERY_SECONDS
            threading.Thread(target=refresh_stun, args=(self.cfg,), daemon=True).start()
        if self.cfg.network.public_address:
            return
        learned = public_address(self.cfg)
        if learned and learned != self.advertised and not self.readvertise:
            _, source = public_address_source(self.cfg)
            log.info("public address %s learned from %s; the SIP edge will advertise it once no call is up",
                     learned, source)
            self.readvertise = True
        if self.readvertise and not open_call_count(self.cfg.data_dir / "cdr.sqlite"):
            self.readvertise = False
            self.advertised = learned
            self.apply(self.cfg)

    # --- a new config -------------------------------------------------------------------
    def record_running(self, state: str, error: str | None = None) -> None:
        text = self.cfg.path.read_text(encoding="utf-8")
        write_state_json(self.cfg.data_dir / RUNNING_STATE, {"sha256": sha256_text(text), "state": state,
                                                       "error": error, "at": now()})

    def reload_when_idle(self) -> None:
        if self.reload_requested:
            self.reload_requested = False
            try:
                self.pending = load(self.cfg.path)
            except InvalidConfig as exc:
                log.error("new config not applied, it does not validate:\n%s", exc)
                self.pending = None
                return
            self.waiting_logged = False
        if self.pending is None:
            return
        busy = open_call_count(self.cfg.data_dir / "cdr.sqlite")
        if busy:
            if not self.waiting_logged:
                log.info("new config waits for %d call(s) in progress to end", busy)
                self.waiting_logged = True
            return
        new, self.pending = self.pending, None
        if self.apply(new):
            self.record_running("applied")
            return
        log.error("services did not come up on the new config; putting the previous one back")
        error = "services did not come up on it (see the box's log); the previous config was put back"
        previous = previous_path(self.cfg.path)
        if previous.exists():
            os.replace(previous, self.cfg.path)
            self.apply(load(self.cfg.path))
        self.record_running("rolled_back", error)

    def apply(self, new: Config) -> bool:
        """Restarts what the new config changes; the cloud agent (which asked) keeps running."""
        kamailio_cfg = self.cfg.data_dir / "kamailio" / "kamailio.cfg"
        before = _without_nonce_secret(kamailio_cfg.read_text()) if kamailio_cfg.exists() else ""
        self.cfg = new
        use_site_clock(new.timezone)  # the services started below keep the (maybe new) site's time
        fresh = {s.name: s for s in services(new)}  # re-renders kamailio.cfg and routing.json
        keep = {"cloud"} | ({"kamailio"} if _without_nonce_secret(kamailio_cfg.read_text()) == before else set())
        kept = [s for s in self.services if s.name in keep and s.name in fresh]
        for service in reversed(self.services):  # Kamailio last: trunks un-register through it
            if service not in kept:
                self.stop_one(service)
        self.services = kept + [s for name, s in fresh.items() if name not in {k.name for k in kept}]
        for service in self.services:
            if service.proc is None:
                service.start(self.log_dir)
        log.info("config applied: restarted %s", ", ".join(s.name for s in self.services if s not in kept) or "nothing")
        return self.wait_ready()

    def stop_one(self, service: Service) -> None:
        service.signal_group(signal.SIGTERM)
        if service.proc is not None:
            try:
                service.proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", service.name, STOP_GRACE_SECONDS)
        service.reap_group()

    def watch(self) -> None:
        now = time.monotonic()
        for service in self.services:
            if service.proc is None or service.proc.poll() is None:
                if service.proc is not None and now - service.started_at > 60:
                    service.failures = 0  # a minute of health resets the back-off
                continue
            if service.restart_at == 0.0:
                service.reap_group()
                service.failures += 1
                delay = min(30.0, 0.5 * 2 ** (service.failures - 1))
                service.restart_at = now + delay
                log.error("%s exited with status %s; restarting in %.1f s%s", service.name, service.proc.returncode,
                          delay, service.last_words())
            elif now >= service.restart_at:
                service.restart_at = 0.0
                service.start(self.log_dir)

    def stop_all(self) -> None:
        for service in reversed(self.services):  # feature server first: it hangs calls up cleanly
            service.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for service in self.services:
            if service.proc is None:
                continue
            try:
                service.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", service.name, STOP_GRACE_SECONDS)
            service.reap_group()
            try:
                service.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        log.info("all services stopped")


def print_extensions(cfg: Config, stream=sys.stdout) -> None:
    passwords = credentials.sip_passwords(cfg)
    net = cfg.network
    print(f"{cfg.site_name}: register phones to {net.bind}:{net.sip_port} (domain {cfg.domain})", file=stream)
    for ext in cfg.extensions:
        print(f"  {ext.number:<6} {ext.name:<20} password {passwords[ext.number]}", file=stream)
    stream.flush()

