"""Typed, validated JSON manifests (weights, datasets): field access that names entry and field, reading,
and the types both manifests share.

The manifests are data, not code: every field is checked when it is read and a bad one raises
:class:`~mattecli.errors.ManifestError` naming the entry and the field (unknown fields too, so a typo
such as ``sha265`` cannot hide). Shared by ``weights_manifest.json`` (:mod:`mattecli.weights.manifest`)
and ``datasets_manifest.json`` (:mod:`mattecli.benchmark.manifest`): :class:`Fields`,
:func:`read_manifest`, the patterns of a commit (:data:`HEX40`), a sha256 (:data:`HEX64`) and a
Hub repository id (:data:`REPO_ID`), and the publication an entry belongs to (:class:`Paper`,
:func:`parse_paper`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mattecli.errors import ManifestError

__all__ = ["Fields", "HEX40", "HEX64", "REPO_ID", "Paper", "parse_paper", "read_manifest"]

HEX40 = re.compile(r"[0-9a-f]{40}")
HEX64 = re.compile(r"[0-9a-f]{64}")
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")

T = TypeVar("T")


class Fields:
    """Typed access to one JSON object of the manifest; every complaint names entry and field."""

    def __init__(self, data: Any, where: str, source: str):
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: {where} must be a JSON object, not {type(data).__name__}")
        self.data, self.where, self.source = data, where, source
        self.seen: set[str] = set()

    def error(self, name: str, problem: str) -> ManifestError:
        return ManifestError(f"{self.source}: {self.where}: field '{name}' {problem}")

    def get(
        self,
        name: str,
        kind: type | tuple[type, ...],
        *,
        required: bool = True,
        nullable: bool = False,
        pattern: re.Pattern | None = None,
    ) -> Any:
        """``required``: the key must be present; ``nullable``: it may be ``null``."""
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "is missing" + (" (use null when unknown)" if nullable else ""))
            return None
        value = self.data[name]
        if value is None:
            if nullable or not required:
                return None
            raise self.error(name, "must not be null")
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.error(name, f"must be {names}, not {type(value).__name__} ({value!r})")
        if isinstance(value, str) and not value.strip():
            raise self.error(name, "must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(name, f"has an invalid value {value!r} (expected {pattern.pattern})")
        if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
            raise self.error(name, f"must be positive, not {value}")
        return value

    def sub(self, name: str, *, nullable: bool = False, required: bool = True) -> Fields | None:
        value = self.get(name, dict, nullable=nullable, required=required)
        return None if value is None else Fields(value, f"{self.where}.{name}", self.source)

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise self.error(extra[0], "is not a known field (typo?)")


@dataclass(frozen=True)
class Paper:
    """The publication a checkpoint or a test set belongs to (``venue``/``year`` are ``None`` when unknown)."""

    title: str
    authors: str
    venue: str | None
    year: int | None


def parse_paper(f: Fields) -> Paper:
    """The ``paper`` object of the entry ``f`` (``title``, ``authors``, nullable ``venue`` and ``year``).

    Raises:
        ManifestError: missing, mistyped or unknown fields, naming the entry.
    """
    p = f.sub("paper")
    paper = Paper(p.get("title", str), p.get("authors", str), p.get("venue", str, nullable=True),
                  p.get("year", int, nullable=True))  # fmt: skip
    p.done()
    return paper


_CACHE: dict[tuple[str, str, int, int], Any] = {}


def read_manifest(path: Path, what: str, parse: Callable[[Any, str, Path], T]) -> T:
    """``parse(data, file name, path)`` of a JSON manifest file, cached per file version.

    ``what`` names the manifest in errors ("weights manifest").

    Raises:
        ManifestError: unreadable file, invalid JSON, or what ``parse`` refuses.
    """
    try:
        st = path.stat()
        key = (what, str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key in _CACHE:
            return _CACHE[key]
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ManifestError(f"cannot read the {what} {path}: {err.strerror or err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path.name}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from err
    value = parse(data, path.name, path)
    _CACHE[key] = value
    return value
