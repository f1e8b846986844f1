"""Reading checkpoint files safely: PyTorch, safetensors and MindSpore, as data.

* :func:`read_checkpoint` reads a file by its content, not its extension, and returns
  ``(format, object, safetensors metadata)``: PyTorch files through ``torch.load(weights_only=True)``
  plus a short allowlist of numpy metadata types, safetensors and MindSpore ``.ckpt`` files parsed
  as data (MindSpore itself is never imported). Nothing in a file can run code.
* A PyTorch zip checkpoint is checked before ``torch.load`` inflates it (:func:`zip_bomb_reason`):
  its declared total against a limit, each member's inflation ratio against
  :data:`MAX_INFLATION_RATIO`, and each compressed member against what it declares.
* Raises :class:`~mattecli.errors.UnsafeCheckpointError` for a zip bomb or a pickle that refers to
  code, :class:`~mattecli.errors.UnknownCheckpointError` for a file that is not a readable
  checkpoint; nothing else for a bad file.

This module knows nothing of networks: fitting what it reads to a module is
:mod:`mattecli.weights.checkpoints`' business (which imports this one, never the reverse).
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mattecli.errors import UnknownCheckpointError, UnsafeCheckpointError
from mattecli.units import format_bytes

if TYPE_CHECKING:
    import torch

__all__ = [
    "read_checkpoint",
    "zip_bomb_reason",
    "MAX_INFLATION_RATIO",
    "MAX_CHECKPOINT_BYTES",
]


# ----------------------------------------------------------------------------- zip archives
#: ``torch.save`` stores every member of its zip uncompressed, and tensor data compresses little;
#: a member that inflates to more than this many times its compressed size is a decompression bomb.
MAX_INFLATION_RATIO = 100
#: Members up to this size are never refused for their ratio (small text compresses well).
RATIO_FLOOR_BYTES = 1 << 20
#: When the expected size is unknown: the most a checkpoint archive may inflate to.
MAX_CHECKPOINT_BYTES = 8 << 30
_INFLATE_CHUNK = 1 << 20


def zip_bomb_reason(zf: zipfile.ZipFile, *, max_bytes: int, members: list[zipfile.ZipInfo] | None = None) -> str | None:
    """Why inflating ``members`` of ``zf`` (default: all) is refused, in words, or None when it is safe.

    Checked before anything is inflated for use, on the sizes the archive declares: their total
    against ``max_bytes``, and each compressed member's ratio against :data:`MAX_INFLATION_RATIO`.
    Then each compressed member is inflated as a stream (1 MiB at a time, never kept) to check that
    it holds what it declares: Python's reader stops at the declared size, so a directory that lies
    (a small size for a huge stream) ends in a checksum error here, not in gigabytes in memory.
    """
    infos = [i for i in (members if members is not None else zf.infolist()) if not i.is_dir()]
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        big = max(infos, key=lambda i: i.file_size)
        return (
            f"its members would inflate to {format_bytes(total)} ({big.filename}: "
            f"{format_bytes(big.file_size)}), more than the {format_bytes(max_bytes)} it may hold"
        )
    for info in infos:
        if info.compress_type == zipfile.ZIP_STORED:
            continue
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_INFLATION_RATIO * max(info.compress_size, 1):
            return (
                f"{info.filename} would inflate from {format_bytes(info.compress_size)} to "
                f"{format_bytes(info.file_size)} ({info.file_size // max(info.compress_size, 1)}:1), "
                "a decompression bomb"
            )
    for info in infos:
        if info.compress_type == zipfile.ZIP_STORED:
            continue
        inflated = 0
        try:
            with zf.open(info) as fh:
                while chunk := fh.read(_INFLATE_CHUNK):
                    inflated += len(chunk)
                    if inflated > info.file_size:
                        break
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as err:
            return f"{info.filename} does not inflate to the {info.file_size} bytes it declares ({err})"
        if inflated != info.file_size:
            return f"{info.filename} inflates to {inflated} bytes, not the {info.file_size} it declares"
    return None


def _refuse_zip_bomb(path: Path, max_bytes: int) -> None:
    """Refuse a PyTorch zip checkpoint whose members would inflate beyond ``max_bytes`` or by an
    implausible ratio (see :func:`zip_bomb_reason`), before ``torch.load`` inflates any of them."""
    try:
        with zipfile.ZipFile(path) as zf:
            reason = zip_bomb_reason(zf, max_bytes=max_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
        raise UnknownCheckpointError(f"{path} is a damaged zip file ({err})") from err
    if reason is not None:
        raise UnsafeCheckpointError(
            f"{path} is refused unread: {reason}",
            hint="a checkpoint written by torch.save is never compressed; get the original file again",
        )


# ----------------------------------------------------------------------------- reading files
#: Non-tensor globals admitted in official pickles (numpy scalars/arrays kept as metadata,
#: e.g. a ``best_sad`` saved as ``numpy.float64``): data constructors only, never callables
#: that run commands or import code.
def _extra_safe_globals(names: list[str]) -> list | None:
    import numpy as np

    table: dict[str, Any] = {}
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[f"{prefix}.scalar"] = multiarray.scalar
        table[f"{prefix}._reconstruct"] = multiarray._reconstruct
    table["numpy.ndarray"] = np.ndarray
    table["numpy.dtype"] = np.dtype
    out = []
    for name in names:
        obj = table.get(name)
        if obj is None and name.startswith("numpy.dtypes.") and name.endswith("DType"):
            obj = getattr(np.dtypes, name.rsplit(".", 1)[1], None)
        if obj is None:
            return None
        out.append((obj, name))
    # numpy dtypes are rebuilt as instances of these classes (numpy >= 1.25), which the unpickler
    # checks without ever naming them as globals
    out += [cls for name, cls in vars(np.dtypes).items() if name.endswith("DType") and isinstance(cls, type)]
    return out


_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL ([\w.]+)")


def _pickle_globals(path: Path) -> list[str]:
    """The ``module.name`` globals a raw pickle file refers to, read from its opcodes without
    running it (``GLOBAL`` names its target; ``STACK_GLOBAL`` takes the two strings pushed last)."""
    import pickletools

    names: list[str] = []
    strings: list[str] = []
    try:
        with path.open("rb") as fh:
            for op, arg, _pos in pickletools.genops(fh):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str) and "UNICODE" in op.name:
                    strings.append(arg)
                if op.name == "STOP":
                    break
    except Exception:  # noqa: BLE001 - a damaged pickle: report what was read so far
        pass
    return names


#: The number ``torch.save`` pickles first in its legacy (non-zip) format.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _is_legacy_torch(path: Path) -> bool:
    """Whether a non-zip file starts like ``torch.save(..., _use_new_zipfile_serialization=False)``."""
    import pickletools

    try:
        with path.open("rb") as fh:
            for op, arg, _pos in pickletools.genops(fh):
                if op.name == "PROTO":
                    continue
                return arg == _TORCH_LEGACY_MAGIC
    except Exception:  # noqa: BLE001 - not a pickle at all
        return False
    return False


def _quiet_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU without torch's warnings on stderr (e.g. "Detected
    pickle protocol 4"); ``MATTECLI_DEBUG=1`` shows them."""
    import warnings

    import torch

    from mattecli import constants

    with warnings.catch_warnings():
        if not constants.MATTECLI_DEBUG:
            warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU; a few numpy metadata types are admitted on retry.

    A pickle that names any other global (``os.system``, an arbitrary class) raises
    :class:`UnsafeCheckpointError`; nothing from it is executed.
    """
    import pickle

    import torch

    try:
        return _quiet_load(path)
    except pickle.UnpicklingError as err:
        names: list[str] = []
        is_zip = zipfile.is_zipfile(path)
        if is_zip:
            try:
                names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
            except Exception:  # noqa: BLE001 - best effort; the message below is the fallback
                names = []
        if not is_zip and not _is_legacy_torch(path):  # a raw pickle: torch.save never wrote it
            seen = sorted(set(_pickle_globals(path)))
            refers = f" (it refers to {', '.join(seen[:4])})" if seen else ""
            raise UnsafeCheckpointError(
                f"{path} is a pickle that is not a plain checkpoint{refers}; mattecli never unpickles code",
                hint="re-save its tensors with torch.save(state_dict, ...) or as .safetensors",
            ) from err
        if not names:
            names = _GLOBAL_IN_MESSAGE.findall(str(err))
        if not names:  # not a safety matter: a damaged or foreign pickle
            raise UnknownCheckpointError(f"{path} is not a readable PyTorch checkpoint ({_reason(err)})") from err
        allowed = _extra_safe_globals(names)
        if allowed is None:
            blocked = ", ".join(sorted(set(names))) or "an unsupported object"
            raise UnsafeCheckpointError(
                f"{path} refers to {blocked}, which mattecli will not load: only tensors and plain "
                f"containers are allowed in a checkpoint (mattecli never unpickles code)",
                hint="if you trust this file, re-save its state dict with torch.save(model.state_dict(), ...)",
            ) from err
    except (RuntimeError, ValueError, EOFError) as err:
        raise UnknownCheckpointError(f"{path} is not a readable PyTorch checkpoint ({_reason(err)})") from err
    try:
        with torch.serialization.safe_globals(allowed):
            return _quiet_load(path)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as err:
        raise UnsafeCheckpointError(f"{path} cannot be loaded with the restricted unpickler ({_reason(err)})") from err


def _reason(err: BaseException) -> str:
    """The informative line of a (long, multi-line) torch.load error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error:" in line or "Unsupported global" in line or "Can only build" in line:
            return line.split("WeightsUnpickler error:")[-1].strip() or line
    return lines[0] if lines else type(err).__name__


