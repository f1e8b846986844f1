"""Backend: this process, with I/O threads beside the model (the default)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["matte_local"]


def matte_local(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    *,
    method: str,
    trimap: Path | None,
    settings,
    recursive: bool = False,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    stdin=None,
    progress: type | None = None,
) -> tuple[int, Iterator[dict]]:
    """:func:`mattecli.pipelines.matte.matte_files` here: ``(number of jobs, iterator of results)``."""
    from mattecli.pipelines.matte import matte_files

    jobs, results = matte_files(
        inputs,
        out,
        method=method,
        trimap=trimap,
        settings=settings,
        recursive=recursive,
        overwrite=overwrite,
        stdin=stdin,
        shard=shard,
        progress=progress,
    )
    return len(jobs), results
