"""One test over every registered method: built with random weights, run on a 97 x 131 image, the result's
contract checked (shape, range, known pixels clamped) and its bytes independent of the memory around it.

Same command, same bytes: a matte is a function of the inputs, the options, the weights and the device
type. The second run of each method happens while another process holds 1 GiB and with the memory
the kernel reports available read as a tenth of what it is: neither may change a byte of the matte,
nor what the result says ran.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import EXAMPLES
from helpers import random_net
from safetensors.torch import save_file

from mattecli import io, methods
from mattecli.methods.base import EngineOptions, MethodOptions
from mattecli.runtime import memory

H, W = 97, 131


def _inputs():
    image = io.read_image(EXAMPLES / "images" / "fluffy.png")[40 : 40 + H, 30 : 30 + W]
    trimap = io.read_trimap(EXAMPLES / "trimaps" / "fluffy.png")[40 : 40 + H, 30 : 30 + W]
    assert (trimap == 0).any() and (trimap == 255).any() and (trimap == 128).any()
    return np.ascontiguousarray(image), np.ascontiguousarray(trimap)


def _weights(tmp_path, variant) -> str:
    torch.manual_seed(sum(map(ord, variant.name)))
    net = random_net(variant.build(), sum(map(ord, variant.name)))
    path = tmp_path / f"{variant.name}.safetensors"
    save_file({k: t.contiguous() for k, t in net.state_dict().items()}, str(path))
    return path


def _options(spec, tmp_path) -> MethodOptions:
    if not spec.variants:
        return MethodOptions(device="cpu")
    companions = {c.name: _weights(tmp_path, c) for c in spec.companions}
    # SIM's patch analysis at its 320 px scale only: its 800 px patches on a 97 px image cost a minute, alike
    engine = EngineOptions(scales="1") if spec.name == "sim" else EngineOptions()
    weights = _weights(tmp_path, spec.variants[0])
    return MethodOptions(device="cpu", weights=weights, companion_weights=companions, engine=engine)


class _Held:
    """Another process holding ``size`` bytes (touched) while the block runs."""

    def __init__(self, size: int):
        code = f"import sys, time\nb = bytearray({size})\nb[::4096] = b'x' * len(b[::4096])\nprint('held', flush=True)\ntime.sleep(600)"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)

    def __enter__(self):
        assert self.proc.stdout.readline().strip() == "held"
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


@pytest.mark.parametrize("name", methods.list_methods())
def test_every_method_keeps_the_contract_and_its_bytes_whatever_memory_is_free(name, tmp_path, monkeypatch):
    spec = methods.get(name)
    image, trimap = _inputs()
    given = trimap if spec.capabilities.takes_trimap else None
    options = _options(spec, tmp_path)
    first = spec.create(options).predict(image, given)
    alpha = first.alpha
    assert alpha.shape == (H, W) and alpha.dtype == np.float32
    assert np.isfinite(alpha).all() and alpha.min() >= 0.0 and alpha.max() <= 1.0
    if given is not None:
        assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 1).all()
    assert first.plan.get("strategy") is not None and first.plan.get("fallback") is None
    # the second run: 1 GiB held elsewhere, and /proc/meminfo read with a tenth of what is available
    # (the free-memory reading the plans once depended on; the machine's total stays what it is)
    real_open = open

    def meminfo_with_little_available(path, *args, **kwargs):
        fh = real_open(path, *args, **kwargs)
        if str(path) != "/proc/meminfo":
            return fh
        import io as _io

        lines = []
        for line in fh.read().splitlines():
            if line.startswith(("MemAvailable:", "MemFree:")):
                key, value, *unit = line.split()
                line = f"{key} {int(value) // 10} {' '.join(unit)}"
            lines.append(line)
        fh.close()
        return _io.StringIO("\n".join(lines) + "\n")

    monkeypatch.setattr(memory, "open", meminfo_with_little_available, raising=False)
    start = time.perf_counter()
    with _Held(1 << 30):
        second = spec.create(options).predict(image, given)
    assert second.alpha.tobytes() == alpha.tobytes(), f"{name}: the matte changed with the memory around it"
    assert second.plan == first.plan
    assert time.perf_counter() - start < 600
