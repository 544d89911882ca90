"""Where a service's output goes under `edgepbx run`: every line to LOG_DIR/NAME.log (rotated
at 1 MB, one old file kept as NAME.log.1), and to the terminal only the lines a person running
the box needs: its own services' warnings and errors (with their tracebacks), their "ready"
lines, and Kamailio's errors. Kamailio's and PJSIP's start-up chatter (TLS domain dumps,
module probes, socket buffer sizes) stays in the files.

The last lines of each service are kept in memory too, so when a service dies the supervisor
can say what it said last."""
from __future__ import annotations

import collections
import fcntl
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import IO, TextIO

ROTATE_BYTES = 1 << 20  # the image keeps these in a 16 MB tmpfs (/var/log): six services fit
KEPT_LINES = 20
READ_BYTES = 1 << 16
PIPE_BYTES = 1 << 20   # what a service may write ahead of the reader (Linux's limit for a pipe without privileges)
F_SETPIPE_SZ = 1031    # fcntl.F_SETPIPE_SZ from Python 3.10 on Linux; spelled out for older headers
SHOWN_PER_SECOND = 20  # terminal lines a second from one service
# Our own services: "2026-12-03 01:29:08,471 edgepbx.featureserver INFO: ..."
OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
# Kamailio: " 0(26048) INFO: tls [tls_domain.c:328]: ..."
KAMAILIO_LINE = re.compile(r"^\s*\d+\(\d+\) (DEBUG|INFO|NOTICE|WARNING|ERROR|CRITICAL|ALERT|BUG|[A-Z]+): (.*)")
SHOWN_LEVELS = {"WARNING", "ERROR", "CRITICAL"}
KAMAILIO_SHOWN = {"ERROR", "CRITICAL", "ALERT", "BUG"}


class ServiceLog:
    def __init__(self, name: str, log_dir: Path, terminal: TextIO | None = None):
        self.name = name
        self.path = log_dir / f"{name}.log"
        self.terminal = terminal or sys.stderr
        self.last_lines: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        self.showing = False  # the entry a continuation line (a traceback) belongs to is shown
        self.shown_this_second, self.second, self.held_back = 0, 0, 0
        log_dir.mkdir(parents=True, exist_ok=True)

    def follow(self, stream: IO[bytes]) -> threading.Thread:
        """Reads `stream` (the service's stdout and stderr) until it closes, in a thread. The pipe
        is made large and read in big chunks: a service must never wait for its log to be read
        (a feature server blocked on a log line would stall its calls)."""
        try:
            fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # the system's default pipe size, then
        thread = threading.Thread(target=self._copy, args=(stream,), name=f"log-{self.name}", daemon=True)
        thread.start()
        return thread

    def _copy(self, stream: IO[bytes]) -> None:
        out = self._open()
        partial = b""
        fd = stream.fileno()
        try:
            while True:
                data = os.read(fd, READ_BYTES)
                if not data:
                    break
                *lines, partial = (partial + data).split(b"\n")
                if lines:
                    out = self._take([line.decode("utf-8", errors="replace").rstrip("\r") for line in lines], out)
            if partial:
                out = self._take([partial.decode("utf-8", errors="replace")], out)
        except OSError:
            pass
        finally:
            if out is not None:
                out.close()
            stream.close()

    def _take(self, lines: list[str], out: IO[str] | None) -> IO[str] | None:
        """A chunk of lines: all to the file (one write), the last few to memory, the ones that
        matter to the terminal (at most SHOWN_PER_SECOND a second: a flood of errors, say from a
        scanner, is counted and pointed to the file instead of scrolling the terminal away)."""
        self.last_lines.extend(lines)
        out = self._write(out, "\n".join(lines) + "\n")
        shown = [line for line in lines if self.shown(line)]
        if shown:
            self._show(shown)
        return out

    def _show(self, lines: list[str]) -> None:
        now = int(time.monotonic())
        if now != self.second:
            if self.held_back:
                lines = [f"({self.held_back} more lines of {self.name} not shown here; all in {self.path})"] + lines
            self.second, self.shown_this_second, self.held_back = now, 0, 0
        room = max(0, SHOWN_PER_SECOND - self.shown_this_second)
        lines, self.held_back = lines[:room], self.held_back + max(0, len(lines) - room)
        self.shown_this_second += len(lines)
        if not lines:
            return
        try:
            self.terminal.write("\n".join(lines) + "\n")
            self.terminal.flush()
        except (OSError, ValueError):
            pass  # no terminal any more: the service must not wait for us

    def _open(self) -> IO[str] | None:
        try:
            return open(self.path, "a", encoding="utf-8", errors="replace")
        except OSError:
            return None

    def _write(self, out: IO[str] | None, text: str) -> IO[str] | None:
        """Appends lines, rotating the file past ROTATE_BYTES. A full or read-only disk loses the
        file's copy of the lines, never the service (nor the terminal's copy)."""
        if out is None:
            return self._open()
        try:
            out.write(text)
            out.flush()
            if out.tell() > ROTATE_BYTES:
                out.close()
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                return self._open()
        except OSError:
            pass
        return out

    def shown(self, line: str) -> bool:
        """Whether the terminal gets `line`."""
        own = OWN_LINE.match(line)
        if own:
            self.showing = own.group(1) in SHOWN_LEVELS
            return self.showing
        kamailio = KAMAILIO_LINE.match(line)
        if kamailio:
            level, text = kamailio.groups()
            self.showing = ((level in KAMAILIO_SHOWN and "exited normally" not in text)
                            or (level == "WARNING" and "edgepbx:" in text))
            return self.showing
        if line.startswith("Traceback (most recent call last)"):
            self.showing = True
            return True
        if line.endswith(" ready"):  # "feature server ready", "provisioning ready"
            return True
        return self.showing  # a continuation (a traceback's lines) goes where its entry went
