"""How `edgepbx run` handles its services' output (appliance/servicelog.py), with a real child
process writing into a real pipe."""
from __future__ import annotations

import io
import subprocess
import sys
import time

from appliance.servicelog import SHOWN_PER_SECOND, ServiceLog


def test_a_flood_of_errors_neither_blocks_the_service_nor_scrolls_the_terminal_away(tmp_path):
    """200,000 error lines (a scanner's malformed messages, each logged by Kamailio): the service
    writes them without waiting for the reader, the file ends with the last of them, and the
    terminal gets at most SHOWN_PER_SECOND a second and a note of how many it did not show."""
    terminal = io.StringIO()
    log = ServiceLog("flood", tmp_path, terminal)
    started = time.monotonic()
    writer = subprocess.Popen([sys.executable, "-c", "import sys\nfor i in range(200000):\n"
                               "    sys.stdout.write(f' 1(99) ERROR: <core> bad message {i}\\n')\n"],
                              stdout=subprocess.PIPE)
    reader = log.follow(writer.stdout)
    assert writer.wait(timeout=60) == 0
    reader.join(timeout=60)
    took = time.monotonic() - started
    assert not reader.is_alive()
    assert (tmp_path / "flood.log").read_text().rstrip().endswith("bad message 199999")
    shown = terminal.getvalue().splitlines()
    assert len([line for line in shown if "ERROR" in line]) <= SHOWN_PER_SECOND * (int(took) + 2), took
    assert any("more lines of flood not shown here" in line for line in shown) or took < 1


def test_tracebacks_and_ready_lines_reach_the_terminal_and_info_does_not(tmp_path):
    terminal = io.StringIO()
    log = ServiceLog("featureserver", tmp_path, terminal)
    lines = ["2026-12-03 01:29:08,471 edgepbx.featureserver INFO: feature server listening on 127.0.0.1:5080",
             "feature server ready",
             "2026-12-03 01:29:09,001 edgepbx.featureserver ERROR: control request failed",
             "Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "ValueError: boom",
             "2026-12-03 01:29:09,002 edgepbx.featureserver INFO: call ended"]
    writer = subprocess.Popen([sys.executable, "-c", f"print({chr(10).join(lines)!r})"], stdout=subprocess.PIPE)
    log.follow(writer.stdout).join(timeout=30)
    shown = terminal.getvalue()
    assert "feature server ready" in shown and "ValueError: boom" in shown and "control request failed" in shown
    assert "listening on" not in shown and "call ended" not in shown
    assert (tmp_path / "featureserver.log").read_text().count("\n") == len(lines)
