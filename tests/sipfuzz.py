"""A SIP fuzzer of the project's own: mutations of real messages, sent at the running box.

The seeds are messages as the test phones (pjsua2) and desk phones send them, with their
addresses, tags and branches filled in afresh for each message: REGISTER (with and without
credentials), INVITE with SDP (some with a valid digest for an extension, so they pass the edge
and reach the feature server's parser), in-dialog requests that the edge loose-routes on to the
feature server (BYE, re-INVITE, INFO, REFER, UPDATE, NOTIFY, PRACK, ACK; for dialogs that do not
exist), SUBSCRIBE, OPTIONS, CANCEL, MESSAGE, PUBLISH and stray responses. Each message gets one to
four mutations (bit flips, inserted or deleted bytes, duplicated, dropped or overlong headers,
wrong Content-Length, bare LF or CR line ends, SDP with absurd numbers or hundreds of lines,
truncation, a mangled first line). A share goes straight to the feature server's port, which
anyone on the LAN can reach, and a share over TCP.

Messages leave from many loopback addresses in turn (each well under the edge's flood limit), as
an attack from many hosts would; `Fuzzer.run` counts what was sent and answered."""
from __future__ import annotations

import hashlib
import random
import re
import secrets
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

SDP = """v=0
o=- 4005150779 4005150779 IN IP4 {src}
s=pjmedia
b=AS:117
t=0 0
m=audio {rtp} RTP/AVP 9 8 0 99 101
c=IN IP4 {src}
a=rtcp:{rtcp} IN IP4 {src}
a=sendrecv
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:99 opus/48000/2
a=fmtp:99 useinbandfec=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ssrc:629854279 cname:5f3cf1b82c74c054
"""

COMMON = """Via: SIP/2.0/UDP {src}:{port};rport;branch=z9hG4bKPj{branch}
Max-Forwards: 70
From: <sip:{user}@{edge}>;tag={tag}
To: <sip:{target}@{edge}>{to_tag}
Call-ID: {call_id}
CSeq: {cseq} {method}
Contact: <sip:{user}@{src}:{port};ob>
User-Agent: Yealink SIP-T46U 66.86.0.15
Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS
"""

# (name, first line, extra headers, body kind, to the edge only)
SEEDS = [
    ("register", "REGISTER sip:{edge}:{edge_port} SIP/2.0", "Expires: 300\n", None),
    ("register-auth", "REGISTER sip:{edge}:{edge_port} SIP/2.0", "Expires: 300\n{authorization}", None),
    ("invite", "INVITE sip:{target}@{edge}:{edge_port} SIP/2.0",
     "Supported: replaces, 100rel, timer, norefersub\nSession-Expires: 1800\nMin-SE: 90\n", "sdp"),
    ("invite-auth", "INVITE sip:{target}@{edge}:{edge_port} SIP/2.0",
     "Supported: replaces, 100rel, timer, norefersub\n{proxy_authorization}", "sdp"),
    ("reinvite", "INVITE sip:fs@{edge}:{fs_port} SIP/2.0", "Route: <sip:{edge}:{edge_port};lr>\n", "sdp"),
    ("bye", "BYE sip:fs@{edge}:{fs_port} SIP/2.0", "Route: <sip:{edge}:{edge_port};lr>\n", None),
    ("info", "INFO sip:fs@{edge}:{fs_port} SIP/2.0", "Route: <sip:{edge}:{edge_port};lr>\n", "dtmf"),
    ("refer", "REFER sip:fs@{edge}:{fs_port} SIP/2.0",
     "Route: <sip:{edge}:{edge_port};lr>\nRefer-To: <sip:103@{edge}?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>\n"
     "Referred-By: <sip:{user}@{edge}>\n", None),
    ("update", "UPDATE sip:fs@{edge}:{fs_port} SIP/2.0", "Route: <sip:{edge}:{edge_port};lr>\n", "sdp"),
    ("notify", "NOTIFY sip:fs@{edge}:{fs_port} SIP/2.0",
     "Route: <sip:{edge}:{edge_port};lr>\nEvent: refer\nSubscription-State: active;expires=60\n", "sipfrag"),
    ("prack", "PRACK sip:fs@{edge}:{fs_port} SIP/2.0", "Route: <sip:{edge}:{edge_port};lr>\nRAck: 1 1 INVITE\n", None),
    ("ack", "ACK sip:fs@{edge}:{fs_port} SIP/2.0", "Route: <sip:{edge}:{edge_port};lr>\n", None),
    ("subscribe", "SUBSCRIBE sip:{target}@{edge}:{edge_port} SIP/2.0",
     "Event: dialog\nAccept: application/dialog-info+xml\nExpires: 600\n{proxy_authorization}", None),
    ("options", "OPTIONS sip:{target}@{edge}:{edge_port} SIP/2.0", "Accept: application/sdp\n", None),
    ("cancel", "CANCEL sip:{target}@{edge}:{edge_port} SIP/2.0", "", None),
    ("message", "MESSAGE sip:{target}@{edge}:{edge_port} SIP/2.0", "Content-Type: text/plain\n", "text"),
    ("publish", "PUBLISH sip:{target}@{edge}:{edge_port} SIP/2.0", "Event: dialog\nExpires: 60\n", "text"),
    ("response", "SIP/2.0 200 OK", "", "sdp"),
]

