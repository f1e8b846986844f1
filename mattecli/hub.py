"""What the weights and datasets downloads share about the Hugging Face Hub client."""

from __future__ import annotations

__all__ = ["transport_errors", "hf_offline"]


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
