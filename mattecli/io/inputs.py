"""Inputs: command-line names expanded into images, shards of them, and the files that go with them.

Nothing here opens a file. :func:`discover` turns files, folders, globs and ``-`` (paths on stdin)
into an ordered list of :class:`InputItem`; :func:`in_shard` splits it between processes;
:func:`find_by_stem` finds the trimap (or alpha) of an image in another folder. Entries that are
not regular files (pipes, sockets, devices) are skipped with a :class:`SkippedInputWarning` when a
folder or a glob found them, and kept (then refused when read) when they were named.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mattecli import constants
from mattecli.errors import BadOptionError, NoInputsError, TrimapError

__all__ = [
    "InputItem",
    "SkippedInputWarning",
    "discover",
    "file_kind",
    "find_by_stem",
    "in_shard",
    "is_image_path",
    "parse_shard",
]


@dataclass(frozen=True)
class InputItem:
    """One input image.

    ``path`` is where it is read from; ``rel`` is the path relative to the folder it was found in
    (just the file name for files named directly, globbed or read from stdin); outputs mirror it.
    """

    path: Path
    rel: Path

    @property
    def key(self) -> str:
        """``rel`` without its suffix, as a POSIX string: what names outputs and matches trimaps."""
        return self.rel.with_suffix("").as_posix()


def is_image_path(path: Path) -> bool:
    """Whether ``path``'s suffix (any case) is one of :data:`mattecli.constants.IMAGE_EXTENSIONS`."""
    return path.suffix.lower() in constants.IMAGE_EXTENSIONS


class SkippedInputWarning(UserWarning):
    """An entry of an input folder or glob that is not a regular file (a pipe, a socket, a device):
    skipped unopened (opening a pipe would block the run). The CLI shows it as one ``warning:`` line."""


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words for messages (``"a pipe (FIFO)"``), from
    its ``st_mode``; ``"not a regular file"`` for anything unnamed."""
    if stat.S_ISCHR(mode):
        return "a device (character)"
    if stat.S_ISBLK(mode):
        return "a device (block)"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _entry(path: Path) -> tuple[str, str | None]:
    """``("file" | "dir" | "broken" | "special", kind)`` of a directory entry, symlinks followed, never opened.

    ``broken``: it cannot be looked at (a dangling link, a link loop, no permission); reading it
    reports why. ``special``: a pipe, socket or device (``kind`` says which).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "broken", None
    if stat.S_ISREG(st.st_mode):
        return "file", None
    if stat.S_ISDIR(st.st_mode):
        return "dir", None
    return "special", file_kind(st.st_mode)


@dataclass(frozen=True)
class _Skipped:
    path: Path
    rel: Path
    kind: str


def _scan_folder(folder: Path, recursive: bool, skipped: list[_Skipped]) -> list[InputItem]:
    """The images of ``folder`` (``recursive``: of its subfolders too, symlinked folders not followed).

    An entry named like an image (by extension, not hidden) is an input when it is a regular file
    *or cannot be looked at* (a dangling symlink, a symlink loop, no permission): reading it then
    reports the failure, so a folder run never drops a file silently. Pipes, sockets and devices are
    appended to ``skipped``, never opened.

    Raises:
        NoInputsError: ``folder`` itself cannot be listed.
    """
    items: list[InputItem] = []
    pending = [Path()]
    while pending:
        sub = pending.pop()
        here = folder / sub
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError as err:
            if sub == Path():
                raise NoInputsError(f"cannot list folder {folder} ({err.strerror or err})") from err
            warnings.warn(
                f"{here}: cannot list this folder ({err.strerror or err}); skipped", SkippedInputWarning, stacklevel=2
            )
            continue
        for entry in entries:
            rel = sub / entry.name
            try:
                real_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                real_dir = False
            if real_dir:
                if recursive:
                    pending.append(rel)
                continue
            if entry.name.startswith(".") or not is_image_path(Path(entry.name)):
                continue
            path = folder / rel
            what, kind = _entry(path)
            if what in ("file", "broken"):
                items.append(InputItem(path, rel))
            elif what == "special":
                skipped.append(_Skipped(path, rel, kind or "not a regular file"))
    return sorted(items, key=lambda it: it.rel.as_posix())


