"""Stand-ins for the authors' file hosts, on 127.0.0.1, for offline download tests.

:class:`FakeDrive` speaks Google Drive's download flow as a browser meets it in 2024-2026:

* ``GET /uc?export=download&id=ID`` (the link the manifest holds) answers ``303`` to
  ``/download?id=ID&export=download`` (``drive.usercontent.google.com`` in real life);
* a large file there first gets the HTML "Google Drive can't scan this file for viruses" page,
  whose ``<form id="download-form" action=".../download" method="get">`` carries hidden inputs
  ``id``, ``export``, ``confirm`` and a one-time ``uuid``; submitting it gives the file with
  ``Content-Disposition: attachment``, ``Content-Length``, an ``ETag`` and ``Accept-Ranges``;
* small files come straight away; and the failure pages: the quota page ("Too many users have
  viewed or downloaded this file recently"), a "You need access" page (403), a not-found page
  (404).

Per-file knobs: ``drop_after`` (the first ``drop_times`` GETs of the body send that many bytes,
then drop the connection), ``ranges`` (honour ``Range``; else answer 200 with the whole file),
``delay``/``chunk`` (a slow transfer). :class:`FakeDrive` also serves plain files at
``/files/NAME`` (the MindSpore download server is a plain HTTPS file server), with the same knobs.
Every request is recorded.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeDrive", "DriveFile", "Seen"]

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<div class="uc-main"><p class="uc-error-caption">Sorry, you can&#39;t view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try
accessing the file again later. If the file you are trying to access is particularly large or is shared
with many people, it may take up to 24 hours to be able to view or download the file.</p></div></body></html>"""

ACCESS_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - You need access</title></head><body>
<h1>You need access</h1><p>Ask for access, or switch to an account with access.</p>
<a href="/request">Request access</a></body></html>"""

MISSING_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Page Not Found</title></head><body>
<p>Sorry, the file you have requested does not exist.</p></body></html>"""

WARNING_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>
<meta http-equiv="content-type" content="text/html; charset=utf-8"/></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can&#39;t scan this file for
viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">{name}</a>
({size})</span> is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get"><input type="submit" id="uc-download-link"
class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}"></form>
</div></div></body></html>"""


@dataclass
class DriveFile:
    """One file on the stand-in host and how it is served.

    ``mode``: ``confirm`` (virus-scan page first), ``direct`` (no page), ``quota``, ``access``,
    ``missing``, ``html`` (an unrelated HTML page instead of the file).
    """

    content: bytes
    name: str = "file.bin"
    mode: str = "confirm"
    ranges: bool = True
    drop_after: int | None = None
    drop_times: int = 1
    delay: float = 0.0
    chunk: int = 1 << 16
    dropped: int = 0
    uuids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


class FakeDrive:
    """A threaded HTTP server on a free port of 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.files: dict[str, DriveFile] = {}
        self.plain: dict[str, DriveFile] = {}
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------------ content
    def add(self, file_id: str, content: bytes, **knobs) -> str:
        """Publish ``content`` under a Drive id; returns the manifest link ``.../uc?export=download&id=ID``."""
        self.files[file_id] = DriveFile(content, **knobs)
        return f"{self.url}/uc?export=download&id={file_id}"

    def add_plain(self, name: str, content: bytes, **knobs) -> str:
        """Publish ``content`` as a plain file; returns its URL."""
        self.plain[name] = DriveFile(content, name=name, mode="direct", **knobs)
        return f"{self.url}/files/{name}"

    def body_gets(self) -> list[Seen]:
        """GETs that asked for a file body (not the link or a page)."""
        with self.lock:
            return [
                r
                for r in self.requests
                if r.method == "GET" and (r.path.startswith("/files/") or "confirm=" in r.path or "direct" in r.path)
            ]

    # ------------------------------------------------------------------ server
    def __enter__(self) -> FakeDrive:
        drive = self

        class Handler(_Handler):
            pass

        Handler.drive = drive
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    drive: FakeDrive

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet tests
        pass

    def _page(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        drive = self.drive
        with drive.lock:
            drive.requests.append(Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path.startswith("/files/"):
            f = drive.plain.get(parts.path[len("/files/") :])
            return self._page(404, MISSING_PAGE) if f is None else self._file(f)
        f = drive.files.get(query.get("id", ""))
        if f is None or f.mode == "missing":
            return self._page(404, MISSING_PAGE)
        if parts.path == "/uc":
            if f.mode == "quota":
                return self._page(200, QUOTA_PAGE)
            if f.mode == "access":
                return self._page(403, ACCESS_PAGE)
            if f.mode == "html":
                return self._page(200, "<html><head><title>Welcome</title></head><body>Hello</body></html>")
            location = f"/download?id={query['id']}&export=download" + ("&direct=1" if f.mode == "direct" else "")
            self.send_response(303)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if parts.path == "/download":
            if f.mode == "direct" and query.get("direct"):
                return self._file(f)
            token = query.get("uuid")
            if query.get("confirm") == "t" and token in f.uuids:
                return self._file(f)
            token = str(uuid.uuid4())
            f.uuids.add(token)
            size = f"{len(f.content) / 1e6:.0f}M"
            return self._page(
                200,
                WARNING_PAGE.format(id=query["id"], name=f.name, size=size, uuid=token, action=f"{drive.url}/download"),
            )
        return self._page(404, MISSING_PAGE)

    def _file(self, f: DriveFile) -> None:
        content = f.content
        size = len(content)
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        start = 0
        asked = self.headers.get("Range")
        if f.ranges and asked and asked.startswith("bytes="):
            if_range = self.headers.get("If-Range")
            if if_range is None or if_range == etag:
                start = int(asked[len("bytes=") :].split("-")[0] or 0)
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Disposition", f'attachment; filename="{f.name}"')
        self.send_header("ETag", etag)
        if f.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        payload = content[start:]
        with self.drive.lock:
            drop = f.drop_after is not None and f.dropped < f.drop_times
            if drop:
                f.dropped += 1
        if drop:
            payload = payload[: f.drop_after]
        try:
            for i in range(0, len(payload), f.chunk):
                self.wfile.write(payload[i : i + f.chunk])
                self.wfile.flush()
                if f.delay:
                    time.sleep(f.delay)
        except (BrokenPipeError, ConnectionResetError):
            return
        if drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
