"""What the weights and datasets downloads share about the Hugging Face Hub client.

:func:`call_hub` runs one ``huggingface_hub`` call and turns every way it can fail into one
:class:`HubFailure` (unreachable, not there, or failed), which the caller words as its own typed
error: the one translation of huggingface_hub's exceptions in mattecli.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

__all__ = ["HubFailure", "call_hub", "hf_offline", "transport_errors"]

T = TypeVar("T")


def transport_errors() -> tuple[type[BaseException], ...]:
    """Network exception bases of whichever HTTP client huggingface_hub uses (httpx2, httpx or requests)."""
    found: list[type[BaseException]] = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def hf_offline() -> bool:
    """``HF_HUB_OFFLINE``, as huggingface_hub reads it (its constant, patched by tests and users)."""
    from huggingface_hub import constants as hf_constants

    return bool(hf_constants.HF_HUB_OFFLINE)


@dataclass(frozen=True)
class HubFailure:
    """How a huggingface_hub call failed.

    ``kind``: ``unreachable`` (not in the cache and the Hub cannot be reached; ``offline`` when
    because of ``HF_HUB_OFFLINE``), ``missing`` (no such repository, revision or file, or a disabled
    repository; ``detail`` is the exception's class name) or ``failed`` (an HTTP, transfer or file
    system error; ``detail`` is the first line of its message, else its class name).
    """

    kind: Literal["unreachable", "missing", "failed"]
    detail: str = ""
    offline: bool = False


def call_hub(call: Callable[[], T], error: Callable[[HubFailure], BaseException]) -> T:
    """``call()``'s result; when it raises one of huggingface_hub's errors (or a network or OS error),
    the exception ``error(failure)`` returns is raised instead, chained to the original.

    Raises:
        whatever ``error`` returns; any other exception of ``call`` as it is.
    """
    from huggingface_hub import errors as hf_errors

    try:
        return call()
    except (hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError) as err:
        offline = isinstance(err, hf_errors.OfflineModeIsEnabled) or hf_offline()
        raise error(HubFailure("unreachable", offline=offline)) from err
    except (
        hf_errors.RepositoryNotFoundError,
        hf_errors.RevisionNotFoundError,
        hf_errors.RemoteEntryNotFoundError,
        hf_errors.DisabledRepoError,
    ) as err:
        raise error(HubFailure("missing", type(err).__name__)) from err
    except (hf_errors.HfHubHTTPError, hf_errors.XetDownloadError, OSError, *transport_errors()) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise error(HubFailure("failed", first)) from err