def _sniff(path: Path) -> str:
    """``torch``, ``safetensors`` or ``mindspore-ckpt`` by content, not by extension."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as err:
        raise UnknownCheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as err:
            raise UnknownCheckpointError(f"{path} is a damaged zip file ({err})") from err
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        inner = [n for n in names if n.endswith((".pth", ".pt", ".tar", ".ckpt", ".safetensors"))]
        raise UnknownCheckpointError(
            f"{path} is a zip archive, not a checkpoint" + (f" (it contains {inner[0]})" if inner else ""),
            hint="unzip it and import the checkpoint file inside",
        )
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":
        return "torch"
    if head[:1] == b"\x0a":
        return "mindspore-ckpt"
    raise UnknownCheckpointError(f"{path} is not a PyTorch, safetensors or MindSpore checkpoint")


_MS_DTYPES = {
    "Float16": "float16",
    "Float32": "float32",
    "Float64": "float64",
    "BFloat16": "bfloat16",
    "Int8": "int8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "UInt8": "uint8",
    "Bool": "bool",
}


def _read_mindspore(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a MindSpore ``.ckpt`` (protobuf ``Checkpoint``: repeated ``value`` of
    ``tag`` + ``TensorProto{dims, tensor_type, tensor_content}``), parsed without MindSpore."""
    import torch

    data = path.read_bytes()

    def varint(buf: bytes, i: int) -> tuple[int, int]:
        shift = result = 0
        while True:
            if i >= len(buf) or shift > 63:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, i
            shift += 7

    def fields(buf: bytes):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            num, wire = key >> 3, key & 7
            if wire == 0:
                value, i = varint(buf, i)
            elif wire == 2:
                n, i = varint(buf, i)
                if i + n > len(buf):
                    raise ValueError("truncated field")
                value, i = buf[i : i + n], i + n
            elif wire == 1:
                value, i = buf[i : i + 8], i + 8
            elif wire == 5:
                value, i = buf[i : i + 4], i + 4
            else:
                raise ValueError(f"unsupported wire type {wire}")
            yield num, wire, value

    out: dict[str, torch.Tensor] = {}
    try:
        for num, wire, value in fields(data):
            if num != 1 or wire != 2:
                continue
            tag, tensor = None, None
            for vnum, _vw, vval in fields(value):
                if vnum == 1:
                    tag = vval.decode("utf-8")
                elif vnum == 2:
                    tensor = vval
            if tag is None or tensor is None:
                continue
            dims: list[int] = []
            dtype, content = None, b""
            for tnum, twire, tval in fields(tensor):
                if tnum == 1 and twire == 0:
                    dims.append(tval)
                elif tnum == 1 and twire == 2:  # packed dims
                    j = 0
                    while j < len(tval):
                        d, j = varint(tval, j)
                        dims.append(d)
                elif tnum == 2:
                    dtype = tval.decode("utf-8")
                elif tnum == 3:
                    content = tval
            if dtype not in _MS_DTYPES:
                raise ValueError(f"tensor {tag!r} has unsupported type {dtype!r}")
            tdtype = getattr(torch, _MS_DTYPES[dtype])
            flat = torch.empty(0, dtype=tdtype)
            if content:
                flat = torch.frombuffer(bytearray(content), dtype=tdtype)
            out[tag] = flat.reshape(dims).clone()
    except (ValueError, RuntimeError, UnicodeDecodeError) as err:
        raise UnknownCheckpointError(f"{path} is not a readable MindSpore checkpoint ({err})") from err
    if not out:
        raise UnknownCheckpointError(f"{path} holds no tensors (not a MindSpore checkpoint?)")
    return out


