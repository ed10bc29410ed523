"""A minimal HTTP client for the benchmark: one keep-alive connection, stdlib only.

``http.client`` adds next to nothing on top of the socket, so the times measured are the
server's (parsing, computing, rendering, JSON) plus one loopback round trip.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from dataclasses import dataclass
from typing import Any

EVENT_TYPE = re.compile(rb'\{\s*"type"\s*:\s*"(\w+)"')


@dataclass
class StreamTiming:
    first_s: float  # request sent -> first example line received
    total_s: float  # request sent -> last line received
    examples: int


class Client:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=600)

    def close(self) -> None:
        self.conn.close()

    def _post(self, path: str, body: dict[str, Any]) -> http.client.HTTPResponse:
        data = json.dumps(body).encode()
        try:
            self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            return self.conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()  # the server closed the idle connection: reconnect once
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            return self.conn.getresponse()

    def page_bytes(self, body: dict[str, Any]) -> bytes:
        """POST /api/v1/examples (one JSON document) and read the whole response."""
        resp = self._post("/api/v1/examples", dict(body, stream=False))
        payload = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {payload[:300]!r}")
        return payload

    def page(self, body: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self.page_bytes(body))

    def stream(self, body: dict[str, Any]) -> StreamTiming:
        """POST a streaming page and time the first example line and the last line."""
        t0 = time.perf_counter()
        resp = self._post("/api/v1/examples", dict(body, stream=True))
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
        first = None
        examples = 0
        events: list[str] = []
        while True:
            line = resp.readline()
            if not line:
                break
            # The event type is the first key of each line; reading it is enough (parsing the
            # whole line would add the client's JSON time to the server's).
            m = EVENT_TYPE.match(line)
            kind = m.group(1).decode() if m else json.loads(line).get("type")
            events.append(kind)
            if kind == "example":
                examples += 1
                if first is None:
                    first = time.perf_counter() - t0
            elif kind == "error":
                raise RuntimeError(f"stream error: {line[:300]!r}")
        total = time.perf_counter() - t0
        if events[-1:] != ["done"]:
            raise RuntimeError(f"stream ended without 'done' ({events})")
        return StreamTiming(first if first is not None else total, total, examples)
