"""Memory plans from declared figures: the same plan on every machine, whatever is free; ``--max-memory`` in
every strategy (reduced global passes, tiles, refusals naming the least cap that works); CUDA-only
out-of-memory fallbacks; full-size steps in bands equal to the unbanded ones."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mattecli.errors import BadOptionError
from mattecli.methods.aim.processor import hybrid_fuse, resize_zero_border, upsampled_alpha, upsampled_trimap
from mattecli.runtime import memory
from mattecli.runtime.executor import Executor, TilePolicy
from mattecli.runtime.memory import PLAN_MARGIN, Budget, Footprint, MemoryPlan, format_memory, resolve_budget


@pytest.mark.parametrize("small,size", [((17, 30), (203, 255)), ((10, 10), (10, 10)), ((33, 47), (531, 757))])
@pytest.mark.parametrize("band", [1, 7, 64, 10_000])
def test_banded_upsampling_and_fusion_equal_the_full_size_ones(small, size, band):
    torch.manual_seed(0)
    trimap_small = torch.randint(0, 3, (1, 1, *small)).float() / 2.0
    focus = torch.rand(1, 1, *small)
    trimap_up = resize_zero_border(trimap_small, size)[0, 0].numpy()
    focus_up = resize_zero_border(focus, size)[0, 0].numpy()
    expected = np.full(size, 128, np.uint8)
    expected[np.abs(trimap_up) <= 1e-4] = 0
    expected[np.abs(trimap_up - 1.0) <= 1e-4] = 255
    predicted = upsampled_trimap(trimap_small, size, band=band)
    assert predicted.dtype == np.uint8 and (predicted == expected).all()
    fused = upsampled_alpha(focus, size, predicted, band=band)
    assert fused.dtype == np.float32 and fused.tobytes() == hybrid_fuse(trimap_up, focus_up).tobytes()
    assert upsampled_alpha(focus, size, band=band).tobytes() == focus_up.tobytes()
    rows = resize_zero_border(focus, size, rows=(3, 9))
    assert rows.numpy().tobytes() == resize_zero_border(focus, size)[:, :, 3:9].numpy().tobytes()


MB = 1 << 20
FP = Footprint(fixed=100 * MB, image=10.0, passes={"net": 1000.0, "ctx": 2000.0})


def _executor(cap: int | None, strategy: str = "auto", **tiles) -> Executor:
    budget = Budget(cap, "--max-memory") if cap is not None else Budget(memory.DEFAULT_BUDGET, "default")
    policy = TilePolicy(stride=8, halo=8, blend=8, **tiles)
    return Executor("cpu", strategy, policy, MemoryPlan(FP, budget))


def _cap_for(pixels: int, per: float, image_pixels: int) -> int:
    """The --max-memory under which ``pixels`` px of a ``per`` B/px pass just fit on that image."""
    return int(FP.fixed + FP.image * image_pixels + per * pixels / PLAN_MARGIN) + 1


def test_the_default_budget_is_declared_not_read_from_free_memory(monkeypatch):
    # whatever is free, a machine of 16 GB or more plans for the declared default
    monkeypatch.setattr(memory, "machine_memory", lambda *a, **k: 24 << 30)
    assert resolve_budget(None) == Budget(memory.DEFAULT_BUDGET, "default")
    assert resolve_budget(3 << 30) == Budget(3 << 30, "--max-memory") and resolve_budget(3 << 30).capped
    # a smaller machine (a fixed property, not a reading of what is free): lowered once, with a note
    monkeypatch.setattr(memory, "machine_memory", lambda *a, **k: 8 << 30)
    small = resolve_budget(None)
    assert small.source == "machine" and small.bytes == int(8 * memory.MACHINE_SHARE * 4) * (256 << 20)
    assert "has 8G of memory" in small.note and "--max-memory" in small.note
    # free memory is never read: the plan's inputs are the options and the machine's size
    import mattecli.runtime.memory as module

    assert not hasattr(module, "memory_in_use") and "MemAvailable" not in open(module.__file__).read()


def test_machine_memory_is_the_total_or_a_smaller_container_limit(monkeypatch):
    total = memory.machine_memory()
    assert total is None or total > 256 * MB
    monkeypatch.setattr(memory, "_cgroup_limit", lambda: 2 << 30)
    assert memory.machine_memory() == min(2 << 30, total or 2 << 30)


def test_auto_runs_whole_when_the_declared_figures_fit_else_tiles_and_records_it():
    ex = _executor(_cap_for(64 * 64, 1000.0, 64 * 64))
    ex.begin(64 * 64)
    assert ex.run("net", whole=lambda: "whole", tiled=lambda: "tiled", pixels=64 * 64) == "whole"
    assert ex.record()["strategy"] == "whole" and ex.record()["fallback"] is None
    ex.begin(64 * 65)  # one row more: the same cap no longer holds the whole pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto choosing tiles is a plan, not a fallback: no warning
        assert ex.run("net", whole=lambda: "whole", tiled=lambda: "tiled", pixels=64 * 65) == "tiled"
    assert ex.record()["strategy"] == "tiled" and ex.record()["fallback"] is None


@pytest.mark.parametrize("mode", ["whole", "official"])
def test_a_pass_the_cap_cannot_hold_runs_on_tiles_with_a_recorded_warning(mode):
    ex = _executor(_cap_for(1000, 1000.0, 10_000))
    ex.begin(10_000)
    with pytest.warns(RuntimeWarning, match=r"needs about .*, more than --max-memory .*: computed on tiles"):
        assert ex.run("net", whole=lambda: "whole", tiled=lambda: "tiled", pixels=10_000, mode=mode) == "tiled"
    assert "computed on tiles" in ex.record()["fallback"]
    # without --max-memory an asked-for whole pass runs whole; the method's own passes follow the plan
    ex = _executor(None)
    ex.begin(10_000)
    assert ex.run("net", whole=lambda: "whole", tiled=lambda: "tiled", pixels=10**9, mode="whole") == "whole"
    with pytest.warns(RuntimeWarning, match="more than the plan's 10G"):
        assert ex.run("net", whole=lambda: "whole", tiled=lambda: "tiled", pixels=10**9, mode="official") == "tiled"


def test_a_global_pass_that_does_not_fit_runs_smaller_with_a_warning():
    ex = _executor(_cap_for(32 * 64, 2000.0, 1000))
    ex.begin(1000)
    sizes = []
    with pytest.warns(RuntimeWarning, match="does not fit --max-memory .*: run at 64x32"):
        out = ex.run_global("ctx", lambda s: sizes.append(s) or s, (128, 256), 32, "test pass")
    assert out == (32, 64) and sizes == [(32, 64)] and ex.record()["passes"] == {"ctx": [32, 64]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        roomy = _executor(1 << 40)
        roomy.begin(1000)
        assert roomy.run_global("ctx", lambda s: s, (128, 256), 32, "test pass") == (128, 256)


def test_tiles_are_sized_from_the_figures_and_recorded():
    x = torch.rand(1, 3, 200, 300)
    ex = _executor(_cap_for(64 * 64, 1000.0, 200 * 300))
    ex.begin(200 * 300)
    out = ex.tiles("net", lambda b: b[:, :1] * 2, x, what="test pass")
    assert torch.allclose(out, x[:, :1] * 2)
    rec = ex.record()
    th, tw = rec["tile"]
    assert th * tw * rec["batch"] <= 64 * 64 and rec["tiles"] >= (200 * 300) // (64 * 64)
    # the same image and cap plan the same tiles, whatever else the process holds
    held = bytearray(256 * MB)
    again = _executor(_cap_for(64 * 64, 1000.0, 200 * 300))
    again.begin(200 * 300)
    assert again.tiles("net", lambda b: b[:, :1] * 2, x).equal(out) and again.record() == rec
    del held


def test_a_cap_that_cannot_hold_the_smallest_tile_or_pass_is_a_usage_error_naming_the_least():
    ex = _executor(FP.fixed)  # nothing left beside the method itself
    ex.begin(100 * 100)
    with pytest.raises(BadOptionError, match=r"--max-memory .* cannot hold .* need about (\S+)\)") as err:
        ex.tiles("net", lambda b: b[:, :1], torch.rand(1, 3, 100, 100))
    least = err.value.hint.split()[2]
    assert err.value.hint.startswith("give --max-memory ") and memory.parse_memory(least) > FP.fixed
    ok = _executor(memory.parse_memory(least))
    ok.begin(100 * 100)
    ok.tiles("net", lambda b: b[:, :1], torch.rand(1, 3, 100, 100))  # the named cap works
    with pytest.raises(BadOptionError, match="cannot hold the test pass"):
        ex.run_global("ctx", lambda s: s, (64, 64), 32, "test pass")


def test_only_cuda_out_of_memory_errors_fall_back_the_cpu_ones_propagate():
    def oom():
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    cpu = Executor("cpu", "auto", TilePolicy(stride=8, halo=8))
    cpu.begin(100)
    with pytest.raises(RuntimeError, match="out of memory"):
        cpu.run("net", whole=oom, tiled=lambda: "tiled", pixels=100)
    cuda = Executor(torch.device("cuda"), "auto", TilePolicy(stride=8, halo=8))  # constructing needs no GPU
    cuda.begin(100)
    with pytest.warns(RuntimeWarning, match="ran out of GPU memory: computed on tiles"):
        assert cuda.run("net", whole=oom, tiled=lambda: "tiled", pixels=100) == "tiled"
    assert "GPU memory" in cuda.record()["fallback"]
    with pytest.raises(ValueError, match="boom"):  # other errors are never swallowed
        cuda.run("net", whole=lambda: (_ for _ in ()).throw(ValueError("boom")), tiled=lambda: "t", pixels=1)


def test_format_memory_rounds_up_to_what_a_user_types():
    assert format_memory(3 << 30) == "3G" and format_memory((3 << 30) + 1) == "3.1G"
    assert format_memory(640 * MB) == "640M" and memory.parse_memory(format_memory(123_456_789)) >= 123_456_789


def test_classical_whole_under_a_too_small_cap_is_the_tiled_solve():
    from mattecli.methods.classical import processor as classical
    from mattecli.methods.classical.spec import CF

    rng = np.random.default_rng(0)
    h, w = 96, 128
    image = rng.random((h, w, 3)).astype(np.float32)
    trimap = np.zeros((h, w), np.uint8)
    trimap[:, w // 2 :] = 255
    trimap[:, w // 2 - 16 : w // 2 + 16] = 128
    tiled = classical.estimate_alpha(image, trimap, "cf", strategy="tiled", tile_size=40, tile_overlap=4)
    fp = CF.footprint
    tile = classical.whole_solve_bytes("cf", 40 * 40, 40 * 40)
    tight = int(fp.fixed + fp.image * h * w + tile / PLAN_MARGIN) + 1  # a tile fits, the whole solve does not
    with pytest.warns(RuntimeWarning, match="more than --max-memory"):
        got = classical.estimate_alpha(
            image, trimap, "cf", strategy="whole", tile_size=40, tile_overlap=4, max_memory=tight
        )
    assert got.tobytes() == tiled.tobytes()
    whole = classical.estimate_alpha(image, trimap, "cf", strategy="whole", max_memory=2 << 30)
    assert whole.tobytes() == classical.estimate_alpha(image, trimap, "cf", strategy="whole").tobytes()


def test_the_cli_refuses_an_impossible_cap_before_any_image_and_records_what_ran(runner, tmp_path):
    from conftest import EXAMPLES, invoke

    out = tmp_path / "out"
    args = ["matte", "-m", "cf", EXAMPLES / "images", out, "--trimap", EXAMPLES / "trimaps"]
    refused = invoke(runner, [*args, "--max-memory", "1K"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    line = " ".join(refused.stderr.split())
    assert "--max-memory 1K cannot hold this run" in line and "give --max-memory" in line
    assert not out.exists() or not any(out.iterdir())
    import json

    done = invoke(runner, [*args, "--json", "--strategy", "tiled", "--tile-size", "288"])
    assert done.exit_code == 0, done.output
    rows = [json.loads(x) for x in done.stdout.splitlines()]
    assert [r["strategy"] for r in rows] == ["tiled", "tiled"] and all(r["tile"] == [288, 288] for r in rows)
    assert all(r["fallback"] is None and r["budget"]["source"] in ("default", "machine") for r in rows)
    capped = invoke(runner, [*args, "--json", "--overwrite", "--max-memory", "64G"])
    rows = [json.loads(x) for x in capped.stdout.splitlines()]
    assert [r["strategy"] for r in rows] == ["whole", "whole"] and rows[0]["budget"]["source"] == "--max-memory"
