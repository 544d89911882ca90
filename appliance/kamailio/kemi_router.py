"""Kamailio's SIP routing, run inside Kamailio by app_python3 (KEMI).

Kamailio is the edge: it authenticates phones (digest), keeps their registrations, answers
keepalives, fixes NATed contacts, and bans addresses that keep failing authentication. Every new
call from a phone goes to the feature server (the pjsua2 B2BUA); calls from the feature server go
to the registered phone. Nothing here knows about call features: that is the feature server's job.

The routing data (extensions, passwords, addresses) is a JSON file written by edgepbx at start
and again when a new office config is applied; its path comes in the EDGEPBX_ROUTING environment
variable. Each Kamailio process re-reads it when it changes (checked at most once a second), so a
new extension or password takes effect without restarting Kamailio and losing registrations.
"""
import json
import os
import socket
import sqlite3
import time

import KSR  # provided by Kamailio's app_python3

FLT_NATS = 5
FLB_NATB = 6
FLB_NATSIPPING = 7
EXIT = -255
SCANNER_AGENTS = ("friendly-scanner", "sipcli", "sipvicious", "sip-scan", "sipsak", "iWar", "VaxSIPUserAgent")


RELOAD_CHECK_SECONDS = 1.0


def mod_init():
    return Router(os.environ["EDGEPBX_ROUTING"])