def _has_glob_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) -> ``(K, N)``.

    Raises:
        BadOptionError: anything else.
    """
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise BadOptionError(f"--shard must look like K/N (e.g. 2/8), not {text!r}") from None
    if not 1 <= k <= n:
        raise BadOptionError(f"--shard {text}: K must be between 1 and N")
    return k, n


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether ``key`` (a relative path or sample name) belongs to shard ``(K, N)``.

    The choice hashes the key alone (SHA-1, not Python's salted ``hash``), so it is the
    same on every machine and for every order of the inputs: N processes given the same
    inputs split them with no coordination, and together cover each input exactly once.
    """
    k, n = shard
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def _same_file_key(path: Path) -> str:
    """A key that is equal for two names of one file (symlinks resolved); never raises (link loops)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError, RuntimeError):
        return os.path.abspath(path)


def _from_stdin(stream: IO[str], recursive: bool, skipped: list[_Skipped]) -> list[InputItem]:
    """The inputs named on ``stream``, one path a line (blank lines separate; a folder is scanned)."""
    items: list[InputItem] = []
    for line in stream:
        exact = line.rstrip("\r\n")
        if not exact.strip():
            continue  # blank lines are separators
        # a name may itself begin or end with spaces; otherwise stray spaces are trimmed
        p = Path(exact) if exact != exact.strip() and os.path.lexists(exact) else Path(exact.strip())
        items.extend(_scan_folder(p, recursive, skipped) if p.is_dir() else [InputItem(p, Path(p.name))])
    return items


def _from_glob(text: str, skipped: list[_Skipped]) -> list[Path]:
    """The files (and unreadable entries) ``text`` matches, sorted; pipes, sockets and devices go to ``skipped``."""
    matched = []
    for m in sorted(Path(m) for m in glob.glob(text, recursive=True)):
        what, kind = _entry(m)
        if what in ("file", "broken"):
            matched.append(m)
        elif what == "special":
            skipped.append(_Skipped(m, Path(m.name), kind or "not a regular file"))
    return matched


def discover(
    inputs: Sequence[str | os.PathLike],
    *,
    recursive: bool = False,
    stdin: IO[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[InputItem]:
    """Expand command-line inputs into an ordered list of images.

    Each input may be a file, a folder (its images; ``recursive`` descends), a glob
    pattern, or ``-`` meaning newline-separated paths read from ``stdin`` (default
    ``sys.stdin``). Files named explicitly are kept even if their extension is unusual (the
    decoder decides); folder scans keep known image extensions only. Duplicates (two names of
    one file) are dropped, first occurrence wins. ``shard=(K, N)`` keeps the items of that shard
    (by relative path, see :func:`in_shard`); a shard may be empty.

    Nothing is opened here. An entry that cannot be looked at (a dangling symlink, a symlink
    loop, no permission) is kept: in a folder when it is named like an image, from a glob or a
    named symlink always, so that reading it reports the failure for that file. Pipes, sockets
    and devices found in a folder or by a glob are skipped, each with a
    :class:`SkippedInputWarning` (only those of the shard when ``shard`` is given); named
    explicitly (or on stdin) they are kept and refused when read.

    Raises:
        NoInputsError: nothing matched at all, or a named path does not exist.
    """
    items: list[InputItem] = []
    skipped: list[_Skipped] = []
    for raw in inputs:
        text = os.fspath(raw)
        if text == "-":
            items.extend(_from_stdin(stdin if stdin is not None else sys.stdin, recursive, skipped))
            continue
        path = Path(text)
        if path.is_dir():
            found = _scan_folder(path, recursive, skipped)
            if not found:
                _warn_skipped(skipped, shard)
                raise NoInputsError(
                    f"no images in folder {path}",
                    hint="supported: "
                    + ", ".join(sorted(constants.IMAGE_EXTENSIONS))
                    + ("" if recursive else "; use --recursive for subfolders"),
                )
            items.extend(found)
        elif path.exists() or os.path.islink(path):  # a dangling link named explicitly: its read fails
            items.append(InputItem(path, Path(path.name)))
        elif _has_glob_magic(text):
            matched = _from_glob(text, skipped)
            if not matched:
                _warn_skipped(skipped, shard)
                raise NoInputsError(f"no files match {text}")
            items.extend(InputItem(m, Path(m.name)) for m in matched)
        else:
            raise NoInputsError(f"no such file or folder: {text}")
    _warn_skipped(skipped, shard)
    seen: set[str] = set()
    unique = []
    for it in items:
        key = _same_file_key(it.path)
        if key not in seen:
            seen.add(key)
            unique.append(it)
    if not unique:
        raise NoInputsError("no input images given", hint="pass files, folders, globs, or - for stdin")
    if shard is not None:
        unique = [it for it in unique if in_shard(it.rel.as_posix(), shard)]
    return unique


def _warn_skipped(skipped: list[_Skipped], shard: tuple[int, int] | None) -> None:
    """One :class:`SkippedInputWarning` per skipped entry (of the shard), then forget them."""
    for s in skipped:
        if shard is None or in_shard(s.rel.as_posix(), shard):
            warnings.warn(f"{s.path}: skipped, it is {s.kind}, not an image file", SkippedInputWarning, stacklevel=2)
    skipped.clear()


# ----------------------------------------------------------------------------- stem matching
#: folder -> {file stem: image files with that stem, sorted}; see :func:`_files_with_stem`
_STEM_INDEX: dict[str, dict[str, list[Path]]] = {}
_STEM_INDEX_LOCK = threading.Lock()
_STEM_INDEX_FOLDERS = 64


def _scan_stems(base: Path) -> dict[str, list[Path]]:
    """``{stem: entries}`` of ``base`` named like images that are not folders: a dangling link or a
    pipe is kept too, so that reading it says what it is (never opened here)."""
    index: dict[str, list[Path]] = {}
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return index
    for entry in entries:
        path = base / entry.name
        try:
            if not entry.is_dir() and is_image_path(path):
                index.setdefault(path.stem, []).append(path)
        except OSError:
            continue
    return index


def _files_with_stem(base: Path, stem: str) -> list[Path]:
    """Image files in ``base`` whose stem is exactly ``stem``, sorted by name (see :func:`_scan_stems`).

    Each folder is listed once and indexed (a glob per image would list a folder of N
    trimaps N times). A hit is checked to still exist and a miss is looked up again, so
    files added or removed during a run are seen.
    """
    key = os.fspath(base)
    with _STEM_INDEX_LOCK:
        index = _STEM_INDEX.get(key)
    if index is not None:
        hit = index.get(stem)
        if hit and os.path.lexists(hit[0]):
            return hit
    index = _scan_stems(base)
    with _STEM_INDEX_LOCK:
        if len(_STEM_INDEX) >= _STEM_INDEX_FOLDERS and key not in _STEM_INDEX:
            _STEM_INDEX.pop(next(iter(_STEM_INDEX)))
        _STEM_INDEX[key] = index
    return index.get(stem, [])


def find_by_stem(item: InputItem, folder: Path, *, role: str = "trimap") -> Path:
    """The file in ``folder`` that belongs to ``item``: same relative path and stem.

    Tries ``folder/<rel parent>/<stem>.*`` first, then ``folder/<stem>.*`` (a flat
    folder of trimaps for a recursive run). Any image extension matches; the stem must
    match exactly (the trimap of ``a.jpg`` is ``a.png``, never ``a.old.png``); of several,
    the first by name. ``role`` names the file in the error.

    Raises:
        TrimapError: no such file (the message names the folder and the stem).
    """
    stem = item.rel.stem
    candidates = [folder / item.rel.parent]
    if item.rel.parent != Path("."):
        candidates.append(folder)
    for base in candidates:
        if not base.is_dir():
            continue
        exact = _files_with_stem(base, stem)
        if exact:
            return exact[0]
    raise TrimapError(
        f"{item.path}: no {role} named {stem}.* in {folder}",
        hint=f"{role}s are matched to images by file stem",
    )
