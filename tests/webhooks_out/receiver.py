"""A stub webhook receiver: an HTTP server on loopback in a thread that records every request
and answers with the statuses it is told (default 204), optionally a redirect or a body."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order, then `default`
    default: int = 204
    location: str | None = None  # answer 3xx with this Location
    body: bytes = b""
    delay: float = 0.0  # seconds each request takes to answer
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests it held at once
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.default

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    async def arrived(self, count: int) -> list[Received]:
        """As wait_for, letting this event loop run meanwhile (a runner on it delivers)."""
        try:
            async with asyncio.timeout(10):
                while True:
                    with self.lock:
                        if len(self.requests) >= count:
                            return list(self.requests)
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"expected {count} requests, got {len(self.requests)}") from None

    def of_type(self, type_: str) -> list[Received]:
        return [r for r in self.requests if r.json["type"] == type_]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.in_flight += 1
                receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
            try:
                time.sleep(receiver.delay)
            finally:
                with receiver.lock:
                    receiver.in_flight -= 1
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
            status = receiver.next_status()
            self.send_response(status)
            if receiver.location is not None:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", str(len(receiver.body)))
            self.end_headers()
            if receiver.body:
                self.wfile.write(receiver.body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    class Server(ThreadingHTTPServer):
        # socketserver's backlog is 5: a batch of concurrent deliveries (up to 50) would see
        # resets a real receiver's backlog (128+ in common servers) does not give
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
