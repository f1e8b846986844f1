"""Fetching the authors' checkpoint files from their links: plain HTTP(S) and Google Drive's flow.

:func:`fetch` downloads one URL, exactly as the manifest writes it, into a folder of the cache and
returns the checkpoint file. It never leaves anything that looks like weights behind: bytes go to a
``<key>.part`` file beside a small ``<key>.json`` state file, and only a complete transfer becomes
the named checkpoint. What it handles:

* **Google Drive, whatever host serves it.** A large public file first answers with an HTML page
  ("Google Drive can't scan this file for viruses") holding ``<form id="download-form"
  action=...>`` and hidden inputs (``id``, ``export``, ``confirm``, ``uuid``); the form is submitted
  (its action resolved against the page's URL) and the file follows. The older flow (a
  ``/uc?export=download&confirm=...`` link in the page) is followed too. Any other HTML page where a
  checkpoint was expected is never saved: the quota page ("Too many users have viewed or downloaded
  this file recently"), sign-in / "you need access" pages and not-found pages raise
  :class:`FetchError` of kind ``quota``, ``permission`` and ``not-found``.
* **Robust transfer.** The body is streamed in 1 MiB chunks with a tqdm-compatible progress bar;
  the byte count is checked against ``Content-Length`` / ``Content-Range``; a transfer cut short or
  stalled (no byte for :data:`TIMEOUT` seconds) is resumed with ``Range: bytes=N-`` where the
  server answers ``206`` with the right offset, and restarted from zero where it does not. A
  ``.part`` file left by an interrupted process is resumed by the next one only when the server
  gave a validator (``ETag`` / ``Last-Modified``), sent back as ``If-Range`` so that a changed file
  is fetched whole instead of spliced.
* **Archives.** A ``.zip`` (the AIM README says to unzip its download) is opened and the member
  named like the manifest's file is extracted; a PyTorch zip checkpoint (it holds ``data.pkl``) is
  the file itself.

Why not ``gdown``: it runs Drive's confirmation flow only for the hosts ``drive.google.com`` and
``docs.google.com`` (``gdown.parse_url`` tests the host name), so a company mirror or a test server
named in ``MATTECLI_MANIFEST`` would get no confirmation handling, and it brings ``requests``,
``beautifulsoup4`` and ``tqdm`` along. This module is a small client on the standard library's
``urllib`` (proxies from ``HTTPS_PROXY``/``NO_PROXY``, the system's CA certificates, a cookie jar
for Drive's cookies), so it adds no dependency.
"""

from __future__ import annotations

import hashlib
import html
import http.client
import http.cookiejar
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any

from mattecli import __version__

__all__ = ["FetchError", "Fetched", "fetch", "TIMEOUT", "RETRY_DELAYS"]

#: Seconds without a byte (connect or read) before an attempt counts as stalled.
TIMEOUT = 60.0
#: Pauses between attempts that failed mid-transfer (one more attempt than pauses); an attempt
#: that moved bytes forward resets the count, so a long flaky transfer still finishes.
RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
CHUNK = 1 << 20
#: Attempts after a first failure to get any answer at all (a host down or unresolvable).
CONNECT_RETRIES = 2
#: Largest HTML page read to look for a confirmation form.
MAX_PAGE = 2 << 20
#: Largest archive member extracted (a zip bomb guard; checkpoints here are < 1 GB).
MAX_MEMBER = 8 << 30
#: Confirmation pages followed before giving up.
MAX_HOPS = 4


class FetchError(Exception):
    """A link that did not give the file.

    ``kind``: ``quota``, ``permission``, ``not-found``, ``html`` (another page), ``archive`` (a zip
    without the file), ``network`` or ``truncated`` (the last two are retried before raising).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.connect = False  # no answer at all (refused, unresolvable, timed out connecting)


@dataclass(frozen=True)
class Fetched:
    """A complete download: ``path`` is the checkpoint file (named like the manifest's file)."""

    path: Path
    url: str
    final_url: str
    size: int
    archive_member: str | None


# ----------------------------------------------------------------------------- pages
class _Page(HTMLParser):
    """The parts of an HTML page that matter here: the download form, old-style links, the title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form: dict[str, Any] | None = None
        self._in_form = False
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form" and a.get("id") == "download-form" and self.form is None:
            self.form = {"action": a.get("action", ""), "method": a.get("method", "get").lower(), "inputs": []}
            self._in_form = True
        elif tag == "input" and self._in_form and a.get("type", "").lower() == "hidden" and a.get("name"):
            self.form["inputs"].append((a["name"], a.get("value", "")))
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _next_request(page: _Page, base: str) -> tuple[str, bytes | None] | None:
    """Where Drive's confirmation page sends the browser: ``(url, post body or None)``."""
    if page.form is not None:
        action = urllib.parse.urljoin(base, page.form["action"] or base)
        parts = urllib.parse.urlsplit(action)
        if page.form["method"] == "post":
            return action, urllib.parse.urlencode(page.form["inputs"]).encode()
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        params.update(page.form["inputs"])
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(params))), None
    for href in page.links:  # the pre-2024 flow: <a href="/uc?export=download&confirm=XXXX&id=...">
        if "export=download" in href and "confirm=" in href:
            return urllib.parse.urljoin(base, html.unescape(href)), None
    return None


