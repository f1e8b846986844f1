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
