"""The pjsua2 settings every edgepbx process shares: one library thread, no sound card, the
office's codecs."""
from __future__ import annotations

import ctypes
import logging
import os
import sys

import pjsua2 as pj

pjsip_log = logging.getLogger("pjsip")
LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}


class LogToPython(pj.LogWriter):
    """PJSIP's own log lines go to the appliance's log (logger `pjsip`), never bare to the console."""

    def write(self, entry: pj.LogEntry) -> None:
        pjsip_log.log(LEVELS.get(entry.level, logging.DEBUG), "%s", entry.msg.rstrip())


_writer = LogToPython()  # must outlive the library


def create_library(ep: pj.Endpoint) -> None:
    """libCreate, whose first log lines (before any log config applies) would go to stdout:
    they are dropped, as is everything below warnings until libInit sets the writer."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        ep.libCreate()
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def endpoint_config(max_calls: int, log_level: int) -> pj.EpConfig:
    """Library owned by the calling thread (threadCnt 0, mainThreadOnly): callbacks arrive only
    inside libHandleEvents, so pjsua2 objects are never touched by two threads. `log_level`:
    PJSIP's (2 warnings, 5 with every SIP message), written to the appliance's log."""
    ec = pj.EpConfig()
    ec.uaConfig.threadCnt = 0
    ec.uaConfig.mainThreadOnly = True
    ec.uaConfig.maxCalls = max_calls
    ec.uaConfig.userAgent = "edgepbx"
    ec.logConfig.level = log_level
    ec.logConfig.consoleLevel = log_level
    ec.logConfig.writer = _writer
    ec.logConfig.decor = 0  # the Python log adds time and source
    ec.logConfig.msgLogging = log_level >= 5
    return ec


def start_udp(ep: pj.Endpoint, bind: str, port: int) -> int:
    """A UDP transport on bind:port; the null sound device clocks the conference bridge."""
    ep.audDevManager().setNullDev()
    tc = pj.TransportConfig()
    tc.port = port
    tc.boundAddress = bind
    return ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)


# Wideband first: opus, then G.722; G.711 A-law (Europe, Russia) before µ-law. Others are off.
CODEC_PRIORITIES = {"opus/48000": 250, "G722/16000": 240, "PCMA/8000": 230, "PCMU/8000": 220}
OPUS_RATE = 16000  # wideband: what desk phones' opus offers carry, and what the bridge mixes at


def set_office_codecs(ep: pj.Endpoint) -> None:
    """Enables only the office's codecs, in order. Opus runs wideband and mono with in-band FEC
    (its SDP fmtp then says maxplaybackrate=16000; useinbandfec=1), at a complexity a small
    ARM board affords for many calls."""
    for codec in ep.codecEnum2():  # ids look like "PCMA/8000/1" or "opus/48000/2"
        name = "/".join(codec.codecId.split("/")[:2])
        ep.codecSetPriority(codec.codecId, CODEC_PRIORITIES.get(name, 0))
    try:
        opus = ep.getCodecOpusConfig()
    except pj.Error:
        return  # a PJSIP without opus: G.722 and G.711 still work
    opus.sample_rate = OPUS_RATE
    opus.channel_cnt = 1
    opus.bit_rate = 24000
    opus.complexity = 5
    opus.packet_loss = 5
    opus.cbr = False
    ep.setCodecOpusConfig(opus)
