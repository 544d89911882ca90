"""The pjsua2 settings every edgepbx process shares: one library thread, no sound card."""
from __future__ import annotations

import pjsua2 as pj


def endpoint_config(max_calls: int, console_level: int) -> pj.EpConfig:
    """Library owned by the calling thread (threadCnt 0, mainThreadOnly): callbacks arrive only
    inside libHandleEvents, so pjsua2 objects are never touched by two threads."""
    ec = pj.EpConfig()
    ec.uaConfig.threadCnt = 0
    ec.uaConfig.mainThreadOnly = True
    ec.uaConfig.maxCalls = max_calls
    ec.uaConfig.userAgent = "edgepbx"
    ec.logConfig.level = max(3, console_level)
    ec.logConfig.consoleLevel = console_level
    ec.logConfig.msgLogging = console_level >= 5
    return ec


def start_udp(ep: pj.Endpoint, bind: str, port: int) -> int:
    """A UDP transport on bind:port; the null sound device clocks the conference bridge."""
    ep.audDevManager().setNullDev()
    tc = pj.TransportConfig()
    tc.port = port
    tc.boundAddress = bind
    return ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
