"""Test helpers shared by several test modules (networks with random weights, MindSpore checkpoints)."""

from __future__ import annotations

import numpy as np
import torch

from mattecli.methods.calibration import calibrate  # noqa: F401  (re-exported for the tests)
from mattecli.methods.loading import make_context  # noqa: F401  (re-exported for the tests)


def random_net(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights with non-trivial batch-norm statistics and affine terms, in eval mode."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


_MS_TYPES = {
    np.dtype("float32"): b"Float32",
    np.dtype("float16"): b"Float16",
    np.dtype("int32"): b"Int32",
    np.dtype("int64"): b"Int64",
}


def mindspore_ckpt(tensors: dict[str, np.ndarray], *, packed: bool = False) -> bytes:
    """MindSpore's checkpoint protobuf, written by hand: ``Checkpoint{repeated Value value = 1}``,
    ``Value{string tag = 1; TensorProto tensor = 2}``,
    ``TensorProto{repeated int64 dims = 1; string tensor_type = 2; bytes tensor_content = 3}``
    (``packed`` writes the dims as one packed field, as proto3 encoders may)."""
    out = []
    for name, array in tensors.items():
        array = np.asarray(array)
        if packed:
            dims = _field(1, b"".join(_varint(d) for d in array.shape)) if array.shape else b""
        else:
            dims = b"".join(_field(1, d) for d in array.shape)
        content = array.astype(array.dtype.newbyteorder("<")).tobytes()
        tensor = dims + _field(2, _MS_TYPES[array.dtype]) + _field(3, content)
        out.append(_field(1, _field(1, name.encode()) + _field(2, tensor)))
    return b"".join(out)


def matter(method: str, processor, **options):
    """A ready :class:`~mattecli.methods.base.Matter` around a processor built by hand (a test network):
    the contract every method's results go through (input checks, clipping, clamping)."""
    from mattecli import methods
    from mattecli.methods.base import Matter, MethodOptions, Provenance

    spec = methods.get(method)
    return Matter(spec, processor, Provenance(method), spec.resolve(MethodOptions(device="cpu", **options)))


def read_png16(path) -> np.ndarray:
    """A 16-bit PNG as written by ``--bit-depth 16``, as floats in [0, 1] (fails on an 8-bit file)."""
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16, (path, None if raw is None else raw.dtype)
    return raw.astype(np.float64) / 65535.0


def assert_equals_at_16_bits(path, alpha: np.ndarray) -> None:
    """The 16-bit PNG at ``path`` holds ``alpha``: each pixel within 1/65535 (its rounding is 0.5/65535).

    An 8-bit result scaled to 16 bits (multiples of 257) is off by up to 0.5/255 and fails.
    """
    got = read_png16(path)
    assert got.shape == alpha.shape, (got.shape, alpha.shape)
    err = np.abs(got - alpha.astype(np.float64))
    assert err.max() <= 1 / 65535, f"{path}: max difference {err.max() * 65535:.2f}/65535"


def crops(root, size: tuple[int, int] = (96, 128)):
    """The examples (fluffy, veil) cropped to ``size`` around their transition regions, 8-bit PNGs like the
    originals, with their trimaps: ``(images folder, trimaps folder)`` under ``root``."""
    from conftest import EXAMPLES

    from mattecli import io

    h, w = size
    for name, (y, x) in {"fluffy": (60, 40), "veil": (100, 90)}.items():
        y, x = min(y, 320 - h), min(x, 320 - w)  # the examples are 320x320
        image = io.read_image(EXAMPLES / "images" / f"{name}.png")[y : y + h, x : x + w]
        trimap = io.read_trimap(EXAMPLES / "trimaps" / f"{name}.png")[y : y + h, x : x + w]
        io.write_image(root / "images" / f"{name}.png", image)
        io.atomic_write_bytes(root / "trimaps" / f"{name}.png", io.encode_png(trimap))
    return root / "images", root / "trimaps"


# ----------------------------------------------------------------------------- permissions as an unprivileged user
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def unprivileged_dir(tmp_path):
    """``(folder, prefix)``: a folder an unprivileged user owns, and the command prefix that runs as that
    user. As root (CI), permission bits do not apply, so permission tests run their code in a subprocess
    as ``nobody`` (``setpriv``); otherwise the folder is ``tmp_path`` and the prefix empty. Skips, with
    the reason, when root cannot drop to nobody or nobody cannot read the checkout or its venv."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import pytest
    from conftest import REPO

    if os.geteuid() != 0:
        return tmp_path, []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot test as an unprivileged user")
    probe = subprocess.run(
        [*NOBODY, sys.executable, "-c", "import mattecli.cli"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot import mattecli from {REPO} with {sys.executable}: {probe.stderr[-300:]}")
    folder = Path(tempfile.mkdtemp(prefix="mattecli-nobody-", dir="/tmp"))
    import pwd

    nobody = pwd.getpwnam("nobody")
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    folder.chmod(0o755)
    return folder, NOBODY


def give_to_nobody(path) -> None:
    """``chown -R nobody:nogroup path`` when root (what :func:`unprivileged_dir`'s user then owns)."""
    import os
    import pwd

    if os.geteuid() != 0:
        return
    nobody = pwd.getpwnam("nobody")
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), nobody.pw_uid, nobody.pw_gid)
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