class Router:
    def __init__(self, routing_path: str):
        self.routing_path = routing_path
        self.routing_mtime = os.stat(routing_path).st_mtime_ns
        self.next_check = time.monotonic() + RELOAD_CHECK_SECONDS
        self.registrations = None  # opened per Kamailio process, on first use
        self.control = None  # the socket to the feature server's control address, likewise
        with open(routing_path, encoding="utf-8") as fh:
            self.load(json.load(fh))

    def reload_if_changed(self):
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + RELOAD_CHECK_SECONDS
        try:
            mtime = os.stat(self.routing_path).st_mtime_ns
            if mtime == self.routing_mtime:
                return
            with open(self.routing_path, encoding="utf-8") as fh:
                routing = json.load(fh)
            fresh = Router.__new__(Router)
            fresh.load(routing)  # all or nothing: a broken file leaves the old data in place
            vars(self).update(vars(fresh))
            self.routing_mtime = mtime
            KSR.info("edgepbx: routing data reloaded (%d extensions)\n" % len(self.extensions))
        except (OSError, ValueError, KeyError) as exc:  # half-written or broken: keep the old data
            KSR.err("edgepbx: routing data not reloaded: %s\n" % exc)

    def load(self, routing: dict):
        self.realm = routing["realm"]
        self.extensions = routing["extensions"]  # number -> {"password", "name"}
        self.fs_host = routing["feature_server"]["host"]
        self.fs_port = int(routing["feature_server"]["port"])
        self.ban_after = int(routing["ban_after"])
        self.direct = bool(routing.get("direct_routing", False))  # benchmark only: bypass the feature server
        self.registrations_path = routing.get("registrations_db")
        self.trunks = {(t["ip"], int(t["port"])): t["name"] for t in routing.get("trunks", [])}
        self.control_address = routing["feature_server"]["control"]  # where the feature server takes REFERs
        edge = routing.get("edge") or {}
        self.edge = (edge.get("host"), int(edge.get("port", 0)))  # this Kamailio: pua's PUBLISHes come from here
        self.flags = routing.get("flags") or {}
        self.box_token = routing.get("box_token")
        registrar = routing.get("trunk_registrar") or {}
        self.trunk_registrar = (registrar.get("host"), int(registrar.get("port", 0)))

    def child_init(self, rank):
        return 0

    # -- request routing -----------------------------------------------------------------

    def ksr_request_route(self, msg):
        self.reload_if_changed()
        method = KSR.pv.get("$rm")
        from_fs = self.from_feature_server()
        trunk = self.trunks.get((KSR.pv.get("$si"), int(KSR.pv.get("$sp"))))
        if not from_fs and not trunk and not self.from_trunk_registrar() and self.reject_abuse(method) == EXIT:
            return 1
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return 1
        if KSR.sanity.sanity_check(1511, 7) < 0:
            KSR.warn(f"edgepbx: malformed {method} from {KSR.pv.get('$si')}:{KSR.pv.get('$sp')} rejected\n")
            return 1
        self.detect_nat(method)

        if method == "CANCEL":
            if KSR.tm.t_check_trans() > 0:
                self.relay()
            return 1
        if self.within_dialog(method) == EXIT:
            return 1
        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()
            return 1
        if KSR.tm.t_check_trans() == 0:
            return 1
        KSR.hdr.remove("Route")

        if method == "OPTIONS" and KSR.pv.is_null("$rU"):
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        if method == "REGISTER":
            if self.from_trunk_registrar():
                self.relay()  # the box registering a trunk: on to the provider, from Kamailio's socket
            else:
                self.register()
            return 1
        if method in ("SUBSCRIBE", "PUBLISH"):
            self.presence(method)
            return 1
        if method == "NOTIFY" and self.from_box_agent():
            self.notify_phone()
            return 1
        if method != "INVITE":
            KSR.sl.sl_send_reply(405, "Method Not Allowed")
            return 1
        KSR.hdr.remove("X-Edgepbx-Trunk")  # only this edge says a call came in on a trunk, or what to pick up
        KSR.hdr.remove("X-Edgepbx-Replaces")
        if from_fs:
            self.to_phone()
        elif trunk:
            KSR.hdr.remove("P-Asserted-Identity")
            KSR.hdr.append(f"X-Edgepbx-Trunk: {trunk}\r\n")
            KSR.rr.record_route()
            self.relay_to_feature_server()
        else:
            self.to_feature_server()
        return 1

    def from_feature_server(self) -> bool:
        return KSR.pv.get("$si") == self.fs_host and int(KSR.pv.get("$sp")) == self.fs_port

    def from_box_agent(self) -> bool:
        """The cloud agent's NOTIFY to a phone: from this box's own address, with the token only
        the box's processes can read (routing.json, 0600)."""
        token = KSR.hdr.get("X-Edgepbx-Box")
        return bool(self.box_token) and token == self.box_token and KSR.pv.get("$si") == self.edge[0]

    def notify_phone(self):
        """Relays the agent's check-sync/resync/reboot NOTIFY to where the phone registered from
        (through its NAT binding, from Kamailio's own socket)."""
        KSR.hdr.remove("X-Edgepbx-Box")
        if KSR.registrar.lookup("location") < 0:
            KSR.sl.sl_send_reply(404, "Not Registered")
            return
        self.relay()

    def from_trunk_registrar(self) -> bool:
        return (KSR.pv.get("$si"), int(KSR.pv.get("$sp"))) == self.trunk_registrar

    def reject_abuse(self, method):
        """Drops scanners silently and answers banned addresses with 403."""
        ua = KSR.pv.gete("$ua") or ""
        if any(agent.lower() in ua.lower() for agent in SCANNER_AGENTS):
            KSR.notice(f"edgepbx: scanner '{ua}' from {KSR.pv.get('$si')} dropped\n")
            return EXIT
        failures = KSR.htable.sht_get("authfail", KSR.pv.get("$si"))
        if failures is not None and failures >= self.ban_after:
            if method != "ACK":
                KSR.sl.sl_send_reply(403, "Forbidden")
            return EXIT
        return 1

    def detect_nat(self, method):
        KSR.force_rport()
        if KSR.nathelper.nat_uac_test(19) > 0:
            if method == "REGISTER":
                KSR.nathelper.fix_nated_register()
            elif KSR.siputils.is_first_hop() > 0:
                KSR.nathelper.set_contact_alias()
            KSR.setflag(FLT_NATS)

    def within_dialog(self, method):
        if KSR.siputils.has_totag() < 0:
            return 1
        if KSR.rr.loose_route() > 0:
            if not KSR.isdsturiset():
                KSR.nathelper.handle_ruri_alias()
            if method == "REFER" and not self.from_feature_server():
                self.refer_to_feature_server()
                return EXIT
            self.relay()
            return EXIT
        if method == "ACK":
            if KSR.tm.t_check_trans() > 0:
                self.relay()
            return EXIT
        if method == "SUBSCRIBE":  # a BLF subscription's refresh or end: presence's own dialog
            self.serve_presence("SUBSCRIBE")
            return EXIT
        KSR.sl.sl_send_reply(404, "Not here")
        return EXIT

    # -- BLF: dialog-info presence ------------------------------------------------------

    def presence(self, method):
        """Phones' BLF keys SUBSCRIBE to Event: dialog of an extension (authenticated like calls);
        the states come from the dialog module through pua_dialoginfo, whose PUBLISHes this
        Kamailio sends to itself and only it may send."""
        if method == "PUBLISH":
            if (KSR.pv.get("$si"), int(KSR.pv.get("$sp"))) != self.edge:
                KSR.sl.sl_send_reply(403, "Forbidden")
                return
        else:
            event = (KSR.pv.gete("$hdr(Event)") or KSR.pv.gete("$hdr(o)") or "").split(";")[0].strip().lower()
            if event != "dialog":
                KSR.sl.sl_send_reply(489, "Bad Event")
                return
            if not self.authenticate("SUBSCRIBE"):
                return
            KSR.auth.consume_credentials()
            if KSR.pv.gete("$rU") not in self.extensions:
                KSR.sl.sl_send_reply(404, "No Such Extension")
                return
            # The watched presentity is the extension in the office's domain, whatever name or
            # address the phone used for the box (pua_dialoginfo publishes under the domain).
            KSR.pv.sets("$rd", self.realm)
        self.serve_presence(method)

    def watched(self, extension):
        return KSR.presence.pres_has_subscribers(f"sip:{extension}@{self.realm}", "dialog") > 0

    def serve_presence(self, method):
        if KSR.tm.t_newtran() < 0:
            KSR.sl.sl_reply_error()
            return
        if method == "PUBLISH":
            KSR.presence.handle_publish()
        else:
            KSR.presence.handle_subscribe()
        KSR.tm.t_release()

    def track_dialog(self, caller, callee):
        """Has the dialog module follow this INVITE so pua_dialoginfo PUBLISHes its states: for the
        caller on a phone's call into the feature server, for the callee on the feature server's
        call to a phone (each call crosses the edge twice; each side is published once). Only for
        a phone some BLF key watches: the PUBLISHes cost a call's setup 2-4 ms (docs/benchmarks.md)."""
        caller = caller if caller and self.watched(caller) else None
        callee = callee if callee and self.watched(callee) else None
        if not caller and not callee:
            return
        KSR.setflag(int(self.flags.get("publish", 8)))
        if caller:
            KSR.pv.sets("$avp(pua_caller)", f"sip:{caller}@{self.realm}")
        else:
            KSR.setflag(int(self.flags.get("no_caller_publish", 9)))
        if callee:
            KSR.pv.sets("$avp(pua_callee)", f"sip:{callee}@{self.realm}")
        else:
            KSR.setflag(int(self.flags.get("no_callee_publish", 10)))
        KSR.dialog.dlg_manage()

    def refer_to_feature_server(self):
        """A phone's transfer key (REFER, blind or with Replaces) on a call through the feature
        server, which carries it out itself: the edge accepts the REFER here (202) and hands its
        content to the feature server's control socket; the outcome goes back by NOTIFY."""
        next_hop = KSR.pv.gete("$du") or KSR.pv.gete("$ru") or ""
        port = next_hop.rsplit(":", 1)[-1].split(";")[0].split(">")[0]
        if not (port.isdigit() and int(port) == self.fs_port):
            self.relay()
            return
        refer_to = KSR.pv.gete("$hdr(Refer-To)") or KSR.pv.gete("$hdr(r)")
        if not refer_to:
            KSR.sl.sl_send_reply(400, "Missing Refer-To")
            return
        refer = {"call_id": KSR.pv.get("$ci"), "refer_to": refer_to, "cseq": KSR.pv.get("$cs"),
                 "referred_by": KSR.pv.gete("$hdr(Referred-By)") or ""}
        try:
            if self.control is None:
                self.control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.control.sendto(json.dumps(refer).encode(), self.control_address.encode("latin-1"))
        except OSError as exc:
            KSR.err(f"edgepbx: cannot hand REFER to the feature server: {exc}\n")
            KSR.sl.sl_send_reply(503, "Service Unavailable")
            return
        KSR.sl.sl_send_reply(202, "Accepted")

    # -- authentication ------------------------------------------------------------------

    def authenticate(self, method) -> bool:
        """Digest auth against the office's extensions; counts failures per source address."""
        user = KSR.pv.gete("$au")
        if not user:
            KSR.auth.auth_challenge(self.realm, 0)
            return False
        ext = self.extensions.get(user)
        password = ext["password"] if ext else "\x00never-matches"
        rc = KSR.auth.pv_auth_check(self.realm, password, 0, 1)
        if rc > 0:
            return True
        if rc in (-4, -6):  # stale or reused nonce: a normal retry, not an attack
            KSR.auth.auth_challenge(self.realm, 0)
            return False
        source = KSR.pv.get("$si")
        count = (KSR.htable.sht_get("authfail", source) or 0) + 1
        KSR.htable.sht_seti("authfail", source, count)
        KSR.warn(f"edgepbx: auth failed for user '{user}' from {source} ({method}, code {rc}, failure {count})\n")
        if count >= self.ban_after:
            KSR.err(f"edgepbx: banning {source} after {count} failed authentications\n")
        KSR.sl.sl_send_reply(403, "Forbidden")
        return False

    def register(self):
        if not self.authenticate("REGISTER"):
            return
        if KSR.pv.get("$tU") != KSR.pv.get("$au"):
            KSR.sl.sl_send_reply(403, "Forbidden: To user differs from auth user")
            return
        if KSR.isflagset(FLT_NATS):
            KSR.setbflag(FLB_NATB)
            KSR.setbflag(FLB_NATSIPPING)
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()
            return
        self.note_registration()

    def note_registration(self):
        """Keeps who is registered, from where and with which User-Agent, for `edgepbx devices`."""
        if not self.registrations_path:
            return
        try:
            if self.registrations is None:
                self.registrations = sqlite3.connect(self.registrations_path, timeout=0.5, isolation_level=None)
                self.registrations.execute("PRAGMA journal_mode=WAL")
                self.registrations.execute("CREATE TABLE IF NOT EXISTS registrations (extension TEXT PRIMARY KEY, "
                                           "source TEXT, user_agent TEXT, registered_at REAL, expires_at REAL)")
            expires = KSR.pv.gete("$hdr(Expires)") or ""
            contact = KSR.pv.gete("$ct") or ""
            if "expires=" in contact:
                expires = contact.split("expires=", 1)[1].split(";")[0].split(">")[0]
            seconds = int(expires) if expires.strip().isdigit() else 3600
            now = time.time()
            self.registrations.execute(
                "INSERT OR REPLACE INTO registrations VALUES (?,?,?,?,?)",
                (KSR.pv.get("$au"), f"{KSR.pv.get('$si')}:{KSR.pv.get('$sp')}", KSR.pv.gete("$ua"), now,
                 now + min(seconds, 3600)))
        except (sqlite3.Error, ValueError) as exc:
            KSR.warn(f"edgepbx: could not note registration: {exc}\n")

    # -- call routing --------------------------------------------------------------------

    def to_feature_server(self):
        if not self.authenticate("INVITE"):
            return
        KSR.auth.consume_credentials()
        caller = KSR.pv.get("$au")
        # The feature server trusts this header only from Kamailio; never from a phone.
        KSR.hdr.remove("P-Asserted-Identity")
        name = self.extensions[caller]["name"].replace('"', "")
        KSR.hdr.append(f'P-Asserted-Identity: "{name}" <sip:{caller}@{self.realm}>\r\n')
        if self.direct:
            self.to_phone()
            return
        replaces = KSR.pv.gete("$hdr(Replaces)")
        if replaces:
            # A BLF key picking up the call ringing on the watched phone. pjsua would act on
            # Replaces by itself; the feature server bridges the caller with the picker instead.
            KSR.hdr.remove("Replaces")
            KSR.hdr.append(f"X-Edgepbx-Replaces: {replaces.split(';', 1)[0].strip()}\r\n")
        self.track_dialog(caller, None)
        KSR.rr.record_route()
        self.relay_to_feature_server()

    def relay_to_feature_server(self):
        KSR.setdsturi(f"sip:{self.fs_host}:{self.fs_port}")
        KSR.tm.t_on_failure("ksr_failure_feature_server")
        self.relay()

    def ksr_failure_feature_server(self, msg):
        """The feature server's 503 (calls.max_concurrent reached) reaches the phone as 503: relayed,
        Kamailio would turn it into 500 as RFC 3261 16.7 asks of a proxy."""
        if KSR.tm.t_is_canceled() < 0 and KSR.tm.t_check_status("503") > 0:
            KSR.tm.t_reply(503, "All Lines Busy")
        return 1

    def to_phone(self):
        if not KSR.is_myself(KSR.pv.get("$ru")):
            KSR.rr.record_route()  # a call out over a trunk: straight to the provider
            self.relay()
            return
        if KSR.pv.gete("$rU") in self.extensions:
            self.track_dialog(None, KSR.pv.get("$rU"))
        rc = KSR.registrar.lookup("location")
        if rc < 0:
            KSR.tm.t_newtran()
            if rc == -2:
                KSR.tm.t_reply(405, "Method Not Allowed")
            else:
                KSR.tm.t_reply(480, "Temporarily Unavailable")
            return
        KSR.rr.record_route()
        self.relay()

    def relay(self):
        if KSR.pv.get("$rm") in ("INVITE", "UPDATE") and KSR.tm.t_is_set("onreply_route") < 0:
            KSR.tm.t_on_reply("ksr_onreply_manage")
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    # Kamailio looks these two up for every message; without them app_python3 5.6 leaves a
    # pending AttributeError that breaks the next KSR call.
    def ksr_reply_route(self, msg):
        return 1

    def ksr_onsend_route(self, msg):
        return 1

    def ksr_onreply_manage(self, msg):
        if KSR.isbflagset(FLB_NATB) or KSR.isflagset(FLT_NATS):
            KSR.nathelper.set_contact_alias()
        return 1
