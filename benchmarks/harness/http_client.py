"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for load generation.

A load generator sharing a small machine with the server it measures must spend as little CPU
as possible per request, so this speaks just enough HTTP/1.1: one request at a time per
connection, responses framed by ``Content-Length`` (what uvicorn sends for JSON), connections
reused until the server or an error closes them. Chunked responses are refused with
``ProtocolError`` rather than misread.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024


class ProtocolError(Exception):
    """The server's answer is not a response this client can frame."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as sent: ``target`` is the path with its query string."""

    method: str
    target: str
    body: bytes = b""
    label: str = ""  # what the request stands for in reports, e.g. "recommend"

    def encode(self, host: str) -> bytes:
        head = f"{self.method} {self.target} HTTP/1.1\r\nHost: {host}\r\n"
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        return (head + "\r\n").encode("ascii") + self.body


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    keep_alive: bool


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head (ending in a blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line!r}")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def read_response(reader: asyncio.StreamReader) -> HttpResponse:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as err:
        raise ProtocolError(f"response head longer than {MAX_HEADER_BYTES} bytes") from err
    status, headers = parse_head(head)
    if "chunked" in headers.get("transfer-encoding", ""):
        raise ProtocolError("chunked responses are not supported; expected Content-Length")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise ProtocolError(f"bad Content-Length {length!r}")
    body = await reader.readexactly(int(length))
    return HttpResponse(status, body, headers.get("connection", "").lower() != "close")


class HttpConnection:
    """One keep-alive connection; ``request`` must not be called concurrently."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader, self._writer, self._host = reader, writer, host
        self.open = True
        self.idle_since = 0.0  # event-loop time it was last handed back

    @classmethod
    async def connect(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEADER_BYTES)
        return cls(reader, writer, host)

    async def request(self, request: HttpRequest) -> HttpResponse:
        try:
            self._writer.write(request.encode(self._host))
            response = await read_response(self._reader)
        except BaseException:
            self.close()  # a half-read response would poison the next request
            raise
        if not response.keep_alive:
            self.close()
        return response

    @property
    def usable(self) -> bool:
        """Open and not closed by the server while idle (uvicorn drops idle keep-alives)."""
        return self.open and not self._reader.at_eof()

    def close(self) -> None:
        if self.open:
            self.open = False
            self._writer.close()


class ConnectionPool:
    """Up to ``size`` connections to one server, opened on demand and reused while open.

    The most recently used idle connection is reused first; one idle longer than
    ``max_idle_s`` is closed instead, before the server's own keep-alive timeout (uvicorn: 5 s)
    could close it just as a request is written to it, which would fail that request.
    """

    def __init__(self, host: str, port: int, size: int, max_idle_s: float = 2.0) -> None:
        if size < 1:
            raise ValueError(f"ConnectionPool: size must be >= 1, got {size}")
        self.host, self.port, self.max_idle_s = host, port, max_idle_s
        self._idle: list[HttpConnection] = []
        self._slots = asyncio.Semaphore(size)
        self.opened = 0  # connections ever opened: reconnects show up here

    @asynccontextmanager
    async def connection(self):
        """An idle connection, or a new one while fewer than ``size`` are in use."""
        async with self._slots:
            conn = self._take_idle()
            if conn is None:
                conn = await HttpConnection.connect(self.host, self.port)
                self.opened += 1
            try:
                yield conn
            finally:
                if conn.open:
                    conn.idle_since = asyncio.get_running_loop().time()
                    self._idle.append(conn)

    def _take_idle(self) -> HttpConnection | None:
        oldest = asyncio.get_running_loop().time() - self.max_idle_s
        while self._idle:
            conn = self._idle.pop()
            if conn.usable and conn.idle_since >= oldest:
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