BODIES = {
    "sdp": ("application/sdp", SDP),
    "dtmf": ("application/dtmf-relay", "Signal=5\nDuration=160\n"),
    "sipfrag": ("message/sipfrag;version=2.0", "SIP/2.0 200 OK\n"),
    "text": ("text/plain", "hello"),
}

NASTY_VALUES = ["", " ", "-1", "0", "4294967296", "99999999999999999999", "%00", "\x00", ";;;;;;", "<<<<>>>>",
                '"""', "sip:", "sip:@", "sip:a@b:99999", "\xff\xfe", "ÿ" * 50, "A" * 5000, "%" * 300,
                "<sip:x@[::1" + "]" * 40, "Digest " + "x=," * 400, "1.1.1.1.1.1.1", "\\r\\n", "SIP/2.0 200"]


def digest(user: str, password: str, realm: str, nonce: str, method: str, uri: str) -> str:
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    return hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()


@dataclass
class FuzzStats:
    sent: int = 0
    by_seed: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)  # status codes of what came back
    to_feature_server: int = 0
    over_tcp: int = 0

    @property
    def answered(self) -> int:
        return sum(self.answers.values())


class Mutator:
    """One to four random mutations of a message, reproducible from the seed."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def mutate(self, message: bytes) -> bytes:
        for _ in range(self.rng.randint(1, 4)):
            message = self.rng.choice(self.MUTATIONS)(self, message)
        return message[:65000]

    def _lines(self, message: bytes) -> tuple[list[bytes], bytes]:
        head, sep, body = message.partition(b"\r\n\r\n")
        return head.split(b"\r\n"), body

    def _join(self, lines: list[bytes], body: bytes) -> bytes:
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def flip_bits(self, m: bytes) -> bytes:
        data = bytearray(m)
        for _ in range(self.rng.randint(1, 8)):
            if data:
                data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return bytes(data)

    def insert_bytes(self, m: bytes) -> bytes:
        at = self.rng.randrange(len(m) + 1)
        junk = self.rng.choice([bytes([self.rng.randrange(256)]) * self.rng.randint(1, 200), b"\r\n", b"\x00",
                                b";" * 50, "ж".encode() * 20, b"\r\n\r\n", b":", b" " * 300])
        return m[:at] + junk + m[at:]

    def delete_bytes(self, m: bytes) -> bytes:
        if not m:
            return m
        at = self.rng.randrange(len(m))
        return m[:at] + m[at + self.rng.randint(1, 64):]

    def duplicate_header(self, m: bytes) -> bytes:
        lines, body = self._lines(m)
        if len(lines) < 2:
            return m
        at = self.rng.randrange(1, len(lines))
        return self._join(lines[:at] + [lines[at]] * self.rng.choice([2, 3, 10, 100]) + lines[at + 1:], body)

    def drop_header(self, m: bytes) -> bytes:
        lines, body = self._lines(m)
        if len(lines) < 2:
            return m
        del lines[self.rng.randrange(1, len(lines))]
        return self._join(lines, body)

    def nasty_value(self, m: bytes) -> bytes:
        lines, body = self._lines(m)
        if len(lines) < 2:
            return m
        at = self.rng.randrange(1, len(lines))
        name = lines[at].split(b":", 1)[0]
        lines[at] = name + b": " + self.rng.choice(NASTY_VALUES).encode("utf-8", "surrogateescape")
        return self._join(lines, body)

    def wrong_length(self, m: bytes) -> bytes:
        value = self.rng.choice(["-5", "0", "1", "65536", "999999999", "12 34", "abc", str(len(m) * 3)])
        return re.sub(rb"Content-Length: *\d+", f"Content-Length: {value}".encode(), m)

    def line_ends(self, m: bytes) -> bytes:
        return m.replace(b"\r\n", self.rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r"]))

    def mangle_sdp(self, m: bytes) -> bytes:
        lines, body = self._lines(m)
        if b"v=0" not in body:
            return m
        choice = self.rng.randrange(5)
        if choice == 0:  # absurd numbers
            body = re.sub(rb"\d+", lambda _: str(self.rng.choice([0, -1, 65536, 2 ** 32, 2 ** 64, 10 ** 30])).encode(), body)
        elif choice == 1:  # many media lines
            body += b"m=audio 4000 RTP/AVP 0\r\n" * self.rng.choice([20, 200])
        elif choice == 2:  # many attributes
            body += b"a=rtpmap:96 x/0\r\n" * self.rng.choice([50, 500])
        elif choice == 3:  # no connection line
            body = re.sub(rb"c=IN IP4 [^\r\n]*\r?\n", b"", body)
        else:
            body = body.replace(b"RTP/AVP", self.rng.choice([b"RTP/SAVP", b"UDP/TLS/RTP/SAVPF", b"", b"RTP/AVP/AVP"]))
        return self._join(lines, body)

    def truncate(self, m: bytes) -> bytes:
        return m[:self.rng.randrange(len(m) + 1)]

    def first_line(self, m: bytes) -> bytes:
        first, sep, rest = m.partition(b"\r\n")
        first = self.rng.choice([b"", b"INVITE", b"INVITE sip: SIP/2.0", b"FOO sip:x@y SIP/2.0", b"INVITE sip:x@y SIP/9.9",
                                 b"SIP/2.0 999 Weird", b"SIP/2.0 abc", first * 3, first.replace(b" ", b"  ")])
        return first + sep + rest

    MUTATIONS = [flip_bits, insert_bytes, delete_bytes, duplicate_header, drop_header, nasty_value, wrong_length,
                 line_ends, mangle_sdp, truncate, first_line, nasty_value, mangle_sdp, duplicate_header]


class Fuzzer:
    """Mutated messages at the box's edge (and its feature server's port), from many addresses."""

    def __init__(self, edge_port: int, fs_port: int, realm: str, credentials: tuple[str, str], seed: int = 1,
                 sources: int = 4096):
        self.edge_port, self.fs_port, self.realm = edge_port, fs_port, realm
        self.user, self.password = credentials
        self.rng = random.Random(seed)
        self.mutator = Mutator(self.rng)
        # 127.0.16.1 ... : the test phones use 127.0.0.1, the scanner tests 127.0.0.x
        self.addresses = [f"127.0.{16 + i // 250}.{1 + i % 250}" for i in range(sources)]
        self.sockets: dict[str, socket.socket] = {}
        self.nonce = ""
        self.stats = FuzzStats()

    def _socket(self, address: str) -> socket.socket:
        sock = self.sockets.get(address)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, 0))
            sock.setblocking(False)
            self.sockets[address] = sock
        return sock

    def learn_nonce(self) -> None:
        """A nonce from the edge's challenge: INVITEs with a right digest for it pass the edge."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.15.1", 0))
        sock.settimeout(2)
        port = sock.getsockname()[1]
        sock.sendto(self.render(SEEDS[0], "127.0.15.1", port), ("127.0.0.1", self.edge_port))
        answer = sock.recv(65535).decode(errors="replace")
        sock.close()
        self.nonce = re.search(r'nonce="([^"]+)"', answer).group(1)

    def render(self, seed: tuple, src: str, port: int) -> bytes:
        name, first, extra, body_kind = seed
        method = first.split()[0] if not first.startswith("SIP/2.0") else "INVITE"
        target = self.rng.choice(["199", "198", "0", "**199", "8800", "+74951234567", "100"])
        values = dict(src=src, port=port, edge="127.0.0.1", edge_port=self.edge_port, fs_port=self.fs_port,
                      branch=secrets.token_hex(8), tag=secrets.token_hex(6), call_id=secrets.token_hex(12),
                      cseq=self.rng.randint(1, 60000), method=method, user=self.user, target=target,
                      to_tag=f";tag={secrets.token_hex(6)}" if "Route:" in extra or first.startswith("SIP/") else "",
                      rtp=self.rng.randrange(10000, 60000, 2), rtcp=0)
        values["rtcp"] = values["rtp"] + 1
        uri = first.split()[1].format(**values) if not first.startswith("SIP/") else ""
        response = digest(self.user, self.password, self.realm, self.nonce, method, uri)
        credentials = (f'username="{self.user}", realm="{self.realm}", nonce="{self.nonce}", uri="{uri}", '
                       f'response="{response}"')
        values["authorization"] = f"Authorization: Digest {credentials}\n"
        values["proxy_authorization"] = f"Proxy-Authorization: Digest {credentials}\n"
        text = first.format(**values) + "\n" + COMMON.format(**values) + extra.format(**values)
        body = ""
        if body_kind:
            content_type, body = BODIES[body_kind]
            body = body.format(**values)
            text += f"Content-Type: {content_type}\n"
        body = body.replace("\n", "\r\n")
        text = text.replace("\n", "\r\n") + f"Content-Length: {len(body.encode())}\r\n\r\n"
        return text.encode() + body.encode()

    def send_one(self, index: int) -> None:
        seed = self.rng.choice(SEEDS)
        src = self.addresses[index % len(self.addresses)]
        to_fs = self.rng.random() < 0.15
        port = self.fs_port if to_fs else self.edge_port
        if self.rng.random() < 0.04:
            self._send_tcp(seed, src, port)
        else:
            sock = self._socket(src)
            message = self.mutator.mutate(self.render(seed, src, sock.getsockname()[1]))
            try:
                sock.sendto(message, ("127.0.0.1", port))
            except OSError:  # a message too big for a datagram after mutation, say
                return
        self.stats.sent += 1
        self.stats.by_seed[seed[0]] += 1
        self.stats.to_feature_server += to_fs

    def _send_tcp(self, seed: tuple, src: str, port: int) -> None:
        port = self.edge_port  # the feature server listens on UDP only
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.bind((src, 0))
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(self.mutator.mutate(self.render(seed, src, sock.getsockname()[1]).replace(
                    b"SIP/2.0/UDP", b"SIP/2.0/TCP")))
            except OSError:
                return
        self.stats.over_tcp += 1

    def collect(self) -> None:
        for sock in self.sockets.values():
            while True:
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, OSError):
                    break
                found = re.match(rb"SIP/2\.0 (\d{3})", data)
                self.stats.answers[int(found.group(1)) if found else 0] += 1

    def run(self, count: int, rate: float, between=None) -> FuzzStats:
        """Sends `count` messages at about `rate` a second; calls `between()` every 1,000 (the
        test polls its phones there)."""
        if not self.nonce:
            self.learn_nonce()
        started = time.monotonic()
        for index in range(count):
            self.send_one(index)
            if index % 1000 == 999:
                self.collect()
                if between:
                    between(index + 1)
            delay = started + (index + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        time.sleep(0.5)
        self.collect()
        return self.stats

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
