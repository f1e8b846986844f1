"""Reading checkpoints safely and fitting them to a method's network.

* :func:`register_architecture` records a variant's :class:`Architecture` (network builder,
  official key mapping, optional detector); :mod:`mattecli.methods` registers every declared
  variant's when it is imported, and this package imports no method.
* :func:`read_checkpoint` reads PyTorch (``torch.load(weights_only=True)`` plus a short allowlist
  of numpy metadata types), safetensors and MindSpore files; nothing in a file can run code.
* :func:`convert_file` unwraps ``state_dict``/``model`` containers, strips ``module.``, remaps
  official keys and checks every key and shape against the module (:func:`conform`).
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mattecli.errors import (
    CheckpointMismatchError,
    UnknownCheckpointError,
    UnsafeCheckpointError,
    WeightsUnavailableError,
)
from mattecli.units import format_bytes
from mattecli.weights.manifest import CheckpointEntry, get_entry

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "Architecture",
    "register_architecture",
    "get_architecture",
    "read_checkpoint",
    "zip_bomb_reason",
    "checkpoint_limit",
    "MAX_INFLATION_RATIO",
    "MAX_CHECKPOINT_BYTES",
    "META",
    "Layout",
    "layout_of",
    "conform",
    "convert_file",
    "load_into",
]

#: Prefix of our keys in safetensors metadata.
META = "mattecli."


# ----------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class Architecture:
    """How to build the module for a variant and read the authors' checkpoints into it.

    Attributes:
        variant: the manifest variant this module serves.
        build: ``build() -> nn.Module`` with the parameter names of our converted files.
        remap: ``remap(state_dict) -> state_dict`` from the official layout (after unwrapping and
            ``module.`` stripping) to ours; ``None`` when the official names are already ours.
        detect: ``detect(state_dict) -> bool``: whether a state dict is in the official layout;
            used to refuse (and name) a wrong file before remapping it.
    """

    variant: str
    build: Callable[[], nn.Module]
    remap: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    detect: Callable[[Mapping[str, torch.Tensor]], bool] | None = None


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    variant: str,
    *,
    build: Callable[[], nn.Module],
    remap: Callable[[dict], dict] | None = None,
    detect: Callable[[Mapping], bool] | None = None,
    replace: bool = False,
) -> Architecture:
    """Record ``variant``'s network (and its official key mapping) for import and loading; returns it.

    :mod:`mattecli.methods` calls it for every variant its specs declare, with ``replace=True``.

    Raises:
        ValueError: ``variant`` is registered already and ``replace`` is false.
    """
    if variant in _ARCHITECTURES and not replace:
        raise ValueError(f"an architecture for {variant!r} is already registered")
    arch = Architecture(variant, build, remap, detect)
    _ARCHITECTURES[variant] = arch
    return arch


def get_architecture(variant: str) -> Architecture:
    """The architecture registered for ``variant`` (``mattecli.methods`` registers every method's when
    it is imported; this package imports no method), or :class:`WeightsUnavailableError`.
    """
    try:
        return _ARCHITECTURES[variant]
    except KeyError:
        import sys

        method = get_entry(variant).method
        if "mattecli.methods" not in sys.modules:  # a Python caller of mattecli.weights alone
            raise WeightsUnavailableError(
                f"no network is registered for {variant}: `import mattecli.methods` first (it gives "
                "mattecli.weights every method's networks)"
            ) from None
        raise WeightsUnavailableError(
            f"method {method} is not implemented yet, so weights for {variant} cannot be imported or loaded",
            hint="`mattecli weights list` shows which methods are available",
        ) from None


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


def expected_bytes(layout: Layout) -> int:
    """The bytes of a module's tensors (parameters and buffers, each once): what its checkpoint holds."""
    total = 0
    for key in layout.canonical:
        count = 1
        for d in layout.shapes[key]:
            count *= d
        total += count * layout.dtypes[key].itemsize
    return total


def checkpoint_limit(layout: Layout | None = None, entry: CheckpointEntry | None = None) -> int:
    """The most a checkpoint archive may inflate to.

    Twice the manifest's size of the official file plus 64 MiB where the manifest knows it; else four
    times the module's tensors (room for optimizer state and an EMA copy beside the weights) plus
    256 MiB; else :data:`MAX_CHECKPOINT_BYTES`.
    """
    official = entry.official_file if entry is not None else None
    if official is not None and official.size:
        return 2 * official.size + (64 << 20)
    if layout is not None:
        return 4 * expected_bytes(layout) + (256 << 20)
    return MAX_CHECKPOINT_BYTES


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
    :data:`MAX_CHECKPOINT_BYTES`; :func:`convert_file` passes :func:`checkpoint_limit` of the
    module), none by more than :data:`MAX_INFLATION_RATIO` times, and each compressed one must hold
    what it declares (see :func:`zip_bomb_reason`).

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


# ----------------------------------------------------------------------------- state dicts
_WRAPPERS = ("state_dict", "model", "model_state_dict")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside ``{'state_dict': ...}`` / ``{'model': ...}`` wrappers, ``module.``
    prefixes stripped."""
    import torch

    for _ in range(4):
        if not isinstance(obj, Mapping):
            raise UnknownCheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            keys = ", ".join(map(str, list(obj)[:8]))
            raise UnknownCheckpointError(f"{path} has no state dict (top-level keys: {keys or 'none'})")
        obj = obj[inner]
    else:
        raise UnknownCheckpointError(f"{path}: state dict nested too deeply")
    sd = {str(k): v for k, v in obj.items()}
    while sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


@dataclass(frozen=True)
class Layout:
    """What a module expects: shape and dtype per key, and alias key -> canonical key."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, torch.dtype]
    aliases: dict[str, str]

    @property
    def canonical(self) -> list[str]:
        return [k for k in self.shapes if k not in self.aliases]


