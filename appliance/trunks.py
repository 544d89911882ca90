"""Trunk registration: `edgepbx trunks` keeps every trunk with `register: true` registered.

A pjsua2 account per trunk sends REGISTER through Kamailio (outbound proxy) with Contact forced
to Kamailio's own address, so the provider sees the box's SIP port and sends inbound calls there.
pjsua2 re-registers before expiry; after a failure this module retries with back-off (5 s doubling
to 5 min). The state of each trunk is kept in data_dir/trunks.sqlite for `edgepbx status`.
"""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass

import pjsua2 as pj

from .cdr import now
from .config import Config, Trunk
from .kamailio.render import public_address, resolve
from .nat import is_outside
from .pjlib import create_library, endpoint_config, start_udp
from .trunk_state import state_db

log = logging.getLogger("edgepbx.trunks")
FIRST_RETRY, MAX_RETRY = 5.0, 300.0
REGISTER_EXPIRES = 300

def trunk_port(cfg: Config) -> int:
    """The registration process's own SIP port: just below the feature server's."""
    return cfg.network.feature_port - 1


@dataclass
class Retry:
    failures: int = 0
    due: float | None = None


class TrunkAccount(pj.Account):
    def __init__(self, registrar: "TrunkRegistrar", trunk: Trunk):
        super().__init__()
        self.registrar, self.trunk = registrar, trunk
        self.retry = Retry()

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.registrar.on_reg_state(self, prm.code, prm.reason, prm.expiration)


class TrunkRegistrar:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.db = state_db(cfg)
        self.ep = pj.Endpoint()
        self.accounts: list[TrunkAccount] = []
        self.stopping = False

    def start(self) -> None:
        net = self.cfg.network
        create_library(self.ep)
        self.ep.libInit(endpoint_config(1, 5 if self.cfg.log_level == "debug" else 2))
        start_udp(self.ep, net.bind, trunk_port(self.cfg))
        self.ep.libStart()
        for trunk in self.cfg.trunks:
            if trunk.register:
                self.accounts.append(self.register(trunk))
        log.info("trunk registration on %s:%d for %s", net.bind, trunk_port(self.cfg),
                 ", ".join(a.trunk.name for a in self.accounts) or "no trunk")

    def register(self, trunk: Trunk) -> TrunkAccount:
        net = self.cfg.network
        ac = pj.AccountConfig()
        ac.idUri = f"sip:{trunk.username}@{trunk.host}"
        ac.regConfig.registrarUri = f"sip:{trunk.host}:{trunk.port}" + (";transport=tcp" if trunk.transport == "tcp" else "")
        ac.regConfig.timeoutSec = REGISTER_EXPIRES
        ac.regConfig.retryIntervalSec = 0  # our own back-off below
        ac.sipConfig.proxies.append(f"sip:{net.bind}:{net.sip_port};lr")
        # The provider must reach the box at Kamailio's port, never at this process's: beyond the
        # office's NAT at the edge's outside face, by the public address when the box knows it.
        if is_outside(resolve(trunk.host)):
            contact = f"{public_address(self.cfg) or net.bind}:{net.wan_port}"
        else:
            contact = f"{net.bind}:{net.sip_port}"
        ac.sipConfig.contactForced = f"<sip:{trunk.username}@{contact}>"
        # pjsua would take the edge's view of this process (its Via's received/rport) for a NAT
        # and register its own address instead: the edge, not pjsua, deals with the office's NAT.
        ac.natConfig.contactRewriteUse = 0
        ac.natConfig.viaRewriteUse = 0
        ac.natConfig.sdpNatRewriteUse = 0
        ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", trunk.username, 0, trunk.password))
        account = TrunkAccount(self, trunk)
        account.create(ac)
        self.store(trunk.name, "registering", None, None, None)
        return account

    def on_reg_state(self, account: TrunkAccount, code: int, reason: str, expires: int) -> None:
        name = account.trunk.name
        if 200 <= code < 300 and expires > 0:
            account.retry = Retry()
            self.store(name, "registered", code, reason, expires)
            log.info("trunk %s registered (%d %s, expires %d s)", name, code, reason, expires)
            return
        if self.stopping:
            return
        account.retry.failures += 1
        delay = min(MAX_RETRY, FIRST_RETRY * 2 ** (account.retry.failures - 1))
        account.retry.due = time.monotonic() + delay
        self.store(name, "failing", code, reason, None)
        log.warning("trunk %s: registration failed with %d %s; retrying in %.0f s", name, code, reason, delay)

    def store(self, name: str, state: str, code: int | None, reason: str | None, expires: int | None) -> None:
        try:
            self.db.execute("INSERT OR REPLACE INTO trunks VALUES (?,?,?,?,?,?)", (name, state, code, reason, now(), expires))
        except sqlite3.Error as exc:
            log.error("trunk state not saved: %s", exc)

    def loop(self) -> None:
        while not self.stopping:
            self.ep.libHandleEvents(50)
            for account in self.accounts:
                if account.retry.due is not None and time.monotonic() >= account.retry.due:
                    account.retry.due = None
                    try:
                        account.setRegistration(True)
                    except pj.Error as exc:
                        self.on_reg_state(account, 0, exc.info(), 0)
        for account in self.accounts:  # un-register cleanly
            try:
                account.setRegistration(False)
            except pj.Error:
                pass
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            self.ep.libHandleEvents(50)


def run(cfg: Config) -> None:
    registrar = TrunkRegistrar(cfg)
    signal.signal(signal.SIGTERM, lambda *_: setattr(registrar, "stopping", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(registrar, "stopping", True))
    registrar.start()
    print("trunks ready", flush=True)
    registrar.loop()
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)  # as the feature server: no pjsua2 teardown by Python's finalizer
