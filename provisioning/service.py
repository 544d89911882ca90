"""`edgepbx provision`: the provisioning servers of one box in one process (run by `edgepbx run`)."""
from __future__ import annotations

import logging
import signal
import threading

from appliance import credentials
from appliance.config import Config

from .registry import Registry
from .render import Renderer
from .servers import MissCounter, TftpService, http_server

log = logging.getLogger("edgepbx.provisioning")


def run(cfg: Config) -> None:
    prov = cfg.provisioning
    registry = Registry(cfg, credentials.sip_passwords(cfg))
    renderer = Renderer(cfg, registry)
    misses = MissCounter()
    stoppers, threads = [], []
    if prov.tftp_port:
        tftp = TftpService(cfg, renderer, misses)
        threads.append(threading.Thread(target=tftp.serve_forever, name="tftp", daemon=True))
        stoppers.append(tftp.stop)
    for tls, port in ((False, prov.http_port), (True, prov.https_port)):
        if port:
            server = http_server(cfg, renderer, misses, tls)
            threads.append(threading.Thread(target=server.serve_forever, name="https" if tls else "http", daemon=True))
            stoppers.append(server.shutdown)
    for thread in threads:
        thread.start()
    if prov.pnp:
        from .pnp import PnpResponder
        try:
            pnp = PnpResponder(cfg, registry)
            threading.Thread(target=pnp.serve_forever, name="pnp", daemon=True).start()
            stoppers.append(pnp.stop)
        except OSError as exc:  # e.g. no multicast on the interface (loopback)
            log.warning("provisioning: SIP multicast PnP is off: %s", exc)
    listener = None
    if prov.discovery:
        from .dhcp import DhcpListener
        listener = DhcpListener(cfg, registry)
        listener.start()
        stoppers.append(listener.stop)
    log.info("provisioning on %s: TFTP %s, HTTP %s, HTTPS %s; %d phones known", cfg.network.bind,
             prov.tftp_port or "off", prov.http_port or "off", prov.https_port or "off", len(registry.devices))
    print("provisioning ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for stopper in stoppers:
        threading.Thread(target=stopper, daemon=True).start()
    log.info("provisioning stopped")
