"""The typed exceptions of mattecli, all in one place.

Library code raises these and never prints or exits. Each carries ``message`` (one line) and an
optional ``hint`` (how to fix it); the CLI prints them as one red ``error:`` line and a dim
``hint:`` line and exits with the family's code (``mattecli.cli.common.EXIT_CODES``). Every family
also inherits a builtin that Python callers already catch (``ValueError``, ``OSError``,
``RuntimeError``).
"""

from __future__ import annotations

__all__ = [
    "MatteCliError",
    "UsageError",
    "UnknownMethodError",
    "BadOptionError",
    "NoInputsError",
    "InputError",
    "ImageReadError",
    "ImageTooLargeError",
    "TrimapError",
    "OutputError",
    "WeightsError",
    "WeightsNotCachedError",
    "WeightsUnavailableError",
    "WeightsCacheError",
    "ChecksumMismatchError",
    "CheckpointMismatchError",
    "UnknownCheckpointError",
    "UnsafeCheckpointError",
    "ManifestError",
    "DatasetError",
    "DeviceError",
]


class MatteCliError(Exception):
    """Root of every error mattecli raises on purpose.

    ``hint`` is an optional second line telling the user how to fix it.
    """

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


# --- usage: the command line or the call itself is wrong; nothing was processed ---
class UsageError(MatteCliError, ValueError):
    """Wrong options or arguments."""


class UnknownMethodError(UsageError):
    """A matting method name that is not in the registry."""


class BadOptionError(UsageError):
    """An option value that cannot work (e.g. a bad colour, ``--trimap`` folder missing)."""


class NoInputsError(UsageError):
    """The inputs named no image at all (empty folder, glob matching nothing)."""


# --- input: one file is bad; a folder run reports it and goes on ---
class InputError(MatteCliError, ValueError):
    """A bad input file."""


class ImageReadError(InputError):
    """A file that cannot be decoded as an image."""


class ImageTooLargeError(InputError):
    """An image above the pixel limit (decompression-bomb guard)."""


class TrimapError(InputError):
    """A trimap that is missing, of the wrong size, or has no foreground/background."""


class OutputError(MatteCliError, OSError):
    """An output that cannot be written (read-only folder, disk full, name collision)."""


# --- weights ---
class WeightsError(MatteCliError, OSError):
    """Anything wrong with model weights."""


class WeightsNotCachedError(WeightsError):
    """Weights are not in the cache and cannot be downloaded now (offline / unreachable)."""


class WeightsUnavailableError(WeightsError):
    """Weights are not published where the manifest says (or not published at all)."""


class WeightsCacheError(WeightsError):
    """The weights cache cannot be written (unusable ``HF_HOME``, disk full); nothing half-written is kept."""


class ChecksumMismatchError(WeightsError):
    """A weights file whose sha256 differs from the manifest; it is never loaded."""


class CheckpointMismatchError(WeightsError):
    """A checkpoint whose keys or shapes do not match the module."""


class UnknownCheckpointError(WeightsError):
    """A checkpoint file whose format or variant cannot be recognised."""


class UnsafeCheckpointError(WeightsError):
    """A pickle that tries to load anything beyond tensors and plain containers."""


class ManifestError(WeightsError):
    """``weights_manifest.json`` is malformed."""


# --- datasets ---
class DatasetError(MatteCliError, ValueError):
    """A dataset folder with a wrong or incomplete layout."""


# --- device ---
class DeviceError(MatteCliError, RuntimeError):
    """A requested device that is absent, or out of memory after every fallback."""
