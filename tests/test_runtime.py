"""Runtime helpers: device and precision selection, tensors, memory sizes, tile planning."""

from __future__ import annotations

import pytest
import torch

from mattecli.errors import BadOptionError, DeviceError
from mattecli.runtime import device, memory, precision, tensors, tiles


def test_select_device(monkeypatch):
    assert device.select_device("cpu").type == "cpu"
    with pytest.raises(BadOptionError):
        device.select_device("tpu")
    # both answers of torch.cuda, on any machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.select_device("auto").type == "cpu"
    with pytest.raises(DeviceError, match="CUDA is not available"):
        device.select_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.select_device("auto") == torch.device("cuda")
    assert device.select_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match=r"cuda:1 requested but only 1 GPU\(s\) are visible"):
        device.select_device("cuda:1")


def test_autocast_rules():
    cpu = torch.device("cpu")
    with precision.autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with precision.autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")  # and nothing leaks out of the block
    with pytest.raises(BadOptionError, match="fp16 is not supported on the CPU"):
        precision.autocast(cpu, "fp16")
    with pytest.raises(BadOptionError):
        precision.autocast(cpu, "int8")


def test_resize_is_identity_at_same_size():
    x = torch.rand(1, 1, 5, 7)
    assert tensors.resize(x, (5, 7)) is x


@pytest.mark.parametrize(
    "text,value", [("8G", 8 << 30), ("512M", 512 << 20), ("1.5GiB", int(1.5 * (1 << 30))), ("2000", 2000)]
)
def test_parse_memory(text, value):
    assert memory.parse_memory(text) == value
    with pytest.raises(BadOptionError):
        memory.parse_memory("lots")


def test_plan_tiles_respects_budget_and_stride():
    tile, batch = tiles.plan_tiles(100 * 1000 * 1000, 1000.0, stride=32, max_tile=1024)
    assert tile % 32 == 0 and tile * tile * 1000 * batch <= 100e6 and batch >= 1
    small, _ = tiles.plan_tiles(1000, 1000.0, stride=32, max_tile=1024)
    assert small == 32  # never below one stride


