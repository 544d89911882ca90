"""Many boxes against one portal from one process, as the benchmarks and the simulated fleets of
the tests need: a box's keep-alive HTTP/1.1 connection (asyncio streams) and sites enrolled
straight in the database (enrolment is not what is measured or tested there)."""
from __future__ import annotations

import asyncio

from portal_lab import Portal


class Connection:
    """One box's keep-alive HTTP/1.1 connection (asyncio streams; nothing the boxes don't do)."""

    def __init__(self, port: int, credential: str):
        self.port, self.credential = port, credential
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes, content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                more = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
                head = (f"{method} {path} HTTP/1.1\r\nHost: portal\r\nAuthorization: Bearer {self.credential}\r\n"
                        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{more}\r\n").encode()
                self.writer.write(head + body)
                await self.writer.drain()
                status_line = await self.reader.readline()
                length = 0
                while (line := await self.reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                data = await self.reader.readexactly(length)
                return int(status_line.split()[1]), data
            except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
                if self.writer is not None:
                    self.writer.close()
                self.reader = self.writer = None
                if attempt == 2:
                    return 0, b""
        return 0, b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def enrol_fleet(portal: Portal, count: int) -> list[str]:
    """Sites and credentials straight in the database (enrolment is not what is measured)."""
    from portal.db import open_database
    from portal.fleet import add_site, enrol

    sessions = open_database(portal.data_dir, portal.database_url)
    credentials = []
    with sessions() as session:
        for i in range(count):
            code = add_site(session, f"Org {i // 10}", f"box-{i:04d}")
            credentials.append(enrol(session, code)[1])
    return credentials
