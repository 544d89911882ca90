"""One process of simulated phones for the load benchmark (G.711 A-law only, as most desk phones
default to, so the phones spend little CPU beside the system under test).

Registers one extension, then either places --calls calls to --dial, or answers --calls calls.
Once all its calls are up it prints `up`, measures RTP for --hold seconds, prints one JSON line
with what its legs received, then hangs up and exits when its stdin closes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pjsua2 as pj  # noqa: E402
from phones import PhoneLab  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--number", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--dial", default="")
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--tone", type=float, default=700.0)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()

    lab = PhoneLab(tmp=Path(args.workdir), port=args.port, max_calls=args.calls + 8, record=False,
                   clock_rate=8000)
    lab.start()
    for codec in lab.ep.codecEnum2():
        lab.ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith("PCMA/") else 0)
    phone = lab.phone(args.number, args.password, args.tone)
    print("registered" if phone.reg_code == 200 else f"registration failed {phone.reg_code}", flush=True)
    if args.dial:
        for _ in range(args.calls):
            phone.dial(args.dial)
            lab.poll(0.05)
    try:
        lab.wait_for(lambda: len(phone.calls) >= args.calls and all(
            c.state == pj.PJSIP_INV_STATE_CONFIRMED and c.media_active for c in phone.calls[:args.calls]), 60, "calls up")
    except AssertionError:
        up = sum(c.state == pj.PJSIP_INV_STATE_CONFIRMED for c in phone.calls)
        print(json.dumps({"number": args.number, "error": f"only {up} of {args.calls} calls up"}), flush=True)
        os._exit(1)
    print("up", flush=True)
    lab.poll(1.0)
    legs = phone.calls[:args.calls]
    before = [(c.getStreamStat(0).rtcp.rxStat.pkt, c.getStreamStat(0).rtcp.rxStat.loss) for c in legs]
    started = time.monotonic()
    lab.poll(args.hold)
    elapsed = time.monotonic() - started
    after = [(c.getStreamStat(0).rtcp.rxStat.pkt, c.getStreamStat(0).rtcp.rxStat.loss) for c in legs]
    print(json.dumps({"number": args.number, "legs": len(legs), "seconds": elapsed,
                      "rx": sum(a[0] - b[0] for a, b in zip(after, before)),
                      "lost": sum(a[1] - b[1] for a, b in zip(after, before))}), flush=True)
    # Keep the calls up until the benchmark says so (closes our stdin): the other end may
    # still be measuring.
    import select
    while not select.select([sys.stdin], [], [], 0)[0]:
        lab.poll(0.1)
    lab.ep.hangupAllCalls()
    lab.poll(0.5)
    os._exit(0)  # no pjsua2 teardown: see PhoneLab.stop


if __name__ == "__main__":
    main()