def read_checkpoint(path: str | Path, *, max_bytes: int | None = None) -> tuple[str, Any, dict[str, str]]:
    """Read any supported checkpoint safely: ``(format, object, safetensors metadata)``.

    ``torch`` files go through ``torch.load(weights_only=True)``; ``safetensors`` and MindSpore
    files are parsed as data. Nothing in a file can run code. A PyTorch zip checkpoint is checked
    before ``torch.load`` reads it: its members may inflate to ``max_bytes`` at most (default
    :data:`MAX_CHECKPOINT_BYTES`; :func:`~mattecli.weights.checkpoints.convert_file` passes
    :func:`~mattecli.weights.checkpoints.checkpoint_limit` of the module), none by more than
    :data:`MAX_INFLATION_RATIO` times, and each compressed one must hold what it declares (see
    :func:`zip_bomb_reason`).

    Raises:
        UnsafeCheckpointError: a zip bomb (one line naming the file and the member), or a pickle
            that refers to code.
        UnknownCheckpointError: not a readable checkpoint.
    """
    path = Path(path)
    fmt = _sniff(path)
    if fmt == "torch" and zipfile.is_zipfile(path):
        _refuse_zip_bomb(path, MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes)
    if fmt == "safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
            return fmt, load_file(str(path)), meta
        except (SafetensorError, OSError, ValueError) as err:
            raise UnknownCheckpointError(f"{path} is not a readable safetensors file ({err})") from err
    if fmt == "mindspore-ckpt":
        return fmt, _read_mindspore(path), {}
    return fmt, _torch_load(path), {}
