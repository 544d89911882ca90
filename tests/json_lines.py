"""A helper process that reports by JSON lines on its stdout (pjsua2 prints its own start-up there
too, which is skipped): the lines as they come, waited for with a timeout."""
from __future__ import annotations

import json
import queue
import subprocess
import threading


class JsonLines:
    def __init__(self, proc: subprocess.Popen, log_hint: str):
        self.proc, self.log_hint = proc, log_hint
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def next(self, timeout: float) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing from the helper process in {timeout} s; see {self.log_hint}") from None