_QUOTA = ("too many users have viewed or downloaded this file recently", "download quota", "quota exceeded")
_PERMISSION = ("you need access", "request access", "you need permission", "access denied", "sign in to continue")
_NOT_FOUND = ("does not exist", "page not found", "file not found", "404")


def _page_error(text: str, status: int, url: str, title: str) -> FetchError:
    low = text.lower()
    host = urllib.parse.urlsplit(url).netloc.lower()
    if any(s in low for s in _QUOTA) or status == 429:
        return FetchError("quota", "download quota exceeded (Too many users have viewed or downloaded this file)")
    if status in (401, 403) or any(s in low for s in _PERMISSION) or host.startswith("accounts."):
        return FetchError(
            "permission", "the file is not shared publicly (the server asks to sign in or request access)"
        )
    if status == 404 or any(s in low for s in _NOT_FOUND):
        return FetchError("not-found", "the file does not exist there (removed, or a wrong link)")
    shown = " ".join(title.split())[:80]
    return FetchError(
        "html", f"the server answered with an HTML page{f' ({shown!r})' if shown else ''} instead of the file"
    )


def _looks_like_html(head: bytes, content_type: str) -> bool:
    if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    start = head.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


# ----------------------------------------------------------------------------- transfer
def _status_error(status: int, reason: str) -> FetchError:
    if status == 404 or status == 410:
        return FetchError("not-found", f"HTTP {status} {reason}: the file does not exist there")
    if status in (401, 403):
        return FetchError("permission", f"HTTP {status} {reason}: access denied")
    if status == 429:
        return FetchError("quota", f"HTTP {status} {reason}: rate limited, try again later")
    if status == 416:
        return FetchError("network", f"HTTP {status} {reason}")
    if status >= 500:
        return FetchError("network", f"HTTP {status} {reason} (server error)")
    return FetchError("html", f"HTTP {status} {reason}")


def _network_reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        err = err.reason if isinstance(err.reason, BaseException) else err
        if isinstance(err, str):
            return err
    if isinstance(err, (socket.timeout, TimeoutError)):
        return f"no data for {TIMEOUT:g} s"
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return str(text).strip().splitlines()[0]


class _Client:
    def __init__(self) -> None:
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.agent = f"mattecli/{__version__} (+https://pypi.org/project/mattecli)"

    def open(self, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None):
        """A response for ``url`` (4xx/5xx included, as responses); network failures raise FetchError."""
        req = urllib.request.Request(
            url, data=data, headers={"User-Agent": self.agent, "Accept-Encoding": "identity", **(headers or {})}
        )
        try:
            return self.opener.open(req, timeout=TIMEOUT)
        except urllib.error.HTTPError as err:
            return err
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            failure = FetchError("network", _network_reason(err))
            failure.connect = True
            raise failure from err


@dataclass
class _Body:
    """A binary response ready to stream: the first bytes already read, where it came from."""

    response: Any
    head: bytes
    url: str
    status: int


def _read_some(response: Any, n: int) -> bytes:
    """Up to ``n`` bytes, as soon as some arrive (``read(n)`` would wait for all ``n``, so a slow
    server's bytes would sit in a buffer and be lost when the wait times out)."""
    read1 = getattr(response, "read1", None)
    return read1(n) if read1 is not None else response.read(n)


def _read_page(response: Any, head: bytes) -> str:
    try:
        rest = response.read(MAX_PAGE - len(head))
    except (OSError, http.client.HTTPException):
        rest = b""
    finally:
        response.close()
    raw = head + rest
    charset = response.headers.get_content_charset() or "utf-8"
    return raw.decode(charset, errors="replace")


