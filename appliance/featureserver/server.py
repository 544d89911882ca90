"""The feature server: a pjsua2 B2BUA that anchors every call of the office.

One thread owns the pjsua2 library: it runs `loop()`, which polls SIP/media events, fires
timers and runs work queued by other threads (`call_soon`). pjsua2 objects are created, used
and destroyed only there; this is what keeps the library's callbacks and object lifetimes
from crashing the process.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import resource
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pjsua2 as pj

from ..cdr import CdrStore
from ..config import Config, Trunk
from ..dialplan import DialPlan, format_for_trunk
from ..recordings import free_mb, recording_path, recover_after_crash
from ..pjlib import create_library, endpoint_config, set_office_codecs, start_udp
from ..ringing import RingingBoard
from ..trunks import trunk_states
from ..kamailio.render import control_socket
from .b2bua import CallPair, Target, safe_hangup, send_transfer_outcome
from .callback import CallBack
from .inbound import InboundCall
from .limits import outside_call_refusal
from .notice import ToneNotice
from .transfer import attended_transfer, blind_transfer, parse_refer_to

log = logging.getLogger("edgepbx.featureserver")

# PJSUA_MAX_CALLS of our PJSIP build (scripts/pjsip/config_site.h): pjsua itself never refuses a
# leg; calls.max_concurrent is enforced here, with a 503 the caller understands.
RECORDING_SYNC_SECONDS = 5.0  # the most of a recording a power cut can take (sync_recordings)
# Recordings in progress stop when free space falls below this share of recording.min_free_mb
# (new calls already go unrecorded below all of it): what is left stays for the call records.
RECORDING_FLOOR = 0.5
MAX_LEGS = 1024
CONF_THREADS = os.cpu_count() or 1
# pjsua's default quality (8) has the bridge resample 8 <-> 16 kHz legs with libsamplerate's
# SRC_SINC_BEST_QUALITY: 50 recorded calls then took a whole core and the phones got 53 % of their
# packets. Below 3 it uses SRC_SINC_FASTEST (97 dB SNR, ample for telephone audio): 50 calls at
# 42 % of a core with none lost (docs/benchmarks.md).
MEDIA_QUALITY = 2
REQUEST_LINE = re.compile(r"^INVITE\s+sips?:([^@;>\s]+)@", re.IGNORECASE)
REPLACES_HEADER = re.compile(r"^X-Edgepbx-Replaces:\s*([^;\s]+)", re.IGNORECASE | re.MULTILINE)
TRUNK_HEADER = re.compile(r"^X-Edgepbx-Trunk:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
FROM_USER = re.compile(r"^(?:From|f):[^\r\n]*?<?sips?:([^@;>\s]+)@", re.IGNORECASE | re.MULTILINE)
TO_USER = re.compile(r"^(?:To|t):[^\r\n]*?<?sips?:([^@;>\s]+)@", re.IGNORECASE | re.MULTILINE)
ASSERTED_ID = re.compile(r'^P-Asserted-Identity:\s*(?:"([^"]*)"\s*)?<?sips?:([^@;>\s]+)@', re.IGNORECASE | re.MULTILINE)


class Account(pj.Account):
    def __init__(self, server: "FeatureServer"):
        super().__init__()
        self.server = server

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            self.server.on_incoming_call(prm)
        except Exception:  # pjsua would answer 500 and say nothing: say why in the log
            log.exception("incoming call could not be handled; answered 500")
            raise


class FeatureServer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.kamailio_addr = f"{cfg.network.bind}:{cfg.network.sip_port}"
        self.pairs: dict[int, CallPair] = {}  # keyed by id(pair); pairs keep their legs alive
        self.retired: list[object] = []         # ended pairs whose pjsua2 objects die next loop turn
        self.tasks: queue.Queue[Callable[[], None]] = queue.Queue()
        self.timers: list[tuple[float, Callable[[], None]]] = []  # (when, what), on this thread only
        self.stopping = False
        self.store = CdrStore(cfg.data_dir / "cdr.sqlite")
        self.recording_now: set[str] = set()  # CDR ids of calls being recorded (read by the sync thread)
        self.recording_started = threading.Event()  # wakes the sync thread: a new file is on the disk at once
        recover_after_crash(self.store)
        self.ep = pj.Endpoint()
        self.account: Account | None = None
        self.plain_account: pj.Account | None = None   # calls to phones on UDP or TCP: plain RTP
        self.secure_account: pj.Account | None = None  # calls to phones registered over TLS: SRTP
        self.registrations: sqlite3.Connection | None = None
        self.trunk_accounts: dict[str, pj.Account] = {}  # one per trunk: its credentials for 401/407
        self.dialplan = DialPlan(cfg)
        self.board = RingingBoard()
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # REFERs from the SIP edge
        self.control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the sender's uid comes along
        self.control.bind(control_socket(cfg).encode("latin-1"))
        self.control.setblocking(False)

    # -- library setup ----------------------------------------------------------------------

    def start(self) -> None:
        net = self.cfg.network
        create_library(self.ep)
        ec = endpoint_config(MAX_LEGS, 5 if self.cfg.log_level == "debug" else 2)
        ec.medConfig.clockRate = 16000
        ec.medConfig.sndClockRate = 16000
        ec.medConfig.channelCount = 1
        # Two legs and a recorder a call, players for greetings, ringback and music on hold.
        ec.medConfig.maxMediaPorts = min(3072, self.cfg.max_concurrent_calls * 4 + 128)
        ec.medConfig.confThreads = CONF_THREADS  # the parallel bridge: mixing on every core
        ec.medConfig.quality = MEDIA_QUALITY
        ec.medConfig.noVad = True
        ec.medConfig.ecTailLen = 0
        self.ep.libInit(ec)
        start_udp(self.ep, net.bind, net.feature_port)
        self.ep.libStart()
        set_office_codecs(self.ep)
        # Calls arrive on the default account, which takes SRTP (SDES) from a phone that offers it
        # and plain RTP from the rest; calls to phones leave from one of the other two.
        ac = self.leg_account_config("edgepbx", pj.PJMEDIA_SRTP_OPTIONAL)
        self.account = Account(self)
        self.account.create(ac, True)
        self.plain_account = pj.Account()
        self.plain_account.create(self.leg_account_config("edgepbx-plain", pj.PJMEDIA_SRTP_DISABLED))
        self.secure_account = pj.Account()
        self.secure_account.create(self.leg_account_config("edgepbx-srtp", pj.PJMEDIA_SRTP_MANDATORY))
        for trunk in self.cfg.trunks:
            self.trunk_accounts[trunk.name] = self.trunk_account(trunk, ac)
        log.info("feature server listening on %s:%d (RTP %d-%d, up to %d calls)", net.bind, net.feature_port,
                 *net.rtp_ports, self.cfg.max_concurrent_calls)

    def leg_account_config(self, user: str, srtp: int) -> pj.AccountConfig:
        """An account for the office's phones' legs: its media on the box's RTP ports, with SRTP
        `srtp` (disabled, optional or mandatory). The SDP's keys travel between the edge and this
        server over UDP on the box itself, so pjsua must not insist on secure signalling here."""
        net = self.cfg.network
        ac = pj.AccountConfig()
        ac.idUri = f"sip:{user}@{net.bind}:{net.feature_port}"
        ac.mediaConfig.transportConfig.port = net.rtp_ports[0]
        ac.mediaConfig.transportConfig.portRange = net.rtp_ports[1] - net.rtp_ports[0]
        ac.mediaConfig.transportConfig.boundAddress = net.bind
        ac.mediaConfig.srtpUse = srtp
        ac.mediaConfig.srtpSecureSignaling = 0
        return ac

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

    def trunk_account(self, trunk: Trunk, base: pj.AccountConfig) -> pj.Account:
        """No registration here (appliance/trunks.py does it once); calls go out through the edge."""
        net = self.cfg.network
        tc = pj.AccountConfig()
        # Neither the trunk's user name nor its host: pjsua gives an incoming call to the account
        # whose user and domain, or domain alone, its To header names, and providers put their own
        # domain there (To: <sip:DID@provider>): the call would land on this account, which takes
        # no calls, and pjsua2 would answer 500. Calls go out with the From of their target
        # (Target.from_uri), to the trunk's address, with the credentials below.
        tc.idUri = f"sip:edgepbx-trunk-{trunk.name}@trunk.invalid"
        tc.mediaConfig.transportConfig.port = base.mediaConfig.transportConfig.port
        tc.mediaConfig.transportConfig.portRange = base.mediaConfig.transportConfig.portRange
        tc.mediaConfig.transportConfig.boundAddress = net.bind
        tc.sipConfig.proxies.append(f"sip:{net.bind}:{net.sip_port};lr")
        if trunk.username:
            tc.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", trunk.username, 0, trunk.password))
        account = pj.Account()
        account.create(tc)
        return account

    # -- the loop ---------------------------------------------------------------------------

    def call_soon(self, task: Callable[[], None]) -> None:
        """Thread-safe: runs `task` on the library thread."""
        self.tasks.put(task)

    def loop(self) -> None:
        while not self.stopping:
            self.ep.libHandleEvents(10)
            self.read_control()
            self.run_tasks()
            self.fire_timers()
            self.retired.clear()  # drop pjsua2 objects outside of their callbacks
        self.shutdown()

    def read_control(self) -> None:
        """Requests from the box's own processes, which run as this process's user: REFERs handed
        over by Kamailio, and the portal's call-back requests from the cloud agent (answered to the
        sender). An abstract socket has no file permissions, so a datagram from any other user is
        dropped."""
        while True:
            try:
                data, ancillary, _flags, sender = self.control.recvmsg(65536, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return
            uid = sender_uid(ancillary)
            if uid != os.getuid():
                log.warning("ignoring a control request from uid %s: only the box's own services may send them", uid)
                continue
            try:
                request = json.loads(data)
                if "callback" in request:
                    ok, detail = self.call_back(str(request["callback"]["extension"]),
                                                str(request["callback"]["number"]))
                    self.answer_control(sender, {"ok": ok, "detail": detail})
                else:
                    self.on_refer(str(request["call_id"]), str(request["refer_to"]), str(request.get("cseq", "")))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring a malformed control request: %s", exc)
            except Exception:
                log.exception("control request failed")

    def answer_control(self, sender: object, answer: dict) -> None:
        if not sender:
            return  # an unnamed sender expects no answer
        try:
            self.control.sendto(json.dumps(answer).encode(), sender)
        except OSError as exc:
            log.warning("could not answer a control request: %s", exc)

    def call_back(self, extension: str, number: str) -> tuple[bool, str]:
        """The portal's call back: rings `extension`, then dials `number` for it (dial plan and
        permissions as if the extension dialled it). Says at once whether it started, and why not."""
        if self.cfg.extension(extension) is None:
            return False, f"no extension {extension} on this box"
        route = self.dialplan.route(number, extension)
        if route.klass == "denied":
            return False, f"{number}: {route.reason}"
        if route.klass == "feature" or route.number == extension:
            return False, f"{number} is not a number to call back"
        if self.calls_in_progress() >= self.cfg.max_concurrent_calls:
            return False, f"calls.max_concurrent ({self.cfg.max_concurrent_calls}) reached"
        if route.klass == "internal":
            targets = [self.phone_target(route.number, extension, extension)]
        else:
            refusal = outside_call_refusal(self, extension)
            if refusal:
                return False, f"{number}: {refusal}"
            targets = self.trunk_targets(route.number, route.trunks)
            if not targets:
                return False, f"no usable trunk for {route.number}"
        try:
            pair = CallBack(self, extension, route, targets)
        except pj.Error as exc:
            return False, f"cannot ring extension {extension}: {exc.info()}"
        self.pairs[id(pair)] = pair
        log.info("call back: ringing extension %s, then %s (%s)", extension, route.number, route.klass)
        return True, f"ringing extension {extension}; {route.number} is dialled when it answers"

    def find_party(self, sip_call_id: str):
        """(call, leg) of the answered call whose leg has this SIP Call-ID, or None."""
        for call in self.pairs.values():
            for leg in call.parties() or ():
                try:
                    info = leg.getInfo()
                except pj.Error:
                    continue
                if info.callIdString == sip_call_id:
                    return call, leg
        return None

    def on_refer(self, sip_call_id: str, refer_to: str, cseq: str) -> None:
        """A phone's transfer key: blind (REFER to a number) or attended (with Replaces)."""
        found = self.find_party(sip_call_id)
        if found is None:
            log.warning("REFER on a call that is not up (Call-ID %s)", sip_call_id)
            return
        call, leg = found
        number, replaces = parse_refer_to(refer_to)
        log.info("call %s: %s sent REFER to %s%s", call.cdr_id, leg.number, number, " with Replaces" if replaces else "")
        if not leg.office or call.transfer is not None:
            send_transfer_outcome(leg, 603, "Declined", cseq)
            return
        if replaces is None:
            if not re.fullmatch(r"[0-9*#+]{1,32}", number):
                log.warning("call %s: REFER to %r is no number to dial", call.cdr_id, refer_to)
                send_transfer_outcome(leg, 404, "Not Found", cseq)
                return
            blind_transfer(call, leg, number, cseq)
            return
        other = self.find_party(replaces)
        if other is None or other[0] is call:
            log.warning("call %s: the call to replace (%s) is not up", call.cdr_id, replaces)
            send_transfer_outcome(leg, 481, "Call/Transaction Does Not Exist", cseq)
            return
        attended_transfer(self, found, other, cseq)

    def run_tasks(self) -> None:
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return
            try:
                task()
            except Exception:  # a failing task must not take every call down with it
                log.exception("feature server task failed")

    def later(self, seconds: float, task: Callable[[], None]) -> None:
        """Runs `task` on the library thread after `seconds` (call only from that thread)."""
        self.timers.append((time.monotonic() + seconds, task))

    def fire_timers(self) -> None:
        for pair in list(self.pairs.values()):
            pair.on_timer()
        now = time.monotonic()
        due = [task for when, task in self.timers if when <= now]
        if due:
            self.timers = [(when, task) for when, task in self.timers if when > now]
            for task in due:
                try:
                    task()
                except Exception:
                    log.exception("timer task failed")

    def request_stop(self, *_args: object) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        """Hangs up every call, closes their records, and releases the library (about 1 s)."""
        for pair in list(self.pairs.values()):
            pair.abort()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(hasattr(p, "legs_gone") and not p.legs_gone() for p in self.retired + list(self.pairs.values())):
            self.ep.libHandleEvents(20)
        self.pairs.clear()
        self.retired.clear()
        self.account = self.plain_account = self.secure_account = None
        self.ep.libDestroy()
        self.store.close()
        log.info("feature server stopped")

    # -- calls ------------------------------------------------------------------------------

    def on_incoming_call(self, prm: pj.OnIncomingCallParam) -> None:
        msg = prm.rdata.wholeMsg
        source = prm.rdata.srcAddress
        request = REQUEST_LINE.search(msg)
        asserted = ASSERTED_ID.search(msg)
        dst = request.group(1) if request else ""
        src = asserted.group(2) if asserted else ""
        src_name = asserted.group(1) if asserted and asserted.group(1) else src
        call_id = re.search(r"^(?:Call-ID|i):\s*(\S+)", msg, re.IGNORECASE | re.MULTILINE)
        trunk = TRUNK_HEADER.search(msg)
        full = self.calls_in_progress() >= self.cfg.max_concurrent_calls
        if source == self.kamailio_addr and trunk and not full:
            caller = FROM_USER.search(msg)
            to = TO_USER.search(msg)
            registered = next((t for t in self.cfg.trunks if t.name == trunk.group(1) and t.username), None)
            if registered and dst == registered.username and to:
                dst = to.group(1)  # sent to the registered Contact: the number called is in To
            inbound = InboundCall(self, prm.callId, src=caller.group(1) if caller else "anonymous", did=dst,
                                  trunk=trunk.group(1), sip_call_id=call_id.group(1) if call_id else "")
            self.pairs[id(inbound)] = inbound
            inbound.start()
            return
        if source != self.kamailio_addr or not (src or trunk):
            # Only Kamailio, which has authenticated the caller, may place calls here.
            log.warning("rejecting INVITE from %s (not the SIP edge or no asserted caller)", source)
            self.refuse(prm.callId, 403)
            return
        if full:
            log.warning("calls.max_concurrent (%d) reached: INVITE for %s refused with 503",
                        self.cfg.max_concurrent_calls, dst)
            self.refuse(prm.callId, 503)
            return
        route = self.dialplan.route(dst.replace("%23", "#"), src)
        replaces = REPLACES_HEADER.search(msg)  # only the edge sets it: a BLF key's pickup
        if route.klass == "feature" or replaces:
            wanted = (self.board.by_sip_call_id(replaces.group(1)) if replaces
                      else self.board.oldest_ringing(self.pickup_members(route.number, src)))
            target = next((p for p in self.pairs.values() if wanted and p.cdr_id == wanted), None)
            if target is not None and target.pick_up(prm.callId, src):
                return
            if replaces:  # RFC 3891: the dialog to replace is gone (answered or ended meanwhile)
                log.info("%s pressed a BLF key for a call no longer ringing (Call-ID %s)", src, replaces.group(1))
                self.refuse(prm.callId, 481)
                return
            log.info("%s dialled %s: nothing to pick up", src, dst)
            notice = ToneNotice(self, prm.callId, src, "nothing to pick up")
            self.pairs[id(notice)] = notice
            return
        external = route.klass not in ("internal", "feature", "denied")
        pair = CallPair(self, prm.callId, src=src, src_name=src_name, dst=dst,
                        sip_call_id=call_id.group(1) if call_id else "",
                        direction="outbound" if external else "internal", dst_number=route.number if external else None)
        self.pairs[id(pair)] = pair
        if route.klass == "denied":
            log.info("call %s: %s may not call %r: %s", pair.cdr_id, src, dst, route.reason)
            pair.reject(403 if route.reason.startswith("extension") else 404, "failed")
            return
        if dst == src:
            pair.reject(486, "busy")
            return
        if external:
            refusal = outside_call_refusal(self, src, asking=pair)
            if refusal:
                log.warning("call %s: %s may not call %s now: %s", pair.cdr_id, src, dst, refusal)
                pair.reject(403, "failed")
                return
            targets = self.trunk_targets(route.number, route.trunks)
            if not targets:
                log.warning("call %s: no usable trunk for %s", pair.cdr_id, route.number)
                pair.reject(503, "failed")
                return
            pair.dial(targets)
            return
        self.board.ringing(pair.cdr_id, [route.number])
        pair.dial([self.phone_target(route.number, src, src_name)])

    def phone_target(self, extension: str, caller: str, caller_name: str) -> Target:
        """An office phone, reached through the edge (which knows where it registered), with the
        caller's identity in From."""
        net = self.cfg.network
        name = caller_name.replace('"', "")
        account = self.secure_account if self.registered_over_tls(extension) else self.plain_account
        return Target(f"sip:{extension}@{net.bind}:{net.sip_port}", f'"{name}" <sip:{caller}@{self.cfg.domain}>',
                      account, number=extension)

    def refuse(self, leg_id: int, code: int) -> None:
        """Answers an incoming INVITE with `code`; its pjsua2 object is freed on the next loop turn,
        outside the callback that received it."""
        leg = pj.Call(self.account, leg_id)
        safe_hangup(leg, code)
        self.retired.append(leg)

    def pickup_members(self, code: str, picker: str) -> set[str]:
        """The phones whose ringing calls `picker` may take with `code`: its pickup group's for the
        pickup code, the named extension for the directed prefix."""
        features = self.cfg.features
        if code == features.pickup_code:
            me = self.cfg.extension(picker)
            group = me.pickup_group if me else "office"
            return {e.number for e in self.cfg.extensions if e.pickup_group == group and e.number != picker}
        return {code[len(features.directed_pickup_prefix):]}

    def calls_in_progress(self) -> int:
        return sum(pair.state != "ended" for pair in self.pairs.values())

    def trunk_targets(self, number: str, names: list[str]) -> list[Target]:
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
                                  self.trunk_accounts[trunk.name], trunk.name, sent))
        return targets

    def retire_if_done(self, pair: CallPair) -> None:
        if pair.state == "ended" and pair.legs_gone() and self.pairs.pop(id(pair), None) is not None:
            self.retired.append(pair)

    def new_recording_path(self, cdr_id: str, src: str, dst: str) -> Path:
        return recording_path(self.cfg.data_dir, cdr_id, src, dst)

    # -- CDR writes never take a call down (full disk, locked database) ----------------------

    def _cdr(self, action: Callable[[], object], what: str) -> object:
        try:
            return action()
        except sqlite3.Error as exc:
            log.error("CDR %s failed: %s", what, exc)
            return None

    def cdr_start(self, **fields: str) -> str:
        cdr_id = self._cdr(lambda: self.store.start(**fields), "insert")
        return cdr_id if isinstance(cdr_id, str) else "unrecorded"

    def cdr_picked_up(self, cdr_id: str, extension: str) -> None:
        self._cdr(lambda: self.store.picked_up(cdr_id, extension), "pickup update")

    def cdr_link(self, cdr_id: str, linked_id: str) -> None:
        self._cdr(lambda: self.store.link(cdr_id, linked_id), "link update")

    def cdr_transferred(self, cdr_id: str, target: str) -> None:
        self._cdr(lambda: self.store.transferred(cdr_id, target), "transfer update")

    def cdr_trunk(self, cdr_id: str, name: str) -> None:
        self._cdr(lambda: self.store.trunk(cdr_id, name), "trunk update")

    def cdr_answered(self, cdr_id: str, recording: str | None) -> None:
        self._cdr(lambda: self.store.answered(cdr_id, recording), "answer update")
        if recording:
            self.recording_now.add(cdr_id)
            self.recording_started.set()

    def cdr_ended(self, cdr_id: str, disposition: str, code: int | None) -> None:
        self._cdr(lambda: self.store.ended(cdr_id, disposition, code), "end update")
        self.recording_now.discard(cdr_id)

    def sync_recordings(self) -> None:
        """Recordings go through the page cache, and the appliance image commits its data partition
        every 30 s (fewer writes to an SD card): flush when a recording starts and every few seconds
        while calls are recorded, so a power cut loses at most that much of a recording, never the file."""
        while not self.stopping:
            self.recording_started.wait(RECORDING_SYNC_SECONDS)
            self.recording_started.clear()
            if self.recording_now:
                os.sync()
                if free_mb(self.cfg) < self.cfg.recording_min_free_mb * RECORDING_FLOOR:
                    self.call_soon(self.stop_recordings_for_space)

    def stop_recordings_for_space(self) -> None:
        """(library thread) The disk is filling while calls are recorded: their recordings close
        with what they hold so far, the calls go on and their records are still written."""
        stopped = []
        for pair in list(self.pairs.values()):
            for holder in (pair, getattr(pair, "transfer", None)):
                if holder is not None and getattr(holder, "recorder", None) is not None:
                    holder.recorder = None  # closing the WAV writes its final header
                    stopped.append(getattr(pair, "cdr_id", "?"))
        self.recording_now.clear()
        if stopped:
            log.error("ALARM disk low: %.0f MB free on %s, under half of recording.min_free_mb %d; stopped "
                      "recording %d call(s) in progress (%s), which go on unrecorded", free_mb(self.cfg),
                      self.cfg.data_dir, self.cfg.recording_min_free_mb, len(stopped), ", ".join(stopped))


def sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
            return struct.unpack("3i", data[:12])[1]  # pid, uid, gid
    return None


def raise_file_limit() -> None:
    """Each call leg holds an RTP and an RTCP socket: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def run(cfg: Config) -> None:
    raise_file_limit()
    server = FeatureServer(cfg)
    signal.signal(signal.SIGTERM, server.request_stop)
    signal.signal(signal.SIGINT, server.request_stop)
    server.start()
    threading.Thread(target=server.sync_recordings, name="recording-sync", daemon=True).start()
    print("feature server ready", flush=True)
    server.loop()
    # Leave without Python's finalizer: it would destroy stray pjsua2 proxies after libDestroy,
    # which trips pjsua's assertions. Everything worth keeping is closed and flushed by now.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)
