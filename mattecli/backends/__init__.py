"""Where a pipeline runs: this process (``local``), one process per local device (``devices``), or a
Ray cluster (``ray``). :func:`matte` picks one from :class:`Backend` so that the CLI only parses
options and renders results.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mattecli.errors import BadOptionError

__all__ = ["Backend", "backend_for", "matte"]


@dataclass(frozen=True)
class Backend:
    """``devices``: several local devices, one worker process each; ``ray``: a Ray cluster
    (``ray_address``, default ``RAY_ADDRESS`` or a local instance); neither: this process."""

    devices: tuple[str, ...] | None = None
    ray: bool = False
    ray_address: str | None = None

    @property
    def name(self) -> str:
        if self.ray:
            return "Ray"
        if self.devices:
            return f"{len(self.devices)} devices"
        return "local"


def backend_for(device: str, *, ray: bool = False, ray_address: str | None = None) -> Backend:
    """The backend a ``--device`` value (a list, ``all``) and ``--ray`` / ``--ray-address`` ask for.

    Raises:
        BadOptionError: ``--ray`` with a device list (Ray places actors itself), or ``--ray-address``
            without ``--ray``.
        DeviceError: ``all`` on a machine without CUDA.
    """
    from mattecli.backends.devices import parse_devices

    devices = parse_devices(device)
    if ray_address is not None and not ray:
        raise BadOptionError("--ray-address needs --ray")
    if ray and devices is not None:
        raise BadOptionError(
            f"--ray and --device {device} do not combine: Ray places one model per actor itself",
            hint="drop the device list (use --device cpu to keep Ray actors off the GPUs)",
        )
    return Backend(tuple(devices) if devices else None, ray, ray_address)


def matte(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    *,
    method: str,
    trimap: Path | None,
    settings,
    backend: Backend | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    stdin=None,
    progress: type | None = None,
) -> tuple[int, Iterator[dict]]:
    """Run the matte pipeline on ``backend``: ``(number of inputs, iterator of per-file results)``.

    ``shard`` (K of N) combines with the local and Ray backends; several devices already split the
    inputs among themselves, so the two are refused together.

    Raises (before any work):
        the errors of :func:`mattecli.pipelines.matte.plan_matte`, WeightsError, BadOptionError.
    """
    backend = backend or Backend()
    common = dict(method=method, trimap=trimap, settings=settings, recursive=recursive, overwrite=overwrite)
    if backend.ray:
        from mattecli.backends.ray import matte_with_ray

        return matte_with_ray(
            inputs, out, address=backend.ray_address, stdin=stdin, shard=shard, progress=progress, **common
        )
    if backend.devices:
        if shard is not None:
            raise BadOptionError("--shard and several --device values do not combine; use one of them")
        from mattecli.backends.devices import matte_on_devices

        return matte_on_devices(inputs, out, list(backend.devices), stdin=stdin, progress=progress, **common)
    from mattecli.backends.local import matte_local

    return matte_local(inputs, out, shard=shard, stdin=stdin, progress=progress, **common)
