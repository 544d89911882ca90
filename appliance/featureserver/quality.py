"""What each leg of a call measured, and an estimated MOS for it (issue 26).

The box anchors all media, so it sees every packet of both legs: per leg, PJSIP's stream
statistics give the packets the box received from that party and the ones it expected but never
got, the interarrival jitter (RFC 3550) of that party's packets, the round-trip time from RTCP,
and that party's own receiver reports of what it got from the box.

The MOS is the ITU-T G.107 E-model, reduced to what a PBX knows (docs/quality.md):
  R = 93.2 - Id - Ie_eff
  Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl)                (random loss, BurstR = 1)
  Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)               (d: one-way delay, ms)
  d = rtt/2 (0 when unknown) + 2 * mean jitter + the packet time (20 ms)
  MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R), 1.0..4.5
Ie and Bpl per codec from G.113 Appendix I (G.711 with packet loss concealment: 0 and 25.1;
G.729A+VAD 11 and 19; GSM-FR 20 and 10; G.722, Opus and others are given G.711's figures, since
G.113 has no narrowband-equivalent figure for them: their MOS is a narrowband estimate).
Phones that send RTCP-XR voice quality reports (RFC 6035) add their own view: parse_vq_report.
Standard library only: the call logic's tests run it without pjsua2.
"""
from __future__ import annotations

from dataclasses import dataclass

PACKET_MS = 20.0
# codec (lower case, without clock rate) -> (Ie, Bpl)
CODEC_IMPAIRMENT = {"pcmu": (0.0, 25.1), "pcma": (0.0, 25.1), "g729": (11.0, 19.0), "gsm": (20.0, 10.0)}
DEFAULT_IMPAIRMENT = (0.0, 25.1)
POOR_MOS = 3.6  # under this a call counts as poor (the portal's quality share, alarms)


@dataclass(frozen=True)
class LegSample:
    """One leg's stream figures at one moment (cumulative since the stream began)."""
    codec: str
    received: int                 # packets the box received from this party
    lost: int                     # packets of this party's it expected and did not get
    jitter_mean_ms: float
    jitter_max_ms: float
    rtt_ms: float | None          # from RTCP; None before the first receiver report
    sent: int                     # packets the box sent to this party
    reported_lost: int | None     # what this party reported not receiving (RTCP RR); None without RR
    reported_jitter_ms: float | None


def mos(codec: str, loss_pct: float, jitter_ms: float, rtt_ms: float | None) -> float:
    ie, bpl = CODEC_IMPAIRMENT.get(codec.lower().split("/")[0], DEFAULT_IMPAIRMENT)
    ie_eff = ie + (95.0 - ie) * loss_pct / (loss_pct + bpl)
    delay = (rtt_ms or 0.0) / 2 + 2 * jitter_ms + PACKET_MS
    impairment = 0.024 * delay + (0.11 * (delay - 177.3) if delay > 177.3 else 0.0)
    r = 93.2 - impairment - ie_eff
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return round(min(4.5, max(1.0, 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r))), 2)


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole > 0 else 0.0


ONE_WAY_AFTER_PACKETS = 25  # the box sent half a second of audio and got none back: one-way audio


def summary(sample: LegSample) -> dict:
    """The leg's figures as the call record carries them (`quality.caller` / `quality.callee`).
    A party the box heard nothing from while it sent that party audio had no line at all (one-way
    audio: a NAT or firewall): all lost, MOS 1.0, not the clean line its empty counters suggest."""
    one_way = sample.received == 0 and sample.sent >= ONE_WAY_AFTER_PACKETS
    loss = 100.0 if one_way else percent(sample.lost, sample.received + sample.lost)
    return {
        "codec": sample.codec, "packets": sample.received, "lost": sample.lost, "loss_pct": loss,
        "jitter_ms": round(sample.jitter_mean_ms, 1), "jitter_max_ms": round(sample.jitter_max_ms, 1),
        "rtt_ms": round(sample.rtt_ms, 1) if sample.rtt_ms is not None else None,
        "reported_loss_pct": percent(sample.reported_lost, sample.sent) if sample.reported_lost is not None else None,
        "reported_jitter_ms": round(sample.reported_jitter_ms, 1) if sample.reported_jitter_ms is not None else None,
        "mos": 1.0 if one_way else mos(sample.codec, loss, sample.jitter_mean_ms, sample.rtt_ms),
    }


# --- what the phone itself measured (RTCP-XR voice quality reports, RFC 6035) ------------------

@dataclass(frozen=True)
class PhoneReport:
    """A phone's own view of a call's audio, from its SIP PUBLISH (Event: vq-rtcpxr): its listening
    and conversational MOS, the loss it saw and the round trip it measured. None where not said."""
    call_id: str
    mos_lq: float | None
    mos_cq: float | None
    loss_pct: float | None
    rtt_ms: float | None

    def figures(self) -> dict:
        """What the call record carries beside the box's own figures of that leg."""
        return {name: value for name, value in (("phone_mos", self.mos_lq), ("phone_mos_cq", self.mos_cq),
                                                 ("phone_loss_pct", self.loss_pct), ("phone_rtt_ms", self.rtt_ms))
                if value is not None}


def _number(text: str | None, low: float, high: float) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and low <= value <= high else None


def parse_vq_report(body: str) -> PhoneReport | None:
    """The report's Call-ID and the LocalMetrics figures (what the reporting phone received), or
    None when it names no call. Unknown lines and malformed values are ignored, never trusted."""
    call_id, section, metrics = None, None, {}
    for line in body.splitlines()[:200]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "callid" and call_id is None:  # at the top (RFC 6035) or in LocalMetrics (some phones)
            call_id = value[:200] or None
        elif name in ("localmetrics", "remotemetrics"):
            section = name
        elif section == "localmetrics" and name in ("qualityest", "packetloss", "delay"):
            for pair in value.split():
                key, _, figure = pair.partition("=")
                metrics[key.upper()] = figure
    if not call_id:
        return None
    return PhoneReport(call_id=call_id, mos_lq=_number(metrics.get("MOSLQ"), 1.0, 5.0),
                       mos_cq=_number(metrics.get("MOSCQ"), 1.0, 5.0), loss_pct=_number(metrics.get("NLR"), 0.0, 100.0),
                       rtt_ms=_number(metrics.get("RTD"), 0.0, 60000.0))
