"""What an INVITE or a REFER becomes. An INVITE from the edge is an inbound call from a trunk, a
pickup (the pickup code, `**` + extension, or a BLF key's Replaces), a short tone when nothing is
there to pick up, or a call from an office phone to another phone or out over a trunk; anything
not from the edge is refused. A REFER from a phone's transfer key is a blind or an attended
transfer; the portal's call back starts here too. Each decision is in this one file."""
from __future__ import annotations

import logging
import re
from typing import Callable

from .calls.bridged import BridgedCall
from .calls.callback import CallBack
from .calls.inbound import InboundCall
from .calls.notice import ToneNotice
from .calls.transfer import attended_transfer, blind_transfer, parse_refer_to
from .edge import EdgeCall
from .model import DialError
from .quality import parse_vq_report
from .services import Services

log = logging.getLogger("edgepbx.featureserver")
DIALLABLE = re.compile(r"[0-9*#+]{1,32}")


class Intake:
    def __init__(self, services: Services, edge_address: str, refuse: Callable[[int, int], None]):
        """`edge_address`: "address:port" of the SIP edge, the only sender trusted; `refuse(leg_id,
        code)` answers an INVITE with an error code."""
        self.services = services
        self.edge_address = edge_address
        self.refuse = refuse

    @property
    def full(self) -> bool:
        return self.services.table.in_progress() >= self.services.cfg.max_concurrent_calls

    # -- INVITE ---------------------------------------------------------------------------

    def invite(self, leg_id: int, source: str, edge: EdgeCall | None) -> None:
        cfg = self.services.cfg
        if source != self.edge_address or edge is None or not (edge.caller or edge.trunk):
            # Only Kamailio, which has authenticated the caller, may place calls here.
            log.warning("rejecting INVITE from %s (not the SIP edge or no asserted caller)", source)
            self.refuse(leg_id, 403)
            return
        if self.full:
            log.warning("calls.max_concurrent (%d) reached: INVITE for %s refused with 503",
                        cfg.max_concurrent_calls, edge.dialled)
            self.refuse(leg_id, 503)
            return
        if edge.trunk:
            self.from_trunk(leg_id, edge)
            return
        route = self.services.dialplan.route(edge.dialled.replace("%23", "#"), edge.caller)
        if route.klass == "feature" or edge.replaces:
            self.pick_up(leg_id, edge, route.number)
            return
        self.from_phone(leg_id, edge, route)

    def from_trunk(self, leg_id: int, edge: EdgeCall) -> None:
        """A call from outside: the greeting and the office's scenario (calls/inbound.py)."""
        did = edge.dialled
        registered = next((t for t in self.services.cfg.trunks if t.name == edge.trunk and t.username), None)
        if registered and did == registered.username and edge.to:
            did = edge.to  # sent to the registered Contact: the number called is in To
        call = InboundCall(self.services, leg_id, src=edge.caller or "anonymous", did=did, trunk=edge.trunk,
                           sip_call_id=edge.call_id)
        call.start()

    def pick_up(self, leg_id: int, edge: EdgeCall, code: str) -> None:
        """The pickup code, `**` + extension, or a BLF key (Replaces): the picker takes the call
        ringing longest on a phone it may pick up from, or the one its key names."""
        services, picker = self.services, edge.caller
        if not services.cfg.features.pickup:
            log.info("%s dialled %s: pickup is switched off (features.pickup)", picker, edge.dialled or "a BLF key")
            ToneNotice(services, leg_id, picker, "pickup is switched off")
            return
        wanted = (services.board.by_sip_call_id(edge.replaces) if edge.replaces
                  else services.board.oldest_ringing(services.reach.pickup_members(code, picker)))
        call = services.table.by_cdr_id(wanted)
        if call is not None and call.pick_up(leg_id, picker):
            return
        if edge.replaces:  # RFC 3891: the dialog to replace is gone (answered or ended meanwhile)
            log.info("%s pressed a BLF key for a call no longer ringing (Call-ID %s)", picker, edge.replaces)
            self.refuse(leg_id, 481)
            return
        log.info("%s dialled %s: nothing to pick up", picker, edge.dialled)
        ToneNotice(services, leg_id, picker, "nothing to pick up")

    def from_phone(self, leg_id: int, edge: EdgeCall, route) -> None:
        """An office phone calls another phone, or a number out over the route's trunks."""
        services = self.services
        src, dst = edge.caller, edge.dialled
        src_name = edge.name or src
        external = route.klass not in ("internal", "feature", "denied")
        call = BridgedCall.from_phone(services, leg_id, src=src, src_name=src_name, dst=dst,
                                      sip_call_id=edge.call_id, outbound=external,
                                      dst_number=route.number if external else None)
        if route.klass == "denied":
            log.info("call %s: %s may not call %r: %s", call.cdr_id, src, dst, route.reason)
            call.reject(403 if route.reason.startswith("extension") else 404, "failed")
            return
        if dst == src:
            call.reject(486, "busy")
            return
        if external:
            refusal = services.limits.refusal(src, asking=call)
            if refusal:
                log.warning("call %s: %s may not call %s now: %s", call.cdr_id, src, dst, refusal)
                call.reject(403, "failed")
                return
            targets = services.reach.trunks_for(route.number, route.trunks)
            if not targets:
                log.warning("call %s: no usable trunk for %s", call.cdr_id, route.number)
                call.reject(503, "failed")
                return
            call.dial(targets)
            return
        services.board.ringing(call.cdr_id, [route.number])
        call.dial([services.reach.phone(route.number, src, src_name)])

    # -- REFER (a phone's transfer key, handed over by the edge) -------------------------------

    def refer(self, sip_call_id: str, refer_to: str, cseq: str) -> None:
        """Blind (REFER to a number) or attended (with Replaces)."""
        table = self.services.table
        found = table.party(sip_call_id)
        if found is None:
            log.warning("REFER on a call that is not up (Call-ID %s)", sip_call_id)
            return
        call, leg = found
        number, replaces = parse_refer_to(refer_to)
        log.info("call %s: %s sent REFER to %s%s", call.cdr_id, leg.number, number, " with Replaces" if replaces else "")
        if not leg.office or call.transfer is not None:
            leg.send_transfer_outcome(603, "Declined", cseq)
            return
        if replaces is None:
            if not DIALLABLE.fullmatch(number):
                log.warning("call %s: REFER to %r is no number to dial", call.cdr_id, refer_to)
                leg.send_transfer_outcome(404, "Not Found", cseq)
                return
            blind_transfer(self.services, call, leg, number, cseq)
            return
        other = table.party(replaces)
        if other is None or other[0] is call:
            log.warning("call %s: the call to replace (%s) is not up", call.cdr_id, replaces)
            leg.send_transfer_outcome(481, "Call/Transaction Does Not Exist", cseq)
            return
        attended_transfer(self.services, found, other, cseq)

    # -- a phone's own report of a call (RTCP-XR PUBLISH, handed over by the edge) ---------------

    def phone_report(self, extension: str, body: str) -> None:
        """Adds what `extension`'s phone measured to its side of the call: to the call itself while
        it is up (the record takes it at the end), else to the record of a call that just ended. A
        report naming another extension's call is dropped: a phone speaks only for itself."""
        report = parse_vq_report(body)
        if report is None:
            log.warning("a voice quality report from %s names no call", extension)
            return
        found = self.services.table.party(report.call_id)
        if found is not None:
            call, leg = found
            side = call.side_of(leg)
            if side and leg.number == extension:
                call.phone_reports[side] = report
            return
        ended = self.services.table.ended_legs.get(report.call_id)
        if ended is None or ended[2] != extension:
            log.info("a voice quality report from %s is for no call of its that ended lately (Call-ID %s)",
                     extension, report.call_id)
            return
        cdr_id, side, _number = ended
        self.services.records.phone_report(cdr_id, side, report.figures())

    # -- the portal's call back ---------------------------------------------------------------

    def call_back(self, extension: str, number: str) -> tuple[bool, str]:
        """Rings `extension`, then dials `number` for it (dial plan and permissions as if the
        extension dialled it). Says at once whether it started, and why not."""
        services = self.services
        if services.cfg.extension(extension) is None:
            return False, f"no extension {extension} on this box"
        route = services.dialplan.route(number, extension)
        if route.klass == "denied":
            return False, f"{number}: {route.reason}"
        if route.klass == "feature" or route.number == extension:
            return False, f"{number} is not a number to call back"
        if self.full:
            return False, f"calls.max_concurrent ({services.cfg.max_concurrent_calls}) reached"
        if route.klass == "internal":
            targets = [services.reach.phone(route.number, extension, extension)]
        else:
            refusal = services.limits.refusal(extension)
            if refusal:
                return False, f"{number}: {refusal}"
            targets = services.reach.trunks_for(route.number, route.trunks)
            if not targets:
                return False, f"no usable trunk for {route.number}"
        try:
            CallBack(services, extension, route, targets)
        except DialError as exc:
            return False, f"cannot ring extension {extension}: {exc}"
        log.info("call back: ringing extension %s, then %s (%s)", extension, route.number, route.klass)
        return True, f"ringing extension {extension}; {route.number} is dialled when it answers"
