"""A small upstream API for the gateway's tests, run as a real process:

    python gateway/tests/upstream.py PORT

It records every request (method, path with query, headers, body, when it
started and ended) and how many were in flight at once, and answers by path:

    /echo...                201, the request's body and content-type back, two Set-Cookie
    /binary                 200, 1 KiB of every byte value
    /missing...             404
    /flaky?key=K&fails=N    500 for the first N requests of key K, then 200
    /slow?ms=N              200 after N ms
    /docs /redoc /openapi.json /health    its own docs and health
    anything else           200, {"path": ...}

`?hold=NAME` on any path holds the answer until POST /_upstream/release?name=NAME
(at most 30 s). GET /_upstream/log answers what was recorded; /_upstream/
requests are not recorded themselves.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
RECORDS: list[dict[str, Any]] = []
STATE = {"in_flight": 0, "max_in_flight": 0}
FAILURES: dict[str, int] = {}
HOLDS: dict[str, threading.Event] = {}
BINARY = bytes(range(256)) * 4
HOLD_MAX_S = 30.0


def _hold(name: str) -> threading.Event:
    with LOCK:
        return HOLDS.setdefault(name, threading.Event())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's client pool uses it

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._answer(status, json.dumps(value).encode(), [("Content-Type", "application/json")])

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        if url.path.startswith("/_upstream/"):
            self._control(url.path, parse_qs(url.query))
            return
        record = {
            "method": self.command,
            "path": self.path,
            "headers": [[name, value] for name, value in self.headers.items()],
            "body_base64": base64.b64encode(body).decode(),
            "started": time.time(),
        }
        with LOCK:
            RECORDS.append(record)
            STATE["in_flight"] += 1
            STATE["max_in_flight"] = max(STATE["max_in_flight"], STATE["in_flight"])
        try:
            self._behave(url.path, parse_qs(url.query), body)
        finally:
            with LOCK:
                STATE["in_flight"] -= 1
                record["ended"] = time.time()

    def _behave(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        if "hold" in query:
            _hold(query["hold"][0]).wait(HOLD_MAX_S)
        if path == "/slow":
            time.sleep(int(query.get("ms", ["100"])[0]) / 1000)
        if path.startswith("/echo"):
            kind = self.headers.get("Content-Type", "application/octet-stream")
            cookies = [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")]
            self._answer(201, body, [("Content-Type", kind), ("X-Upstream", "yes"), *cookies])
        elif path == "/binary":
            self._answer(200, BINARY, [("Content-Type", "application/octet-stream")])
        elif path.startswith("/missing"):
            self._json(404, {"detail": "not here"})
        elif path == "/flaky":
            key, fails = query["key"][0], int(query["fails"][0])
            with LOCK:
                FAILURES[key] = seen = FAILURES.get(key, 0) + 1
            self._json(500 if seen <= fails else 200, {"try": seen})
        elif path in ("/docs", "/redoc"):
            html = f"<html><title>Upstream {path[1:]}</title></html>".encode()
            self._answer(200, html, [("Content-Type", "text/html; charset=utf-8")])
        elif path == "/openapi.json":
            self._json(200, {"openapi": "3.1.0", "info": {"title": "upstream", "version": "1"}})
        elif path == "/health":
            self._json(200, {"status": "up"})
        else:
            self._json(200, {"path": path})

    def _control(self, path: str, query: dict[str, list[str]]) -> None:
        if path == "/_upstream/log":
            with LOCK:
                self._json(200, {"requests": RECORDS, **STATE})
        elif path == "/_upstream/release":
            _hold(query["name"][0]).set()
            self._json(200, {"released": query["name"][0]})
        else:
            self._json(404, {"detail": "no such control"})

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
