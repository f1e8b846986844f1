"""A stand-in for the Hugging Face Hub's ``resolve`` endpoint, for offline download tests.

``huggingface_hub.hf_hub_download`` (2.4.0) asks for file metadata with
``HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename}`` and reads ``X-Repo-Commit``,
``X-Linked-Etag`` (or ``ETag``) and ``X-Linked-Size`` (or ``Content-Length``); it then ``GET``s the
same URL. When the body stops short (connection dropped), it retries with
``Range: bytes=N-`` and expects ``206`` with ``Content-Range``. Errors are told apart by the
``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``). It switches
to the Xet protocol only when a response carries ``X-Xet-*`` headers or a ``xet-auth`` link, so
this server (which sends none) is always served over plain HTTP.

Dataset repositories (:meth:`FakeHub.add_dataset`) are served under ``/datasets/{repo_id}/resolve/...``
(``hf_hub_download(repo_type="dataset")``) plus the two API routes dataset downloads use:
``GET /api/datasets/{repo_id}/revision/{revision}`` (``HfApi.dataset_info``: ``id``, ``sha``,
``siblings``) and ``GET /api/datasets/{repo_id}/tree/{revision}`` (``HfApi.list_repo_tree``: one
``{"type": "file", "path", "size", "oid"}`` per file, one page).

``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` into
``huggingface_hub.constants`` when it is imported and its functions read those attributes at
call time; :func:`use_fake_hub` therefore patches the attributes in-process. Tests that need the
real environment variables run a subprocess instead.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

__all__ = ["FakeHub", "Request", "use_fake_hub", "hub_entry", "write_manifest"]


@dataclass(frozen=True)
class Request:
    """One request the server saw."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 (random free port) serving repo files like the Hub.

    Use as a context manager (or ``start``/``stop``). ``add_file`` publishes bytes under a repo
    and a commit (``main``, or the ``ref`` named, points at the latest; a request names a commit or a
    ref, e.g. ``refs/pr/3``, which ``hf_hub_download`` sends URL-quoted); ``drop_after[filename] = n``
    makes the *first* ``GET`` of that file send only ``n`` bytes of its body and then drop the
    connection.
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.requests: list[Request] = []
        self.drop_after: dict[str, int] = {}
        self._dropped: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._url: str | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ content
    def add_file(
        self, repo_id: str, filename: str, content: bytes, *, commit: str | None = None, ref: str | None = "main"
    ) -> str:
        """Publish ``content``; returns the 40-hex commit it lives at. ``ref`` (a branch, or a pull
        request's ``refs/pr/N``) is moved to that commit; ``None`` leaves every ref where it is
        (the file is then reachable by its commit only)."""
        commit = commit or hashlib.sha1(repo_id.encode() + filename.encode() + content).hexdigest()
        repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}})
        repo["commits"].setdefault(commit, {})[filename] = content
        if ref is not None:
            repo["refs"][ref] = commit
        return commit

    def add_dataset(self, repo_id: str, files: dict[str, bytes], *, commit: str | None = None) -> str:
        """Publish a dataset repository: all ``files`` in one commit (``main`` points at it); returns the commit."""
        key = f"datasets/{repo_id}"
        commit = commit or hashlib.sha1(key.encode() + b"".join(sorted(files.values()))).hexdigest()
        for filename, content in files.items():
            self.add_file(key, filename, content, commit=commit)
        return commit

    def gets(self, filename: str | None = None) -> list[Request]:
        """The GET requests seen (for one file name, or all)."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and (filename is None or r.path.endswith(filename))]

    # ------------------------------------------------------------------ server
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (still answers after ``stop``: a port that refuses connections)."""
        assert self._url is not None, "server not started"
        return self._url

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(
                Request(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()})
            )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _error(self, status: int, code: str | None = None, commit: str | None = None) -> None:
        payload = json.dumps({"error": code or "not found"}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _serve(self, *, body: bool) -> None:
        hub = self.hub
        hub._record(self)
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/datasets/"):
            return self._serve_dataset_api(path[len("/api/datasets/") :], body=body)
        if "/resolve/" not in path:
            return self._error(404)
        repo_id, rest = path.lstrip("/").split("/resolve/", 1)
        revision, _, filename = rest.partition("/")
        revision, filename = unquote(revision), unquote(filename)
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound")
        commit = repo["refs"].get(revision, revision)
        if commit not in repo["commits"]:
            return self._error(404, "RevisionNotFound")
        files = repo["commits"][commit]
        if filename not in files:
            return self._error(404, "EntryNotFound", commit)
        content = files[filename]
        size = len(content)
        sha = hashlib.sha256(content).hexdigest()
        start = 0
        range_header = self.headers.get("Range")
        if body and range_header and range_header.startswith("bytes="):
            first, _, _last = range_header[len("bytes=") :].partition("-")
            start = int(first or 0)
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{sha}"')
        self.send_header("X-Linked-Etag", f'"{sha}"')
        self.send_header("X-Linked-Size", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        if not body:
            return None
        payload = content[start:]
        with hub._lock:
            drop = filename in hub.drop_after and filename not in hub._dropped
            if drop:
                hub._dropped.add(filename)
        if drop:
            self.wfile.write(payload[: hub.drop_after[filename]])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        self.wfile.write(payload)
        return None

    def _serve_dataset_api(self, rest: str, *, body: bool) -> None:
        """``{owner}/{name}/revision/{rev}`` and ``{owner}/{name}/tree/{rev}[/path]`` of a dataset repo."""
        parts = rest.split("/")
        if len(parts) < 4 or parts[2] not in ("revision", "tree"):
            return self._error(404)
        repo_id, route, revision = "/".join(parts[:2]), parts[2], unquote(parts[3])
        repo = self.hub.repos.get(f"datasets/{repo_id}")
        if repo is None:
            return self._error(401, "RepoNotFound")
        commit = repo["refs"].get(revision, revision)
        if commit not in repo["commits"]:
            return self._error(404, "RevisionNotFound")
        files = repo["commits"][commit]
        prefix = "/".join(unquote(p) for p in parts[4:])
        if route == "revision":
            data: object = {"id": repo_id, "sha": commit, "siblings": [{"rfilename": f} for f in sorted(files)]}
        else:
            data = [
                {"type": "file", "path": f, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                for f, c in sorted(files.items())
                if not prefix or f.startswith(prefix.rstrip("/") + "/")
            ]
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)
        return None


# ---------------------------------------------------------------------------- test wiring
def use_fake_hub(monkeypatch, cache_dir: Path, hub: FakeHub | None = None, *, offline: bool = False) -> None:
    """Point ``huggingface_hub`` at ``hub`` (or at nothing) and at an empty cache, for one test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    # huggingface_hub caches its "agent harness" registry (user-agent telemetry) under HF_HOME
    monkeypatch.setattr(
        constants, "AGENT_HARNESSES_PATH", str(cache_dir.parent / ".agent_harnesses.json"), raising=False
    )
    if hub is not None:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )


def hub_entry(
    variant: str,
    *,
    method: str = "toy",
    hub: dict | None = None,
    source_format: str = "torch",
    official_sha256: str | None = None,
    official_filename: str = "toy_best.pth",
    license: str = "MIT",
) -> dict:
    """A valid manifest entry for tests (``hub`` is the published location or ``None``)."""
    return {
        "variant": variant,
        "method": method,
        "description": f"test variant {variant}",
        "paper": {"title": "A Toy Network", "authors": "A. Author", "venue": None, "year": None},
        "license": license,
        "official": {
            "repo": "https://example.invalid/toy",
            "commit": None,
            "files": [
                {
                    "filename": official_filename,
                    # manual: a link mattecli never fetches by itself (tests never reach the internet)
                    "links": [
                        {"host": "example", "url": f"https://example.invalid/{official_filename}", "manual": True}
                    ],
                    "sha256": official_sha256,
                    "size": None,
                }
            ],
        },
        "hub": hub,
        "conversion": {"source_format": source_format, "wrapper": "state_dict", "key_mapping": f"{method}.test"},
    }


def write_manifest(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "checkpoints": entries}, indent=2))
    return path
