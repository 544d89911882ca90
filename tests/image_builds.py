"""The appliance images the image tests boot, built by image/build.sh (cached while unchanged).

The Pi 4 image's arm64 root is configured under qemu-user, mostly on one core, for many minutes
on a fresh machine. So the session starts its build in the background as soon as the arm64 test
is collected (conftest.py), and test_image_arm64.py, which runs last, waits for it."""
from __future__ import annotations

import subprocess
import time
from datetime import datetime

from conftest import ROOT

OUT = ROOT / "build" / "image"
_pi4: subprocess.Popen | None = None
_pi4_started = 0.0


def figure(text: str) -> None:
    """A measurement for docs/image.md: printed (pytest -s) and kept in build/image/figures.txt."""
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "figures.txt", "a") as fh:
        fh.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} {text}\n")


def start_pi4_build() -> None:
    global _pi4, _pi4_started
    if _pi4 is None:
        _pi4_started = time.time()
        OUT.mkdir(parents=True, exist_ok=True)
        _pi4 = subprocess.Popen(["image/build.sh", "pi4"], cwd=ROOT, stdout=open(OUT / "build-pi4.log", "w"),
                                stderr=subprocess.STDOUT)


def wait_pi4_build(timeout: float = 3600) -> None:
    start_pi4_build()
    assert _pi4 is not None
    started = time.monotonic()
    code = _pi4.wait(timeout)
    log = OUT / "build-pi4.log"
    text = log.read_text(errors="replace")
    assert code == 0, f"image/build.sh pi4 exited {code}:\n{text[-4000:]}"
    figure(f"pi4 image: built in the background in {log.stat().st_mtime - _pi4_started:.0f} s, "
           f"the arm64 test waited {time.monotonic() - started:.0f} s for it ({text.strip().splitlines()[-1]})")