def layout_of(model: nn.Module) -> Layout:
    sd = model.state_dict(keep_vars=True)
    first: dict[int, str] = {}
    aliases = {}
    for key, value in sd.items():
        owner = first.setdefault(id(value), key)
        if owner != key:
            aliases[key] = owner
    return Layout({k: tuple(v.shape) for k, v in sd.items()}, {k: v.dtype for k, v in sd.items()}, aliases)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _listing(label: str, items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"{label} ({len(items)}): {shown}"


def conform(sd: dict[str, torch.Tensor], layout: Layout, variant: str, source: Path) -> dict[str, torch.Tensor]:
    """Check ``sd`` against the module key by key; return it in canonical form (aliases dropped,
    floats cast to the module's dtype, contiguous) or raise :class:`CheckpointMismatchError`."""
    import torch

    sd = dict(sd)
    conflicts: list[str] = []
    for alias, owner in layout.aliases.items():
        if alias not in sd:
            continue
        value = sd.pop(alias)
        if owner not in sd:
            sd[owner] = value
        elif sd[owner].shape != value.shape or not torch.equal(sd[owner], value):
            conflicts.append(f"{alias} != {owner}")
    for key in layout.canonical:  # buffers not saved by very old PyTorch
        if key not in sd and key.endswith("num_batches_tracked"):
            sd[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in layout.canonical if k not in sd]
    unexpected = [k for k in sd if k not in layout.shapes]
    wrong = []
    for key in layout.canonical:
        if key in sd:
            got, want = tuple(sd[key].shape), layout.shapes[key]
            if got != want:
                wrong.append(f"{key} {_fmt_shape(got)} expected {_fmt_shape(want)}")
            elif sd[key].is_floating_point() != layout.dtypes[key].is_floating_point:
                wrong.append(
                    f"{key} dtype {str(sd[key].dtype).removeprefix('torch.')} expected "
                    f"{str(layout.dtypes[key]).removeprefix('torch.')}"
                )
    if missing or unexpected or wrong or conflicts:
        parts = [
            _listing(label, items)
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
                ("aliases that disagree", conflicts),
            )
            if items
        ]
        err = CheckpointMismatchError(
            f"{source.name} does not match the {variant} network: " + "; ".join(parts),
            hint=f"is this a {variant} checkpoint? `mattecli weights list` shows the official files",
        )
        err.missing, err.unexpected, err.wrong_shape, err.conflicts = missing, unexpected, wrong, conflicts
        raise err
    out = {}
    for key in layout.canonical:
        t = sd[key].detach()
        if t.is_floating_point() and t.dtype != layout.dtypes[key]:
            t = t.to(layout.dtypes[key])
        out[key] = t.contiguous()
    return out


@dataclass(frozen=True)
class Converted:
    tensors: dict[str, torch.Tensor]
    source_format: str
    metadata: dict[str, str]
    verbatim: bool  # a safetensors input already in canonical form: its bytes can be kept as they are


def convert_file(path: Path, entry: CheckpointEntry, arch: Architecture, layout: Layout) -> Converted:
    """Any supported file -> canonical tensors for ``entry.variant`` (checked key by key).

    A zip archive larger than the module's tensors could explain is refused before it is inflated
    (:func:`checkpoint_limit`)."""
    fmt, obj, meta = read_checkpoint(path, max_bytes=checkpoint_limit(layout, entry))
    named = meta.get(f"{META}variant")
    if named is not None and named != entry.variant:
        raise CheckpointMismatchError(
            f"{path.name} holds weights for {named}, not {entry.variant}",
            hint=f"import it as {named}, or pick the file made for {entry.variant}",
        )
    sd = _unwrap(obj, path)
    ours = set(sd) <= set(layout.shapes)
    if fmt == "safetensors" and (named or ours):
        official = False  # a converted file
    elif arch.detect is not None:
        official = arch.detect(sd)
        if not official and not ours:
            others = [
                v for v, a in _ARCHITECTURES.items() if v != entry.variant and a.detect is not None and a.detect(sd)
            ]
            raise UnknownCheckpointError(
                f"{path.name} is not an official {entry.variant} checkpoint"
                + (f" (it looks like {', '.join(others)})" if others else ""),
                hint=entry.where_to_get(),
            )
    else:
        official = fmt != "safetensors" or not ours
    if official:
        if arch.remap is not None:
            try:
                sd = arch.remap(sd)
            except KeyError as err:
                raise UnknownCheckpointError(
                    f"{path.name} is not an official {entry.variant} checkpoint (no key {err})",
                    hint=entry.where_to_get(),
                ) from err
    tensors = conform(sd, layout, entry.variant, path)
    verbatim = (
        fmt == "safetensors"
        and named is not None
        and set(obj) == set(tensors)
        and all(obj[k].dtype == tensors[k].dtype for k in tensors)
    )
    return Converted(tensors, fmt, meta, verbatim)


def load_into(model: nn.Module, tensors: dict[str, torch.Tensor], layout: Layout, variant: str, source: Path) -> None:
    full = dict(tensors)
    for alias, owner in layout.aliases.items():
        full[alias] = tensors[owner]
    try:
        model.load_state_dict(full, strict=True)
    except RuntimeError as err:
        raise CheckpointMismatchError(
            f"{source.name} does not load into the {variant} network: {str(err).splitlines()[0]}"
        ) from err
