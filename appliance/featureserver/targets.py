"""How the feature server reaches a callee: an office phone through the edge (which knows where it
registered, and whether over TLS), or a number over the route's trunks, failing ones last."""
from __future__ import annotations

import sqlite3
import time

from ..config import Config
from ..dialplan import DialPlan, format_for_trunk
from ..trunk_state import trunk_states
from .model import Target


class Reach:
    """`plain`, `secure` and `trunks` are the SIP adapter's accounts (sip/endpoint.py): calls to
    phones on UDP or TCP, calls to phones registered over TLS (SRTP), one per trunk."""

    def __init__(self, cfg: Config, dialplan: DialPlan, plain: object, secure: object, trunks: dict[str, object]):
        self.cfg, self.dialplan = cfg, dialplan
        self.plain, self.secure, self.trunks = plain, secure, trunks
        self.registrations: sqlite3.Connection | None = None

    def registered_over_tls(self, extension: str) -> bool:
        """The phone's registration came over TLS (noted by the edge in registrations.sqlite):
        it expects its calls' audio encrypted as well."""
        try:
            if self.registrations is None:
                self.registrations = sqlite3.connect(f"file:{self.cfg.data_dir / 'registrations.sqlite'}?mode=ro",
                                                     uri=True, timeout=0.2, isolation_level=None)
            row = self.registrations.execute("SELECT transport FROM registrations WHERE extension = ? AND "
                                             "expires_at > ?", (extension, time.time())).fetchone()
        except sqlite3.Error:  # no phone registered yet (no file), or a table from before transports
            self.registrations = None
            return False
        return bool(row) and (row[0] or "").lower() == "tls"

    def phone(self, extension: str, caller: str, caller_name: str) -> Target:
        """An office phone, reached through the edge, with the caller's identity in From."""
        net = self.cfg.network
        name = caller_name.replace('"', "")
        account = self.secure if self.registered_over_tls(extension) else self.plain
        return Target(f"sip:{extension}@{net.bind}:{net.sip_port}", f'"{name}" <sip:{caller}@{self.cfg.domain}>',
                      account, number=extension)

    def trunks_for(self, number: str, names: list[str]) -> list[Target]:
        """The route's trunks in order, those whose registration is failing last (still tried)."""
        failing = {t["name"] for t in trunk_states(self.cfg) if t["state"] == "failing"}
        trunks = [t for n in names for t in self.cfg.trunks if t.name == n]
        trunks.sort(key=lambda t: t.name in failing)
        targets = []
        for trunk in trunks:
            sent = format_for_trunk(number, trunk.number_format, self.dialplan.country_code)
            caller = trunk.caller_id or trunk.username or "anonymous"
            transport = ";transport=tcp" if trunk.transport == "tcp" else ""
            targets.append(Target(f"sip:{sent}@{trunk.host}:{trunk.port}{transport}", f"<sip:{caller}@{trunk.host}>",
                                  self.trunks[trunk.name], trunk.name, sent))
        return targets

    def pickup_members(self, code: str, picker: str) -> set[str]:
        """The phones whose ringing calls `picker` may take with `code`: its pickup group's for the
        pickup code, the named extension for the directed prefix."""
        features = self.cfg.features
        if code == features.pickup_code:
            me = self.cfg.extension(picker)
            group = me.pickup_group if me else "office"
            return {e.number for e in self.cfg.extensions if e.pickup_group == group and e.number != picker}
        return {code[len(features.directed_pickup_prefix):]}
