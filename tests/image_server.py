"""A small web server on loopback that stands in for "a host on the internet serving images".

Paths: /chart.png (a real PNG), /photo.jpg (a real JPEG sent as text/plain), /page.png (HTML
sent as image/png), /drawing.svg, /big.png (MAX + 1 bytes, with Content-Length), /endless.png
(chunked, no length, more than MAX), /redirect?to=URL (302), /stall (answers only once the
test releases it). Every request is recorded with its headers.
"""

from __future__ import annotations

import io
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

MAX = 64 * 1024  # the byte cap the tests give the fetcher


def picture(fmt: str = "PNG", size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, fmt)
    return out.getvalue()


@dataclass
class ImageServer:
    """The running server, what it was asked, and the gate /stall waits on."""

    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    scheme: str = "http"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def _handler(state: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(
            self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            parts = urlsplit(self.path)
            state.requests.append({"path": parts.path, "headers": dict(self.headers)})
            if parts.path == "/chart.png":
                self.reply(200, picture(), "image/png")
            elif parts.path == "/photo.jpg":
                self.reply(200, picture("JPEG"), "text/plain")
            elif parts.path == "/page.png":
                self.reply(200, b"<html><script>alert(1)</script></html>", "image/png")
            elif parts.path == "/drawing.svg":
                self.reply(200, b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")
            elif parts.path == "/big.png":
                self.reply(200, b"\0" * (MAX + 1), "image/png")
            elif parts.path == "/endless.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for _ in range(4):
                    chunk = b"\0" * (MAX // 2)
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif parts.path == "/redirect":
                target = parse_qs(parts.query)["to"][0]
                self.reply(302, b"", "text/plain", {"Location": target})
            elif parts.path == "/stall":
                state.release.wait(30)
                self.reply(200, picture(), "image/png")
            else:
                self.reply(404, b"no", "text/plain")

    return Handler


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` (and its key), made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def image_server(tls: tuple[Path, Path] | None = None) -> Iterator[ImageServer]:
    """Serve on 127.0.0.1 (HTTPS with `tls`: certificate and key files)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ImageServer(0)))
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    state = ImageServer(int(server.server_address[1]), scheme="https" if tls else "http")
    server.RequestHandlerClass = _handler(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