def _open_file(client: _Client, url: str, headers: dict[str, str]) -> _Body:
    """GET ``url`` and follow Drive's confirmation pages until a binary body starts.

    Raises:
        FetchError: a page that is not a confirmation (quota, permission, not found ...), an
            error status, or a network failure.
    """
    data = None
    for _ in range(MAX_HOPS + 1):
        response = client.open(url, data=data, headers=headers)
        status = response.status if hasattr(response, "status") else response.getcode()
        content_type = response.headers.get("Content-Type", "")
        try:
            head = _read_some(response, 4096) if status < 400 else b""
        except (OSError, http.client.HTTPException) as err:
            response.close()
            raise FetchError("network", _network_reason(err)) from err
        final = response.geturl() or url
        if status == 206 and "Range" in headers and _looks_like_html(head, content_type):
            response.close()  # part of a page: ask for the whole page
            headers = {k: v for k, v in headers.items() if k not in ("Range", "If-Range")}
            continue
        if status >= 400:
            page = _read_page(response, head)
            if "html" in content_type.lower() or "<html" in page[:2000].lower():
                parser = _Page()
                parser.feed(page)
                raise _page_error(page, status, final, parser.title)
            raise _status_error(status, getattr(response, "reason", "") or "")
        if not _looks_like_html(head, content_type):
            return _Body(response, head, final, status)
        page = _read_page(response, head)
        parser = _Page()
        parser.feed(page)
        nxt = _next_request(parser, final)
        if nxt is None:
            raise _page_error(page, status, final, parser.title)
        url, data = nxt  # a Range asked for goes on to the file itself
    raise FetchError("html", f"gave up after {MAX_HOPS} confirmation pages")


_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _expected_total(body: _Body, offset: int) -> tuple[int | None, bool]:
    """``(total size or None, resumed)`` of a binary response asked from ``offset``."""
    h = body.response.headers
    if body.status == 206:
        m = _RANGE.fullmatch(h.get("Content-Range", "").strip())
        if m and int(m.group(1)) == offset:
            return (int(m.group(3)) if m.group(3) != "*" else None), True
        return None, False  # a range we did not ask for: not usable
    length = h.get("Content-Length")
    return (int(length) if length and length.isdigit() else None), False


def _validator(body: _Body) -> str | None:
    etag = body.response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return body.response.headers.get("Last-Modified")


def _load_state(path: Path, url: str) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("url") == url else {}


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


