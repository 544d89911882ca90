"""Malformed SIP at the running box while a call is up (tests/sipfuzz.py: 200,000 mutations of
real messages at the edge, through it to the feature server, and straight at the feature
server's port): no process crashes or restarts, the call keeps its audio both ways, and memory
levels off. It levels off with time, not with messages: the feature server keeps each answered
request's transaction for 32 s (RFC 3261 timer J), so the last quarter of 50 s at 4,000 messages a
second is past it (a 400,000-message run on 2026-12-01: 88 MB from 150,000 on, also after a minute's rest)."""
from __future__ import annotations

import time
from pathlib import Path

import pjsua2 as pj

from audio import has_tone
from conftest import TONES, descendants_of, start_pbx, write_office
from phones import talk
from sipfuzz import Fuzzer

MESSAGES = 200_000
RATE = 4000  # a second; each of the fuzzer's 4,096 addresses sends about one a second


def memory_mb(pids: set[int], name: str) -> float:
    """The proportional set size of the processes whose command line names `name`: Kamailio's
    workers share its shared memory, which their resident sizes would count once each."""
    total = 0
    for pid in pids:
        try:
            if name not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                continue
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += int(rollup.split("\nPss:")[1].split()[0])
    return total / 1024


def test_200000_mutated_messages_leave_the_call_and_every_process_standing(tmp_path, lab):
    pbx = start_pbx(write_office(tmp_path))
    lab.port = pbx.sip_port
    fuzzer = Fuzzer(pbx.sip_port, pbx.sip_port + 20, "127.0.0.1", ("105", "pw-105-secret"))
    try:
        a, b = lab.phone("101", "pw-101-secret", TONES["101"]), lab.phone("102", "pw-102-secret", TONES["102"])
        call, answered = talk(lab, a, b)
        processes = descendants_of(pbx.proc.pid)
        memory = {0: (memory_mb(processes, "kamailio"), memory_mb(processes, "featureserver"))}

        def between(sent: int) -> None:
            lab.poll(0.01)
            if sent % 25_000 == 0:
                memory[sent] = (memory_mb(processes, "kamailio"), memory_mb(processes, "featureserver"))

        started = time.monotonic()
        stats = fuzzer.run(MESSAGES, RATE, between)
        took = time.monotonic() - started
        lab.poll(1.0)
        print(f"fuzz: {stats.sent} messages in {took:.0f} s ({stats.to_feature_server} straight to the feature "
              f"server, {stats.over_tcp} over TCP), {stats.answered} answers {dict(stats.answers.most_common(8))}; "
              f"resident MB (Kamailio, feature server) by messages sent: {memory}")
        assert stats.sent >= MESSAGES * 0.97
        assert descendants_of(pbx.proc.pid) >= processes, "a process of the box died"
        assert "exited with status" not in pbx.log_text(), pbx.log_text()[-3000:]
        assert call.state == pj.PJSIP_INV_STATE_CONFIRMED and answered.state == pj.PJSIP_INV_STATE_CONFIRMED
        heard_by_a, heard_by_b = call.record_phase("after-fuzz"), answered.record_phase("after-fuzz")
        lab.poll(2.0)
        call.stop_recording(), answered.stop_recording()
        lab.poll(0.3)
        assert has_tone(heard_by_a, TONES["102"]) and has_tone(heard_by_b, TONES["101"])
        # Memory levels off: the last quarter of the run adds at most half of what the first did
        # (a leak would add the same each quarter), or under 4 MB.
        for process in (0, 1):
            first_quarter = memory[50_000][process] - memory[0][process]
            last_quarter = memory[200_000][process] - memory[150_000][process]
            assert last_quarter < max(4.0, first_quarter / 2), memory
        # The edge answered (so the messages were read, not dropped unseen by a ban or the flood limit).
        assert stats.answered > MESSAGES * 0.2, stats.answers
    finally:
        fuzzer.close()
        lab.release_phones()
        pbx.stop()
