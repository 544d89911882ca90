"""The feature server's pjsua2 library: one endpoint owned by the library thread, its UDP
transport, the office's codecs, and its accounts: the default one that takes calls from the edge
(SRTP if the phone offers it), one each for calls to phones without and with SRTP, and one per
trunk with its credentials."""
from __future__ import annotations

import logging
import os
from typing import Callable

import pjsua2 as pj

from ...config import Config, Trunk
from ...pjlib import create_library, endpoint_config, set_office_codecs, start_udp
from .message import Invite, read_invite

log = logging.getLogger("edgepbx.featureserver")

# PJSUA_MAX_CALLS of our PJSIP build (scripts/pjsip/config_site.h): pjsua itself never refuses a
# leg; calls.max_concurrent is enforced by the intake, with a 503 the caller understands.
MAX_LEGS = 1024
CONF_THREADS = os.cpu_count() or 1
# pjsua's default quality (8) has the bridge resample 8 <-> 16 kHz legs with libsamplerate's
# SRC_SINC_BEST_QUALITY: 50 recorded calls then took a whole core and the phones got 53 % of their
# packets. Below 3 it uses SRC_SINC_FASTEST (97 dB SNR, ample for telephone audio): 50 calls at
# 42 % of a core with none lost (docs/benchmarks.md).
MEDIA_QUALITY = 2


class IncomingAccount(pj.Account):
    """The account INVITEs from the edge arrive on; hands each to `on_invite`."""

    def __init__(self, on_invite: Callable[[Invite], None]):
        super().__init__()
        self.on_invite = on_invite

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            self.on_invite(read_invite(prm.callId, prm.rdata.srcAddress, prm.rdata.wholeMsg))
        except Exception:  # pjsua would answer 500 and say nothing: say why in the log
            log.exception("incoming call could not be handled; answered 500")
            raise


class Endpoint:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.ep = pj.Endpoint()
        self.incoming: IncomingAccount | None = None
        self.plain: pj.Account | None = None    # calls to phones on UDP or TCP: plain RTP
        self.secure: pj.Account | None = None   # calls to phones registered over TLS: SRTP
        self.trunks: dict[str, pj.Account] = {}  # one per trunk: its credentials for 401/407

    def start(self, on_invite: Callable[[Invite], None]) -> None:
        cfg, net = self.cfg, self.cfg.network
        create_library(self.ep)
        ec = endpoint_config(MAX_LEGS, 5 if cfg.log_level == "debug" else 2)
        ec.medConfig.clockRate = 16000
        ec.medConfig.sndClockRate = 16000
        ec.medConfig.channelCount = 1
        # Two legs and a recorder a call, players for greetings, ringback and music on hold.
        ec.medConfig.maxMediaPorts = min(3072, cfg.max_concurrent_calls * 4 + 128)
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
        self.incoming = IncomingAccount(on_invite)
        self.incoming.create(ac, True)
        self.plain = pj.Account()
        self.plain.create(self.leg_account_config("edgepbx-plain", pj.PJMEDIA_SRTP_DISABLED))
        self.secure = pj.Account()
        self.secure.create(self.leg_account_config("edgepbx-srtp", pj.PJMEDIA_SRTP_MANDATORY))
        for trunk in cfg.trunks:
            self.trunks[trunk.name] = self.trunk_account(trunk, ac)
        log.info("feature server listening on %s:%d (RTP %d-%d, up to %d calls)", net.bind, net.feature_port,
                 *net.rtp_ports, cfg.max_concurrent_calls)

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

    def handle_events(self, milliseconds: int) -> None:
        self.ep.libHandleEvents(milliseconds)

    def refuse(self, leg_id: int, code: int) -> pj.Call:
        """Answers an incoming INVITE with `code`; returns its pjsua2 object, to be freed on the next
        loop turn (outside the callback that received it)."""
        leg = pj.Call(self.incoming, leg_id)
        prm = pj.CallOpParam()
        prm.statusCode = code
        try:
            leg.hangup(prm)
        except pj.Error:
            pass
        return leg

    def destroy(self) -> None:
        self.incoming = self.plain = self.secure = None
        self.ep.libDestroy()