class _Bar:
    """Progress through an optional tqdm-compatible class (``total``/``initial``/``desc``, ``update``)."""

    def __init__(self, factory: type | None, desc: str):
        self.factory, self.desc, self.bar, self.shown = factory, desc, None, 0

    def start(self, total: int | None, initial: int) -> None:
        if self.factory is None:
            return
        if self.bar is None:
            self.bar = self.factory(total=total, initial=initial, desc=self.desc, unit="B", unit_scale=True)
            self.shown = initial
        elif initial != self.shown:  # a restart (or a resume after one): move the bar back
            self.bar.update(initial - self.shown)
            self.shown = initial

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.shown += n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fetch(
    url: str,
    folder: str | os.PathLike,
    filename: str,
    *,
    progress: type | None = None,
    desc: str | None = None,
    expected_size: int | None = None,
) -> Fetched:
    """Download ``url`` into ``folder`` and return the checkpoint file ``folder/filename``.

    ``progress`` is a tqdm-compatible class (``None``: no bar). ``expected_size`` (the manifest's
    size, when known) is checked once the transfer is complete.

    Raises:
        FetchError: what went wrong, in one line (see the class for the kinds).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    part, state_file = folder / f"{key}.part", folder / f"{key}.json"
    state = _load_state(state_file, url) if part.is_file() else {}
    offset = part.stat().st_size if state.get("validator") and part.is_file() else 0
    if offset == 0:
        part.unlink(missing_ok=True)
    client = _Client()
    bar = _Bar(progress, desc or filename)
    failures = 0
    try:
        while True:
            before = offset
            try:
                offset = _attempt(client, url, part, state_file, state, offset, bar)
                break
            except FetchError as err:
                offset = part.stat().st_size if (part.is_file() and state.get("ranges")) else 0
                if err.kind not in ("network", "truncated"):
                    raise
                failures = 0 if offset > before else failures + 1
                if failures > (min(CONNECT_RETRIES, len(RETRY_DELAYS)) if err.connect else len(RETRY_DELAYS)):
                    raise
                if RETRY_DELAYS:
                    time.sleep(RETRY_DELAYS[max(failures, 1) - 1])
    finally:
        bar.close()
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink(missing_ok=True)
        state_file.unlink(missing_ok=True)
        raise FetchError("truncated", f"got {size} bytes where the manifest expects {expected_size}")
    done = folder / f"{key}.download"
    os.replace(part, done)
    state_file.unlink(missing_ok=True)
    try:
        path, member = _unpack(done, folder, filename)
    finally:
        if done.exists() and done != folder / filename:
            done.unlink(missing_ok=True)
    return Fetched(path, url, state.get("final_url") or url, path.stat().st_size, member)


def _attempt(client: _Client, url: str, part: Path, state_file: Path, state: dict, offset: int, bar: _Bar) -> int:
    """One GET (resumed at ``offset`` when possible); returns the complete file's size."""
    body: _Body | None = None
    if offset:
        headers = {"Range": f"bytes={offset}-"}
        if state.get("validator"):
            headers["If-Range"] = state["validator"]
        resume_url = state.get("final_url") or url
        try:
            body = _open_file(client, resume_url, headers)
        except FetchError:
            if resume_url == url:
                raise
            body = None  # the confirmed URL expired: go through the link again
        if body is None:
            body = _open_file(client, url, headers)
    else:
        body = _open_file(client, url, {})
    total, resumed = _expected_total(body, offset)
    if offset and not resumed:
        if body.status == 206:  # a partial answer we cannot place: ask again from zero
            body.response.close()
            state["ranges"] = False
            raise FetchError("network", "the server answered a range request with another range")
        offset = 0  # the server ignored the range (or the file changed): restart
    accepts = resumed or body.response.headers.get("Accept-Ranges", "").lower() == "bytes"
    state.update(url=url, final_url=body.url, validator=_validator(body), total=total, ranges=accepts)
    _save_state(state_file, state)
    bar.start(total, offset)
    received = offset
    try:
        with part.open("r+b" if offset else "wb") as fh:
            fh.seek(offset)
            fh.truncate()
            chunk = body.head
            while True:
                if chunk:
                    fh.write(chunk)
                    fh.flush()  # what arrived is on disk: a killed process leaves a resumable .part
                    received += len(chunk)
                    bar.update(len(chunk))
                if total is not None and received >= total:
                    break
                try:
                    chunk = _read_some(body.response, CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise FetchError(
                        "truncated", f"the transfer stopped after {received} bytes ({_network_reason(err)})"
                    ) from err
                if not chunk:
                    break
    finally:
        body.response.close()
    if total is not None and received != total:
        raise FetchError("truncated", f"the transfer stopped after {received} of {total} bytes")
    return received


def _bomb_reason(zf: zipfile.ZipFile, member: zipfile.ZipInfo) -> str | None:
    """Why extracting ``member`` is refused: a decompression bomb (see
    :func:`~mattecli.weights.reading.zip_bomb_reason`), or None."""
    from mattecli.weights.reading import zip_bomb_reason

    return zip_bomb_reason(zf, max_bytes=MAX_MEMBER, members=[member])


def _unpack(download: Path, folder: Path, filename: str) -> tuple[Path, str | None]:
    """``folder/filename``: the download itself, or the member of that name of a zip archive.

    The member is checked before it is extracted (its declared size, its compression ratio, and
    that it inflates to what it declares: :func:`~mattecli.weights.reading.zip_bomb_reason`),
    and extracted as a stream that stops at its declared size. A PyTorch zip checkpoint downloaded
    as such is checked when it is imported (:func:`~mattecli.weights.reading.read_checkpoint`)."""
    target = folder / filename
    if not zipfile.is_zipfile(download):
        os.replace(download, target)
        return target, None
    try:
        with zipfile.ZipFile(download) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            named = sorted(
                (i for i in infos if PurePosixPath(i.filename).name == filename), key=lambda i: len(i.filename)
            )
            if not named:
                if any(PurePosixPath(i.filename).name == "data.pkl" for i in infos):
                    os.replace(download, target)  # a PyTorch zip checkpoint, not an archive of one
                    return target, None
                listing = ", ".join(i.filename for i in infos[:6]) + (" ..." if len(infos) > 6 else "")
                raise FetchError("archive", f"the download is a zip archive without {filename} (it holds {listing})")
            member = named[0]
            if member.file_size > MAX_MEMBER:
                raise FetchError("archive", f"{member.filename} in the archive is {member.file_size} bytes, too large")
            reason = _bomb_reason(zf, member)
            if reason is not None:
                raise FetchError("archive", f"the downloaded zip archive is refused unread: {reason}")
            tmp = folder / f".{filename}.{os.getpid()}.tmp"
            try:
                with zf.open(member) as src, tmp.open("wb") as dst:
                    written = 0
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > member.file_size:  # never more than it declared (and was checked)
                            raise FetchError(
                                "archive", f"{member.filename} inflates past the {member.file_size} bytes it declares"
                            )
                        dst.write(chunk)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return target, member.filename
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise FetchError("archive", f"the downloaded zip archive is damaged ({err})") from err
