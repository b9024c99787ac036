"""A real S3-compatible server on 127.0.0.1 for tests and benchmarks: moto's server
(``moto[server]`` from PyPI) in a child process, behind a small HTTP proxy that can add latency,
answer 5xx, answer slowly or stop listening and come back, as object stores do. Clients are
pointed at it with the standard AWS environment variables (:meth:`S3Server.env`)."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FaultProxy:
    """Forwards every request to ``upstream``; ``latency`` seconds are added to each answer,
    ``fail_next`` requests are answered ``503 SlowDown``, ``slow`` adds seconds to every answer,
    ``shift`` moves every ranged read that many bytes on and answers as if it had not (a store
    serving the wrong bytes under the range asked for), and :meth:`stop` / :meth:`start` close and
    reopen the port. ``requests`` counts answers."""

    def __init__(self, upstream: int, port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or _free_port()
        self.latency = 0.0
        self.fail_next = 0
        self.shift = 0
        # GET answers (per path and range) kept in memory after the first (benchmarks: the
        # proxy, not moto, answers)
        self.cache: dict[str, tuple[int, list[tuple[str, str]], bytes]] | None = None
        self.requests = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests += 1
                    fail = proxy.fail_next > 0
                    if fail:
                        proxy.fail_next -= 1
                        proxy.failed += 1
                if proxy.latency:
                    time.sleep(proxy.latency)
                if fail:
                    reply = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                # a ranged read is its own answer
                key = f"{self.path} {self.headers.get('Range', '')}"
                cached = proxy.cache.get(key) if proxy.cache is not None else None
                if cached is None or self.command != "GET":
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    asked = None  # the first byte of a shifted ranged read
                    for k, v in list(headers.items()):
                        if proxy.shift and k.lower() == "range" and v.startswith("bytes="):
                            first, _, last = v[len("bytes=") :].partition("-")
                            asked = int(first)
                            headers[k] = f"bytes={asked + proxy.shift}-" + (
                                str(int(last) + proxy.shift) if last else ""
                            )
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    cached = (answer.status, answer.getheaders(), answer.read())
                    conn.close()
                    if asked is not None and cached[0] == 206:
                        # the shifted bytes, labelled as the range asked for
                        size = len(cached[2])
                        label = f"bytes {asked}-{asked + size - 1}/"
                        cached = (206, [(k, label + v.rpartition("/")[2])
                                        if k.lower() == "content-range" else (k, v)
                                        for k, v in cached[1]], cached[2])  # fmt: skip
                    ok = cached[0] in (200, 206)
                    if proxy.cache is not None and self.command == "GET" and ok:
                        proxy.cache[key] = cached
                status, answer_headers, data = cached
                self.send_response(status)
                head = self.command == "HEAD"  # no body: the object's own length is passed on
                for k, v in answer_headers:
                    if k.lower() not in _HOP and (head or k.lower() != "content-length"):
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        return Handler

    def start(self) -> None:
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        # a deep accept queue: a client opening dozens of connections at once must not see
        # dropped SYNs (a 1 s retransmit each) with the default backlog of 5
        http.server.ThreadingHTTPServer.request_queue_size = 256
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering: the port is closed (connections are refused) until :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class S3Server:
    """moto's S3 server in a child process on a free port, with a :class:`FaultProxy` in front."""

    def __init__(self) -> None:
        self.moto_port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.moto_port), timeout=1),
            ):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto's S3 server did not start")
            time.sleep(0.1)
        self.proxy = FaultProxy(self.moto_port)
        self.proxy.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def upload_dir(self, folder: Path, bucket: str, prefix: str = "") -> str:
        """Upload every file under ``folder`` to ``bucket`` (created) under ``prefix``; returns
        ``s3://bucket/prefix``."""
        s3 = self.client()
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = (
                    f"{prefix}/{path.relative_to(folder)}"
                    if prefix
                    else str(path.relative_to(folder))
                )
                s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    def close(self) -> None:
        self.proxy.stop()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """An :class:`S3Server` with its variables set in ``os.environ`` while in use."""
    server = S3Server()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.close()


def main() -> None:
    """``python tests/s3_local.py FOLDER BUCKET LATENCY_S``: serve ``FOLDER`` as
    ``s3://BUCKET/`` behind a caching proxy with ``LATENCY_S`` added per request; prints the
    proxy's endpoint, then serves until stdin closes."""
    folder, bucket, latency = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    server = S3Server()
    server.upload_dir(folder, bucket)
    server.proxy.latency = latency
    server.proxy.cache = {}
    print(server.endpoint, flush=True)
    sys.stdin.read()
    server.close()


if __name__ == "__main__":
    main()
