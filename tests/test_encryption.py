"""SIP over TLS and SRTP: a pjsua2 phone registers to the box's TLS port and talks with SRTP (SDES)
to a phone on plain UDP and RTP; the feature server bridges the two. Each hears the other's tone,
and a capture on the loopback shows the TLS phone's audio encrypted (its payloads do not decode to
its tone, the plain phone's do) and its SIP unreadable."""
from __future__ import annotations

import socket
import ssl
import time

import pjsua2 as pj
import pytest

from audio import has_tone, tone_share_in_alaw_rtp
from conftest import TONES, start_pbx, write_office
from phones import talk


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    pbx = start_pbx(write_office(tmp_path_factory.mktemp("encrypted")))
    yield pbx
    pbx.stop()


@pytest.fixture
def alaw_only(lab):
    """The test phones offer G.711 A-law only, so a capture of their RTP can be decoded."""
    preferred = {c.codecId: c.priority for c in lab.ep.codecEnum2()}
    for codec_id in preferred:
        lab.ep.codecSetPriority(codec_id, 255 if codec_id.startswith("PCMA/") else 0)
    yield
    for codec_id, priority in preferred.items():
        lab.ep.codecSetPriority(codec_id, priority)


class Capture:
    """UDP datagrams on the loopback from one port, captured (scapy) while the test talks."""

    def __init__(self, port: int):
        from scapy.all import AsyncSniffer

        self.sniffer = AsyncSniffer(iface="lo", filter=f"udp and src port {port}", store=True)
        self.sniffer.start()
        time.sleep(0.3)  # the capture is open before the audio it should see

    def payloads(self) -> list[bytes]:
        from scapy.all import UDP

        packets = self.sniffer.stop()
        return [bytes(p[UDP].payload) for p in packets if UDP in p]


def rtp_port(call: pj.Call) -> int:
    return int(call.getMedTransportInfo(0).localRtpName.rsplit(":", 1)[1])


def test_a_tls_phone_with_srtp_and_a_plain_phone_hear_each_other_and_the_tls_side_is_encrypted(
        office, lab, alaw_only):
    lab.port = office.sip_port
    tls_port = office.sip_port + 1
    secure = lab.phone("101", "pw-101-secret", TONES["101"], tls_port=tls_port)
    plain = lab.phone("102", "pw-102-secret", TONES["102"])
    try:
        assert secure.reg_code == 200 and plain.reg_code == 200
        for caller, callee in ((secure, plain), (plain, secure)):  # each way: the box offers SRTP to the TLS phone
            out, into = talk(lab, caller, callee, timeout=10)
            secure_call = out if caller is secure else into
            plain_call = into if caller is secure else out
            assert secure_call.getStreamInfo(0).proto == pj.PJMEDIA_TP_PROTO_RTP_SAVP
            assert plain_call.getStreamInfo(0).proto == pj.PJMEDIA_TP_PROTO_RTP_AVP
            encrypted, clear = Capture(rtp_port(secure_call)), Capture(rtp_port(plain_call))
            heard_by_secure = secure_call.record_phase(f"from-{caller.number}")
            heard_by_plain = plain_call.record_phase(f"from-{caller.number}")
            lab.poll(2.0)
            secure_call.stop_recording(), plain_call.stop_recording()
            lab.poll(0.3)
            assert has_tone(heard_by_secure, TONES["102"]) and has_tone(heard_by_plain, TONES["101"])
            encrypted_packets, clear_packets = encrypted.payloads(), clear.payloads()
            assert len(encrypted_packets) > 50 and len(clear_packets) > 50
            # The plain phone's tone is there for anyone on the wire; the TLS phone's is not.
            assert tone_share_in_alaw_rtp(clear_packets, TONES["102"]) > 0.5
            assert tone_share_in_alaw_rtp(encrypted_packets, TONES["101"]) < 0.05
            lab.hang_up_everything()
    finally:
        lab.release_phones()


def test_sip_on_the_tls_port_is_tls_with_the_boxs_certificate(office):
    """A TLS client sees the box's certificate (made once, for its address) and gets a SIP answer
    only through the TLS session."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", office.sip_port + 1), timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        tls.sendall(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKtls1\r\n"
                    b"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: tls-probe-1\r\n"
                    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        answer = tls.recv(4096)
    assert answer.startswith(b"SIP/2.0 200"), answer[:100]
    with open(office.data_dir / "tls" / "box.crt") as fh:
        assert ssl.PEM_cert_to_DER_cert(fh.read()) == der
    assert (office.data_dir / "tls" / "box.key").stat().st_mode & 0o077 == 0
