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
import ipaddress
import json
import os
import socket
import sqlite3
import time
from datetime import datetime
from urllib.parse import quote

import KSR  # provided by Kamailio's app_python3

FLT_NATS = 5
FLB_NATB = 6
FLB_NATSIPPING = 7
FLT_FROM_OUTSIDE = 11  # the transaction's request came from beyond the office's NAT
EXIT = -255
SCANNER_AGENTS = ("friendly-scanner", "sipcli", "sipvicious", "sip-scan", "sipsak", "iWar", "VaxSIPUserAgent")


RELOAD_CHECK_SECONDS = 1.0
MAX_REPORT_BYTES = 8192  # an RTCP-XR session report is under 2 KB
EDGE_CALL_HEADER = "X-Edgepbx-Call"
EDGE_CALL_FIELDS = ("caller", "name", "dialled", "to", "trunk", "replaces", "call_id", "tls")


def edge_call_header(**fields) -> str:
    """The one header that tells the feature server what this edge knows of a call it relays
    (appliance/featureserver/edge.py reads it): name=value pairs, each value percent-encoded."""
    values = {name: str(fields.get(name) or "") for name in EDGE_CALL_FIELDS}
    values["tls"] = "1" if fields.get("tls") else "0"
    return f"{EDGE_CALL_HEADER}: " + ";".join(f"{k}={quote(v, safe='')}" for k, v in values.items()) + "\r\n"


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
        wan = routing.get("wan") or {}
        self.wan_port = int(wan.get("port", 0))
        self.public = wan.get("public") or ""  # what the outside face advertises ("" : its LAN address)
        self.nat_state_path = wan.get("state")
        self.nat_state = None  # what this process last noted
        # the office's own networks (appliance/nat.py INSIDE_NETWORKS): the rest is beyond the NAT
        self.inside = [ipaddress.ip_network(n) for n in wan.get("inside", [])]

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
                # the box registering a trunk: on to the provider, from Kamailio's own socket
                if self.outside(KSR.pv.gete("$rd")):
                    self.leave_by_outside_face()
                    KSR.tm.t_on_reply("ksr_onreply_trunk_register")
                self.relay()
            else:
                self.register()
            return 1
        if method == "PUBLISH" and self.event() == "vq-rtcpxr":
            self.voice_quality_report()
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
        KSR.hdr.remove(EDGE_CALL_HEADER)  # only this edge says who calls, on which trunk, what to pick up
        if from_fs:
            self.to_phone()
        elif trunk:
            KSR.hdr.remove("P-Asserted-Identity")
            KSR.hdr.append(edge_call_header(caller=KSR.pv.gete("$fU") or "anonymous", dialled=KSR.pv.gete("$rU"),
                                            to=KSR.pv.gete("$tU"), trunk=trunk, call_id=KSR.pv.gete("$ci"),
                                            tls=KSR.pv.gete("$pr") == "tls"))
            self.mark_if_from_outside()
            KSR.rr.record_route()
            self.relay_to_feature_server()
        else:
            self.mark_if_from_outside()
            self.to_feature_server()
        return 1

    def from_feature_server(self) -> bool:
        return KSR.pv.get("$si") == self.fs_host and int(KSR.pv.get("$sp")) == self.fs_port

    def next_hop_is_feature_server(self) -> bool:
        """Where the request goes next ($du, else the request URI) is the feature server."""
        port = KSR.pv.gete("$nh(p)") or "5060"
        return KSR.pv.gete("$nh(d)") == self.fs_host and port.isdigit() and int(port) == self.fs_port

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
        """Drops scanners and banned addresses without an answer: a password guesser that gets
        403s keeps sending (sipvicious' svcrack did, for as long as it was let run); one that gets
        nothing gives up, and learns nothing about the box."""
        ua = KSR.pv.gete("$ua") or ""
        source = KSR.pv.get("$si")
        if any(agent.lower() in ua.lower() for agent in SCANNER_AGENTS):
            KSR.notice(f"edgepbx: scanner '{ua}' from {source} dropped\n")
            return EXIT
        if source != self.edge[0] and KSR.pike.pike_check_req() < 0:  # the box's own services are exempt
            if KSR.htable.sht_get("flooders", source) is None:
                KSR.htable.sht_seti("flooders", source, 1)
                KSR.err(f"edgepbx: flood from {source}: dropping its requests until it slows down\n")
            return EXIT
        failures = KSR.htable.sht_get("authfail", source)
        if failures is not None and failures >= self.ban_after:
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
            if not self.from_feature_server() and not self.direct and not self.next_hop_is_feature_server():
                # Every call is anchored in the feature server: a phone's or provider's in-dialog
                # request goes there or nowhere. (Relayed, any host that named this box in a Route
                # could send requests anywhere from the box's address: to an IP-trusted trunk, say.)
                KSR.notice(f"edgepbx: in-dialog {method} from {KSR.pv.get('$si')} for "
                           f"{KSR.pv.gete('$nh(d)')}:{KSR.pv.gete('$nh(p)')} refused (not relayed)\n")
                KSR.sl.sl_send_reply(403, "Forbidden")
                return EXIT
            if method == "REFER" and not self.from_feature_server() and not self.direct:
                self.refer_to_feature_server()
                return EXIT
            if self.from_feature_server() and self.outside(KSR.pv.gete("$nh(d)")):
                self.sdp_to_public()  # a re-INVITE or UPDATE to the provider or a phone away
            else:
                self.mark_if_from_outside()
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
            if self.event() != "dialog":
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

    @staticmethod
    def event():
        return (KSR.pv.gete("$hdr(Event)") or KSR.pv.gete("$hdr(o)") or "").split(";")[0].strip().lower()

    def voice_quality_report(self):
        """A phone's RTCP-XR voice quality report (RFC 6035: PUBLISH, Event: vq-rtcpxr), sent at a
        call's end by phones the templates point here. Authenticated like the phone's calls, then
        handed to the feature server, which adds the phone's own MOS to its side of the call's
        record; 200 either way (a report is not worth a phone's retries)."""
        if not self.authenticate("PUBLISH", same_user=False):
            return
        KSR.auth.consume_credentials()
        body = KSR.pv.gete("$rb") or ""
        if len(body) > MAX_REPORT_BYTES:
            KSR.sl.sl_send_reply(413, "Request Entity Too Large")
            return
        self.tell_feature_server({"phone_report": {"extension": KSR.pv.get("$au"), "body": body}}, "a voice quality report")
        KSR.hdr.append_to_reply(f"SIP-ETag: vq{int(time.time() * 1000)}\r\nExpires: 0\r\n")
        KSR.sl.sl_send_reply(200, "OK")

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
        refer_to = KSR.pv.gete("$hdr(Refer-To)") or KSR.pv.gete("$hdr(r)")
        if not refer_to:
            KSR.sl.sl_send_reply(400, "Missing Refer-To")
            return
        refer = {"call_id": KSR.pv.get("$ci"), "refer_to": refer_to, "cseq": KSR.pv.get("$cs"),
                 "referred_by": KSR.pv.gete("$hdr(Referred-By)") or ""}
        if not self.tell_feature_server(refer, "REFER"):
            KSR.sl.sl_send_reply(503, "Service Unavailable")
            return
        KSR.sl.sl_send_reply(202, "Accepted")

    def tell_feature_server(self, request: dict, what: str) -> bool:
        """One datagram to the feature server's control socket (appliance/featureserver/control.py)."""
        try:
            if self.control is None:
                self.control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.control.sendto(json.dumps(request).encode(), self.control_address.encode("latin-1"))
            return True
        except OSError as exc:
            KSR.err(f"edgepbx: cannot hand {what} to the feature server: {exc}\n")
            return False

    # -- authentication ------------------------------------------------------------------

    def authenticate(self, method, same_user=True) -> bool:
        """Digest auth against the office's extensions; counts failures per source address.
        `same_user`: the credentials' user must be the From user (the To user for REGISTER and
        PUBLISH); a voice quality report is addressed To its collector, so it is not asked."""
        user = KSR.pv.gete("$au")
        if not user:
            KSR.auth.auth_challenge(self.realm, 0)
            return False
        ext = self.extensions.get(user)
        password = ext["password"] if ext else "\x00never-matches"
        rc = KSR.auth.pv_auth_check(self.realm, password, 0, 1 if same_user else 0)
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
        # Pinged (nathelper, every NAT_KEEPALIVE_SECONDS): phones behind a NAT, and every phone
        # away from the office, whose own keepalives may be too rare for its router (a softphone
        # that rewrote its Contact to its public address looks like no NAT at all)
        if KSR.isflagset(FLT_NATS) or self.outside(KSR.pv.get("$si")):
            KSR.setbflag(FLB_NATB)
            KSR.setbflag(FLB_NATSIPPING)
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()
            return
        self.note_registration()

    def note_registration(self):
        """Keeps who is registered, from where, over which transport and with which User-Agent,
        for `edgepbx devices` and for the feature server (a phone on TLS gets its calls with SRTP)."""
        if not self.registrations_path:
            return
        try:
            if self.registrations is None:
                self.registrations = sqlite3.connect(self.registrations_path, timeout=0.5, isolation_level=None)
                self.registrations.execute("PRAGMA journal_mode=WAL")
                self.registrations.execute("PRAGMA synchronous=NORMAL")
                self.registrations.execute("CREATE TABLE IF NOT EXISTS registrations (extension TEXT PRIMARY KEY, "
                                           "source TEXT, user_agent TEXT, registered_at REAL, expires_at REAL, "
                                           "transport TEXT)")
                try:  # a table from before the transport was noted
                    self.registrations.execute("ALTER TABLE registrations ADD COLUMN transport TEXT")
                except sqlite3.OperationalError:
                    pass
            expires = KSR.pv.gete("$hdr(Expires)") or ""
            contact = KSR.pv.gete("$ct") or ""
            if "expires=" in contact:
                expires = contact.split("expires=", 1)[1].split(";")[0].split(">")[0]
            seconds = int(expires) if expires.strip().isdigit() else 3600
            now = time.time()
            self.registrations.execute(
                "INSERT OR REPLACE INTO registrations (extension, source, user_agent, registered_at, expires_at, "
                "transport) VALUES (?,?,?,?,?,?)",
                (KSR.pv.get("$au"), f"{KSR.pv.get('$si')}:{KSR.pv.get('$sp')}", KSR.pv.gete("$ua"), now,
                 now + min(seconds, 3600), KSR.pv.gete("$pr")))
        except (sqlite3.Error, ValueError) as exc:
            KSR.warn(f"edgepbx: could not note registration: {exc}\n")

    # -- call routing --------------------------------------------------------------------

    def to_feature_server(self):
        if not self.authenticate("INVITE"):
            return
        KSR.auth.consume_credentials()
        caller = KSR.pv.get("$au")
        # The caller is who authenticated, whatever the phone asserted (the feature server reads
        # it from X-Edgepbx-Call below; a phone reached directly in benchmarks sees this one).
        KSR.hdr.remove("P-Asserted-Identity")
        name = self.extensions[caller]["name"].replace('"', "").replace("\\", "")  # a quoted-string's two specials
        KSR.hdr.append(f'P-Asserted-Identity: "{name}" <sip:{caller}@{self.realm}>\r\n')
        if self.direct:
            self.to_phone()
            return
        replaces = KSR.pv.gete("$hdr(Replaces)")
        if replaces:
            # A BLF key picking up the call ringing on the watched phone. pjsua would act on
            # Replaces by itself; the feature server bridges the caller with the picker instead.
            KSR.hdr.remove("Replaces")
        KSR.hdr.append(edge_call_header(caller=caller, name=name, dialled=KSR.pv.gete("$rU"), to=KSR.pv.gete("$tU"),
                                        replaces=replaces.split(";", 1)[0].strip(), call_id=KSR.pv.gete("$ci"),
                                        tls=KSR.pv.gete("$pr") == "tls"))
        self.track_dialog(caller, None)
        KSR.rr.record_route()
        self.relay_to_feature_server()

    def relay_to_feature_server(self):
        KSR.setdsturi(f"sip:{self.fs_host}:{self.fs_port}")
        # from the LAN face, whichever face the call came in on: the feature server sees its edge
        # at the one address it trusts, and a call from outside gets a Record-Route for each face
        KSR.pv.sets("$fs", f"udp:{self.edge[0]}:{self.edge[1]}")
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
            if self.outside(KSR.pv.gete("$rd")):  # over the office's NAT, from the outside face
                self.leave_by_outside_face()
                self.sdp_to_public()
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
        if self.outside(KSR.pv.gete("$nh(d)")):
            self.sdp_to_public()  # a phone away from the office, registered on the outside face
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
        if self.outside(KSR.pv.get("$si")):
            if KSR.nathelper.nat_uac_test(8) > 0:  # a phone behind its own NAT answered with its LAN address
                KSR.nathelper.fix_nated_sdp(2)
        elif KSR.isflagset(FLT_FROM_OUTSIDE):
            self.sdp_to_public()  # the feature server's answer on its way out through the NAT
        return 1

    # -- the outside face: the office's NAT ------------------------------------------------

    def outside(self, address) -> bool:
        """Beyond the office's own networks (a provider, a phone at home), reached through NAT."""
        try:
            ip = ipaddress.ip_address((address or "").strip("[]"))
        except ValueError:
            return False  # a name (resolved by Kamailio) or nothing: treated as the office's
        return not any(ip in network for network in self.inside)

    def mark_if_from_outside(self):
        """A request from beyond the NAT: answers to it leave with the public address in their SDP;
        a phone behind its own NAT gets the address it is really at in its SDP."""
        if not self.outside(KSR.pv.get("$si")):
            return
        KSR.setflag(FLT_FROM_OUTSIDE)
        if KSR.nathelper.nat_uac_test(8) > 0:
            KSR.nathelper.fix_nated_sdp(2)

    def leave_by_outside_face(self):
        """Out through the router: from the outside face, asking for answers to come back to the
        port the request really left from (rport, RFC 3581; the router may have changed it)."""
        KSR.pv.sets("$fs", f"udp:{self.edge[0]}:{self.wan_port}")
        KSR.add_local_rport()

    def sdp_to_public(self):
        """The feature server's media address (the box's LAN address) becomes the public one in
        an SDP leaving the office, so the far end's audio comes back through the router."""
        if self.public and self.public != self.edge[0] and KSR.textops.has_body_type("application/sdp") > 0:
            KSR.nathelper.fix_nated_sdp_ip(2 + 8, self.public)

    def ksr_onreply_trunk_register(self, msg):
        """A provider's answer to the box's REGISTER: its Via says where the box's request really
        came from (received, rport) and, if a router rewrote it on the way back, no longer names
        what the box sent: a SIP ALG (appliance/nat.py)."""
        via = (KSR.pv.gete("$hdr(Via)") or "").split(",")[0]
        try:
            sent_by = via.split()[1].split(";")[0]
        except IndexError:
            return 1
        params = dict(p.split("=", 1) if "=" in p else (p, "") for p in via.split(";")[1:])
        host, _, port = sent_by.partition(":")
        expected = self.public or self.edge[0]
        received = params.get("received", "").strip()
        note = {"received": None, "alg": None}
        provider = f"{KSR.pv.get('$si')}:{KSR.pv.get('$sp')}"
        if received:
            note["received"] = {"address": received, "port": params.get("rport", "").strip(), "from": provider}
        elif self.public and host == self.public:  # the advertised public address was where it came from
            note["received"] = {"address": host, "port": port, "from": provider}
        if host != expected or (port and int(port) != self.wan_port):
            note["alg"] = {"detail": f"an answer from {KSR.pv.get('$si')} names {sent_by} in the box's Via, "
                                     f"where the box sent {expected}:{self.wan_port}"}
        self.note_nat(note)
        return 1

    def note_nat(self, note: dict):
        """Keeps what the providers' answers show in data_dir/nat-state.json, written only when it
        changes (a file per change, not per answer: fewer writes to an SD card)."""
        if not self.nat_state_path or note == self.nat_state:
            return
        if note["alg"] and not (self.nat_state or {}).get("alg"):
            KSR.warn(f"edgepbx: SIP ALG: {note['alg']['detail']}; turn the router's SIP ALG off\n")
        self.nat_state = note
        stamped = {k: (dict(v, at=datetime.now().astimezone().isoformat(timespec="seconds")) if v else None)
                   for k, v in note.items()}
        try:
            tmp = f"{self.nat_state_path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(stamped, fh)
            os.replace(tmp, self.nat_state_path)
        except OSError as exc:
            KSR.err(f"edgepbx: NAT state not saved: {exc}\n")

    def ksr_trunk_keepalive(self, msg, _event=None):
        """rtimer, every NAT_KEEPALIVE_SECONDS: an OPTIONS from the outside face to each trunk
        beyond the NAT keeps the router's mapping open, so the provider's calls come in."""
        self.reload_if_changed()
        for (ip, port), name in self.trunks.items():
            if not self.outside(ip):
                continue
            face = f"{self.public or self.edge[0]}:{self.wan_port}"
            KSR.pv.sets("$uac_req(method)", "OPTIONS")
            KSR.pv.sets("$uac_req(ruri)", f"sip:{ip}:{port}")
            KSR.pv.sets("$uac_req(furi)", f"sip:keepalive@{face}")
            KSR.pv.sets("$uac_req(turi)", f"sip:{ip}:{port}")
            KSR.pv.sets("$uac_req(sock)", f"udp:{self.edge[0]}:{self.wan_port}")
            KSR.pv.sets("$uac_req(hdrs)", "Max-Forwards: 70\r\n")
            KSR.uac.uac_req_send()
        return 1
