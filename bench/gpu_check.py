"""The GPU check: every method on CUDA against the CPU, fp16 / bf16, the authors' code and a memory cap, in one command.

    .venv/bin/python bench/gpu_check.py                          # on a CUDA machine: at most 7.5 minutes
    .venv/bin/python bench/gpu_check.py --smoke --out /tmp/gc    # the same code paths on the CPU, tiny inputs
    .venv/bin/python bench/gpu_check.py --official-aim AIM/core --official-sim SIM [--official-python PY]

Options: ``--parts parity,precision,folder,max-memory,official-aim,official-sim,compile`` (default: all;
``prepare`` always runs), ``--time-limit SECONDS`` (every part) or ``--time-limit PART=SECONDS`` (repeatable),
``--budget SECONDS`` (the whole run, default 450), ``--out DIR`` (default ``bench/``), ``--methods a,b``
(default: every registered method), ``--coverage all|first|smoke`` (every variant, each method's first, or
``--smoke``'s choice), ``--cap 4G`` (the ``max-memory`` part's cap), ``--work DIR`` (keep the weights, inputs
and alphas; default: a temporary folder, removed at the end), ``--official-aim-python`` /
``--official-sim-python`` (per method, default ``--official-python``, default this Python).

Writes ``DIR/gpu_check.json`` (every number, per part, method and variant, and for everything not run the
reason) and ``DIR/gpu_check.md`` (one short table with its notes), both rewritten after every part so a run
that is cut short still leaves what it measured; prints the table on stdout and progress lines on stderr.

Nothing is downloaded (``MATTECLI_OFFLINE=1``, ``HF_HUB_OFFLINE=1``, a private ``HF_HOME``): every method
and weights variant registered in :mod:`mattecli.methods` (``methods.list_methods()``, each spec's
``variants``: a method registered later is checked without editing this file) runs on random weights built
from its network code (``variant.build()``), its batch norms calibrated on a small scene
(:func:`mattecli.methods.calibration.calibrating`) and, for AIM, its glance classes balanced the way
``bench/aim_official_parity.py`` does, so that alphas are soft and comparisons mean something (timings and
memory are those of the real networks; the alphas themselves are meaningless). Inputs are the synthetic
photo-like scenes of ``bench/speed.py`` (gradients, texture, noise, a soft figure with hair-like strands)
and their trimaps, given to the methods that need one. Methods that run on the CPU only (``spec.devices``:
cf, knn) are listed with that reason and not run.

One process tree: this process plans the parts and runs them in one child process (``--child``), which
appends one JSON line per finished item to an events file. Each part has a time limit (``--time-limit``,
within ``--budget``): a part that overruns it is stopped (the child's process group is killed) and its
unfinished items are recorded as such, then a new child runs the next parts. A CUDA error other than out of
memory ends the child (its CUDA context may be unusable) once its item is recorded, and a new child goes on
with the items left. The parts, in order:

- **prepare**: the inputs, and per variant the random weights (``safetensors``, our parameter names, the
  companions beside them: SIM's patch classifier), calibrated on the check's device.
- **parity**: CUDA fp32 against the CPU (fp32) on the same 320x480 input: max / mean |diff| of the alphas,
  pixels off by more than 1/255, the seconds of a call on each side (the CPU's first, CUDA's second),
  whether two CUDA calls agree, and what ran (``MatteResult.plan``). CUDA "fp32" convolutions run in TF32
  where the GPU has it (PyTorch's default, recorded in the machine block).
- **precision**: fp16 and bf16 autocast (``MethodOptions(precision=...)``) against CUDA fp32 on a 768x1152 input:
  the deviation (max / mean, pixels > 1/255), whether the mean stays within the method's tolerance
  (``spec.precision_tolerance`` where a spec declares one, else the project's equality tolerance, mean
  |diff| <= 1e-3), the speed-up over fp32, and the precision to recommend: the fastest within tolerance
  that is at least 10% faster than fp32, else fp32.
- **folder**: the real pipeline (``mattecli.pipelines.matte.matte_files``, default settings: 2 I/O workers,
  8-bit PNG outputs) on 32 JPEGs of 2 MP, then 8 of 8 MP (each the same scene shifted, so no two are
  alike): images/s over the wall time (the model built beforehand, not counted), images/s after the first
  image (``steady``), busy % = compute time (``MatteRunner.compute``, the device synchronised at its end)
  over wall time, the GPU's own utilisation (NVML, sampled every 50 ms, where ``pynvml`` is installed),
  peak CUDA memory.
- **max-memory**: ``EngineOptions(max_memory=--cap)`` on a 33 MP scene (7680x4320), method defaults: peak
  CUDA memory (``torch.cuda.max_memory_allocated``, weights included; ``max_memory_reserved`` beside it)
  against the cap; it holds when the peak is within 5% of the cap. What ran (tiles, fallbacks) is kept.
- **official-aim** / **official-sim** (only with ``--official-aim DIR`` / ``--official-sim DIR``): the
  authors' AIM HYBRID test and SIM test pipeline against mattecli, both on the device, on a 768x1152 scene,
  the same random weights in the authors' checkpoint formats (made by ``bench/aim_official_parity.py`` /
  ``bench/sim_official_parity.py``, whose helpers are imported): seconds of each side's second call, the
  ratio official / mattecli, and the alphas' differences (SIM's over the unknown region at 16 bits, as
  ``sim_official_parity.py`` measures it). The authors' code runs under ``--official-python`` (default:
  this Python), which needs scikit-image (AIM) or easydict and toml (SIM); without them the part says so.
- **compile**: the folder runs again with ``EngineOptions(compile=True)`` (``--compile``); the first image
  carries the compilation (``first_image_s``), ``steady`` images/s leave it out. Last, as it is the longest.

``--smoke`` runs the same code on the CPU, on tiny inputs (96x128 instead of 320x480 and 768x1152, folders of 2 images
of 96x128 and 1 of 128x192 instead of 32 at 2 MP and 8 at 8 MP, 256x384 with a 2G cap instead of 33 MP
with 4G), CPU on both sides of the comparisons (one build serves both), bf16 autocast on the CPU with one
call instead of a warm-up and a timed one, fp16 skipped (not offered on the CPU) and ``torch.compile``
replaced by the identity (tracing alone takes tens of seconds per network on a CPU); peak memory is then
the process's peak RSS, informative only. To take a minute on two cores rather than half an hour it
(``--coverage smoke``) runs the parts on two variants, the lightest (declared memory) that needs a trimap
and the lightest that does not (the first takes parity, precision and folder, which share its build, the
second compile and max-memory), and only prepares the weights of those that have what else this script
handles per method (companion weights: SIM; a weights adjustment: AIM); every other method, variant and
part is listed as skipped with that reason. ``--smoke --coverage first`` runs every method's first variant
in every part (minutes). ``tests/test_gpu_check.py`` runs ``--smoke``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
GIB = 1 << 30
PARTS = ("prepare", "parity", "precision", "folder", "max-memory", "official-aim", "official-sim", "compile")
#: parts run per method and variant (the official parts are about one method each)
PER_VARIANT = ("parity", "precision", "folder", "max-memory", "compile")
OFFICIAL = {"official-aim": "aim", "official-sim": "sim"}
#: --coverage smoke: parts that share one build of a method (fp32, default options, on the CPU) come first
SMOKE_GROUPS = (("parity", "precision", "folder"), ("compile",), ("max-memory",))
#: seconds per part on the GPU (caps: time a part leaves goes to the next ones); --budget caps the whole run
LIMITS = {
    "prepare": 90,
    "parity": 70,
    "precision": 80,
    "folder": 100,
    "max-memory": 70,
    "official-aim": 60,
    "official-sim": 80,
    "compile": 150,
}
SMOKE_LIMIT = 150
BUDGET = 450
SMOKE_BUDGET = 600
PRECISIONS = ("fp32", "fp16", "bf16")
#: the project's equality tolerance (mean |diff|), used where a spec declares no ``precision_tolerance``
TOLERANCE = 1e-3
#: a cheaper precision is recommended only when it is at least this much faster than fp32
MIN_SPEEDUP = 1.1
#: a capped run holds when its peak is within 5% of the cap
CAP_SLACK = 1.05

#: input sizes (height, width); folder sets: (height, width, images)
SIZES = {
    "gpu": {
        "parity": (320, 480),
        "precision": (768, 1152),
        "calib": (192, 288),
        "folder-2mp": (1152, 1728, 32),
        "folder-8mp": (2112, 3744, 8),
        "big": (4320, 7680),
        "official": (768, 1152),
    },
    "smoke": {
        "parity": (96, 128),
        "precision": (96, 128),
        "calib": (96, 128),
        "folder-2mp": (96, 128, 2),
        "folder-8mp": (128, 192, 1),
        "big": (256, 384),
        "official": (192, 288),
    },
}
FOLDERS = ("folder-2mp", "folder-8mp")


# ============================================================================= shared helpers
def _jsonable(value):
    """``value`` with mappings, tuples and numpy scalars turned into JSON types."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value)


def _last_json(text: str) -> dict:
    """The last line of ``text`` that is a JSON object (a child's answer)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON answer in: {text[-500:]!r}")


def parse_bytes(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"2.5GiB"`` -> bytes."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = {"K": 1 << 10, "M": 1 << 20, "G": GIB, "T": 1 << 40}.get(text[-1:], 1)
    return int(float(text.rstrip("KMGT")) * unit)


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:.2f}G"


def _size(hw) -> str:
    """``(h, w)`` as megapixels, or as ``WxH`` below 0.1 MP (--smoke's inputs)."""
    h, w = hw[:2]
    return f"{h * w / 1e6:.0f} MP" if h * w >= 1e5 else f"{w}x{h}"


# ============================================================================= the plan (parent)
def _item(part: str, method: str, variant: str | None, **extra) -> dict:
    """One unit of work (or a skipped one): ``key`` made of the part, method, variant and ``extra`` values."""
    key = "|".join([part, method, variant or "-", *(str(v) for v in extra.values())])
    return {"key": key, "part": part, "method": method, "variant": variant, **extra}


def _declared_bytes(spec, variant: str | None) -> int:
    """A variant's declared fixed memory (its ``Footprint``), the size proxy of ``--coverage smoke``; 0 if none."""
    v = spec.variant_named(variant) if variant is not None else None
    footprint = (v.footprint if v is not None else None) or spec.footprint
    return int(footprint.fixed) if footprint is not None else 0


def _features(method: str, variant: str | None) -> set[str]:
    """What in this script depends on the method: the trimap given or not, companion weights, an adjustment."""
    from mattecli import methods

    spec = methods.get(method)
    out = {"trimap" if spec.capabilities.needs_trimap else "no trimap"}
    return out | ({"companions"} if spec.companions else set()) | ({"adjusted"} if method in ADJUST else set())


def _smoke_sets(runnable: list[tuple[str, str | None]]) -> tuple[list, list]:
    """``--coverage smoke``: ``(variants that run the parts, variants only prepared)``.

    The parts run on the lightest variant (declared memory) that needs a trimap, then the lightest that does
    not; the prepared ones add, greedily and lightest first on a tie, what else of :func:`_features` the
    others have (companion weights, a weights adjustment), so every path of this script runs once.
    """
    from mattecli import methods

    weight = {mv: _declared_bytes(methods.get(mv[0]), mv[1]) for mv in runnable}
    order = sorted(runnable, key=lambda mv: (weight[mv], runnable.index(mv)))
    parts = []
    for kind in ("trimap", "no trimap"):
        parts += [mv for mv in order if kind in _features(*mv)][:1]
    left = set().union(*(_features(*mv) for mv in runnable)) - set().union(*(_features(*mv) for mv in parts))
    prepared = []
    while left:
        best = max(order, key=lambda mv: (len(_features(*mv) & left), -order.index(mv)))
        prepared.append(best)
        left -= _features(*best)
    return parts, prepared


def make_plan(args) -> tuple[dict[str, list[dict]], list[dict], list[str]]:
    """``(items per part to run, rows for what is not run with the reason, methods listed)``.

    Every registered method (or ``--methods``) is listed: a method whose spec does not run on CUDA gets a
    skipped row per part; with ``--coverage first`` / ``smoke`` the variants and parts left out get rows
    saying so. Items carry ``key`` (unique), ``part``, ``method``, ``variant`` and the part's parameters.
    """
    from mattecli import methods

    names = methods.list_methods()
    if args.methods:
        wanted = args.methods.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise SystemExit(f"unknown method(s) {', '.join(unknown)}; registered: {', '.join(names)}")
        names = [n for n in names if n in wanted]
    parts = [p for p in args.parts if p in PER_VARIANT]
    runnable: list[tuple[str, str | None]] = []
    skipped: list[dict] = []
    for name in names:
        spec = methods.get(name)
        if "cuda" not in spec.devices:
            why = (
                f"skipped: runs on the {', '.join(spec.devices).upper()} only"
                + (" (no weights)" if not spec.variants else "")
                + ": nothing to check on CUDA"
            )
            skipped += [_item(p, name, None) | {"status": why} for p in parts]
            continue
        variants = [v.name for v in spec.variants] or [None]
        keep = variants if args.coverage == "all" else variants[:1]
        for v in variants[len(keep) :]:
            why = f"skipped: --coverage {args.coverage} runs each method's first variant ({keep[0]})"
            skipped += [_item(p, name, v) | {"status": why} for p in parts]
        runnable += [(name, v) for v in keep]
    # which (part, method, variant) run
    assigned: dict[str, list[tuple[str, str | None]]] = {p: list(runnable) for p in parts}
    prepare_only: list[tuple[str, str | None]] = []
    if args.coverage == "smoke" and runnable and parts:
        chosen, prepare_only = _smoke_sets(runnable)
        runs = " and ".join(f"{m} ({v})" for m, v in chosen)
        for mv in runnable:
            if mv not in chosen:
                why = (
                    f"skipped: --smoke runs the parts on {runs}"
                    + (" (this one only has its weights prepared: " + ", ".join(sorted(_features(*mv))) + ")")
                    * (mv in prepare_only)
                    + "; the GPU run covers every method and variant"
                )
                skipped += [_item(p, *mv) | {"status": why} for p in parts]
        groups = [[p for p in group if p in parts] for group in SMOKE_GROUPS]
        groups = [g for g in groups if g]
        others = chosen[1:] or chosen
        assigned = {p: [] for p in parts}
        for i, group in enumerate(groups):  # the first takes the parts that share its fp32 build (and bf16)
            for p in group:
                assigned[p].append(chosen[0] if i == 0 else others[(i - 1) % len(others)])
        for p in parts:
            for mv in chosen:
                if mv not in assigned[p]:
                    why = "skipped: --smoke runs each part on one method; the GPU run covers every method and variant"
                    skipped.append(_item(p, *mv) | {"status": why})
    items: dict[str, list[dict]] = {p: [] for p in args.parts}
    for p in parts:
        for name, v in assigned[p]:
            spec = methods.get(name)
            if p == "precision":
                for prec in PRECISIONS:
                    why = None
                    if prec not in spec.precisions:
                        why = f"skipped: method {name} computes in {', '.join(spec.precisions)} only"
                    elif prec == "fp16" and args.device == "cpu":
                        why = "skipped: fp16 autocast is not offered on the CPU (--smoke runs bf16 there)"
                    row = _item(p, name, v, precision=prec)
                    (skipped.append(row | {"status": why}) if why else items[p].append(row))
            elif p in ("folder", "compile"):
                if p == "compile" and not spec.compiles:
                    skipped += [_item(p, name, v, set=s) | {"status": "skipped: nothing to compile"} for s in FOLDERS]
                    continue
                items[p] += [_item(p, name, v, set=s) for s in FOLDERS]
            else:
                items[p].append(_item(p, name, v))
    for p, method in OFFICIAL.items():
        if p not in args.parts:
            continue
        folder = getattr(args, p.replace("-", "_"))
        if method not in names:
            skipped.append(_item(p, method, None) | {"status": f"skipped: method {method} is not checked in this run"})
        elif folder is None:
            skipped.append(_item(p, method, None) | {"status": f"skipped: --{p} DIR not given (the authors' code)"})
        else:
            spec = methods.get(method)
            items[p].append(_item(p, method, spec.variants[0].name if spec.variants else None, dir=str(folder)))
    if "compile" in items:  # the longest part: each method's first variant first (it may not finish)
        first = {n: (methods.get(n).variants[0].name if methods.get(n).variants else None) for n in names}
        items["compile"].sort(key=lambda i: i["variant"] != first[i["method"]])
    used = {(i["method"], i["variant"]) for p in items for i in items[p] if p in PER_VARIANT}
    needed = {"parity": ["parity"], "precision": ["precision"], "max-memory": ["big"], "folder": list(FOLDERS)}
    needed |= {"compile": list(FOLDERS), "official-aim": ["official"], "official-sim": ["official"]}
    inputs = sorted({name for p in items if items[p] for name in needed.get(p, [])} | ({"calib"} if used else set()))
    items["prepare"] = [_item("prepare", "-", None, what="inputs") | {"inputs": inputs}]
    used |= set(prepare_only)
    items["prepare"] += [_item("prepare", m, v) for m, v in runnable if (m, v) in used and v is not None]
    return items, skipped, names


# ============================================================================= the parent: run parts, watch time
class Parent:
    """Runs the planned parts in child processes within their time limits, keeps every row, writes the outputs."""

    def __init__(self, args, items, skipped, names, work: Path):
        self.args, self.items, self.names, self.work = args, items, names, work
        self.rows: dict[str, dict] = {r["key"]: r for r in skipped}
        self.parts: dict[str, dict] = {}
        self.machine: dict = {}
        self.started = time.time()
        self.deadline = time.monotonic() + args.budget
        self.children = 0
        self.proc: subprocess.Popen | None = None
        self.spent: dict[str, float] = {}  # seconds each part has run, over the children that ran it

    def limit(self, part: str) -> float:
        """``part``'s time limit in seconds (``--time-limit``, else the default of the mode)."""
        return self.args.limits.get(part, SMOKE_LIMIT if self.args.smoke else LIMITS[part])

    def run(self) -> None:
        """Every chosen part, in order, in as few children as time limits and crashes allow; outputs after each."""
        order = [p for p in PARTS if p in self.args.parts]
        for p in order:
            if not self.items.get(p):
                skipped = [r for r in self.rows.values() if r["part"] == p]
                why = skipped[0]["status"] if skipped and p in OFFICIAL else "nothing to run"
                self.parts[p] = {"status": why if why.startswith("skipped") else f"skipped: {why}"}
        todo = [p for p in order if self.items.get(p)]
        while todo:
            if time.monotonic() >= self.deadline - 5:
                for p in todo:
                    self._close(p, f"not run: the --budget of {self.args.budget:g} s was spent", 0.0)
                break
            todo = self._child(todo)
            self.write()

    def _child(self, todo: list[str]) -> list[str]:
        """One child for the parts ``todo``; returns the parts still to run after it ended or was stopped."""
        self.children += 1
        self.events = self.work / f"events_{self.children}.jsonl"  # a killed child may leave half a line
        self.events.unlink(missing_ok=True)
        cfg = {
            "smoke": self.args.smoke,
            "device": self.args.device,
            "work": str(self.work),
            "events": str(self.events),
            "run": todo,
            "items": {p: [i for i in self.items[p] if i["key"] not in self.rows] for p in todo},
            "sizes": SIZES[self.args.sizes],
            "cap": self.args.cap,
            "official_python": {p: getattr(self.args, p.replace("-", "_") + "_python") for p in OFFICIAL},
            "limits": {p: self.limit(p) for p in todo},
        }
        cfg_path = self.work / f"child_{self.children}.json"
        cfg_path.write_text(json.dumps(cfg))
        env = dict(os.environ, **_child_env(self.work))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(cfg_path)],
            stdout=sys.stderr,  # stdout stays the table's
            env=env,
            start_new_session=True,  # its own process group: stopping it stops the authors' code it runs too
        )
        try:
            return self._watch(self.proc, todo)
        finally:
            self.stop()

    def stop(self) -> None:
        """Kill the running child and everything it started (its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def _done(self, part: str) -> int:
        """How many of ``part``'s items have a row."""
        return sum(i["key"] in self.rows for i in self.items.get(part, []))

    def _watch(self, proc: subprocess.Popen, todo: list[str]) -> list[str]:
        """Follow the child's events: rows in, parts closed as they end, the running part stopped at its limit.
        Returns the parts still to run (the current one again when the child died after some progress)."""
        seen = 0
        current, start = todo[0], time.monotonic() - self.spent.get(todo[0], 0.0)
        done_before = self._done(current)
        while True:
            exited = proc.poll() is not None
            for ev in self._read(seen):
                seen = ev.pop("_offset")
                kind = ev.pop("ev")
                if kind == "info":
                    self.machine = ev
                elif kind == "row":
                    self.rows[ev["key"]] = ev
                elif kind == "end":
                    self._close(ev["part"], "done", time.monotonic() - start)
                    self.write()
                    rest = todo[todo.index(ev["part"]) + 1 :]
                    if not rest:
                        proc.wait()
                        return []
                    current, start = rest[0], time.monotonic()
                    done_before = self._done(current)
            rest = todo[todo.index(current) + 1 :]
            if exited:
                code = proc.wait()
                self.spent[current] = time.monotonic() - start
                left = len(self.items[current]) - self._done(current)
                if code and left and self._done(current) > done_before:  # it got on, then died (a CUDA error)
                    self._log(f"part {current}: the child exited with {code}; a new one goes on with {left} items")
                    return [current, *rest]
                self._close(current, f"stopped: the child process exited with {code} (traceback above)", 0.0)
                return rest
            limit = self._limit_now(current, start)
            if time.monotonic() - start > limit:
                self._log(f"part {current}: time limit of {limit:.0f} s reached, stopping it")
                self.stop()
                for ev in self._read(seen):  # rows written just before the stop
                    if ev.get("ev") == "row":
                        self.rows[ev["key"]] = {k: v for k, v in ev.items() if k not in ("ev", "_offset")}
                self._close(current, f"stopped at its time limit of {limit:.0f} s", limit)
                return rest
            time.sleep(0.2)

    def finish(self, why: str) -> None:
        """Parts left without a status when the run is cut short (a signal): theirs and their items' is ``why``."""
        self.stop()
        for p in PARTS:
            if p in self.args.parts and p not in self.parts:
                self._close(p, why, 0.0)

    def _limit_now(self, part: str, start: float) -> float:
        """Seconds part may run from ``start`` (its own limit, within the budget)."""
        return max(0.0, min(self.limit(part), self.deadline - start))

    def _read(self, offset: int) -> list[dict]:
        """Complete event lines after byte ``offset`` (each with ``_offset``: the byte after it)."""
        if not self.events.exists():
            return []
        out = []
        with open(self.events, "rb") as fh:
            fh.seek(offset)
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                out.append(json.loads(line) | {"_offset": offset})
        return out

    def _close(self, part: str, status: str, seconds: float) -> None:
        """Record ``part``'s status; its items without a row get one saying why they have no numbers."""
        missing = [i for i in self.items.get(part, []) if i["key"] not in self.rows]
        done = len(self.items.get(part, [])) - len(missing)
        if status != "done":
            status = f"{status} ({done} of {done + len(missing)} items done)"
            self._log(f"part {part}: {status}")
        for item in missing:
            why = status if status.startswith("not run") else f"not finished: part {part} {status}"
            self.rows[item["key"]] = item | {"status": why}
        self.parts[part] = {"status": status, "seconds": round(seconds, 1), "limit_s": self.limit(part)}

    def _log(self, text: str) -> None:
        print(f"[gpu_check] {text}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ outputs
    def result(self) -> dict:
        """Everything ``gpu_check.json`` holds: the run, the machine, every part's status and every row."""
        order = {k: i for i, k in enumerate(i["key"] for p in PARTS for i in self.items.get(p, []))}
        rows = sorted(self.rows.values(), key=lambda r: (PARTS.index(r["part"]), order.get(r["key"], 1e9)))
        return _jsonable(
            {
                "mode": "smoke" if self.args.smoke else "gpu",
                "device": self.args.device,
                "machine": self.machine,
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
                "seconds": round(time.time() - self.started, 1),
                "budget_s": self.args.budget,
                "command": " ".join(["bench/gpu_check.py", *sys.argv[1:]]),
                "methods": self.names,
                "variants": self.variants(),
                "parts": {p: self.parts.get(p, {"status": "pending"}) for p in PARTS if p in self.args.parts},
                "sizes": SIZES[self.args.sizes],
                "cap": self.args.cap,
                "tolerance_default": TOLERANCE,
                "notes": self.notes(),
                "rows": rows,
            }
        )

    def variants(self) -> dict[str, list[str | None]]:
        """Every listed method's variants, in the spec's order (None for a method without weights)."""
        from mattecli import methods

        return {n: [v.name for v in methods.get(n).variants] or [None] for n in self.names}

    def notes(self) -> list[str]:
        notes = [
            "random weights (calibrated batch norms; AIM's glance classes balanced): timings and memory are the "
            "real networks', alphas are not meaningful; inputs are synthetic photo-like scenes",
            "folders: images/s over the wall time (the method built beforehand); busy = time in MatteRunner.compute "
            "(predict with its pre/post-processing, the device synchronised) over the wall time; (GPU n%) = NVML "
            "utilisation sampled every 50 ms, where pynvml is installed; peak = torch.cuda.max_memory_allocated",
            f"speed-ups are fp32 seconds / fp16 or bf16 seconds of a warm call; 'use' is the fastest precision within "
            f"the tolerance (mean |diff| <= {TOLERANCE:g} unless the spec declares precision_tolerance) and at least "
            f"{MIN_SPEEDUP:g}x faster than fp32; --max-memory holds when the peak is within {CAP_SLACK - 1:.0%} of "
            "the cap",
        ]
        if self.args.smoke:
            notes += [
                "--smoke: CPU on both sides of every comparison, tiny inputs; torch.compile replaced by the identity; "
                "peak memory is the process's peak RSS (informative only)"
            ]
        return notes

    def write(self) -> None:
        """``--out``/gpu_check.json and gpu_check.md, as they stand."""
        out = self.args.out
        out.mkdir(parents=True, exist_ok=True)
        data = self.result()
        (out / "gpu_check.json").write_text(json.dumps(data, indent=1) + "\n")
        (out / "gpu_check.md").write_text(markdown(data))


def _child_env(work: Path) -> dict:
    """Offline, a private Hugging Face cache, the repository importable."""
    return {
        "HF_HOME": str(work / "hf"),
        "HF_HUB_CACHE": str(work / "hf" / "hub"),
        "HF_HUB_OFFLINE": "1",
        "MATTECLI_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(BENCH), os.environ.get("PYTHONPATH")])),
    }


# ============================================================================= the Markdown table
def _status_cell(row: dict | None, notes: dict[str, int]) -> str | None:
    """``None`` for a row with numbers; else a short cell with a footnote number for its reason."""
    if row is None:
        return "-"
    status = row.get("status", "")
    if status == "ok":
        return None
    word = status.split(":", 1)[0].split(" (")[0]
    n = notes.setdefault(status, len(notes) + 1)
    return f"{word} [{n}]"


def markdown(data: dict) -> str:
    """The check's short Markdown report: one row per method and variant, notes for what did not run."""
    rows = data["rows"]
    by: dict[tuple, dict] = {(m, v): {} for m, vs in data["variants"].items() for v in vs}
    for r in rows:
        if r["part"] in PER_VARIANT and (r["method"], r.get("variant")) in by:
            by[(r["method"], r.get("variant"))][(r["part"], r.get("precision") or r.get("set") or "")] = r
    for cells in by.values():  # a part skipped as a whole for a variant answers for each of its cells
        for part, sub in [(p, s) for p in PER_VARIANT for s in ("", *PRECISIONS, *FOLDERS)]:
            if (part, "") in cells and (part, sub) not in cells:
                cells[(part, sub)] = cells[(part, "")]
    notes: dict[str, int] = {}
    dev = "CUDA" if data["device"].startswith("cuda") else "CPU"
    m, sizes = data.get("machine") or {}, data["sizes"]
    sets = [f"{sizes[s][2]} x {_size(sizes[s])}" for s in FOLDERS]
    lines = [
        f"# GPU check ({data['mode']}, device {data['device']})",
        "",
        f"{m.get('gpu') or 'no GPU'}; torch {m.get('torch', '?')}, CUDA {m.get('cuda') or '-'}, "
        f"cuDNN {m.get('cudnn') or '-'}; TF32 convolutions {m.get('tf32_conv', '-')}, "
        f"TF32 matmul {m.get('tf32_matmul', '-')}; CPU {m.get('cpu', '?')} ({m.get('threads', '?')} threads); "
        f"{data['started']}, {data['seconds']:.0f} s of a {data['budget_s']:g} s budget.",
        "",
        f"| method | variant | {dev} fp32 vs CPU, {_size(sizes['parity'])}: max / mean | fp16 vs fp32: mean (x speed) "
        f"| bf16 vs fp32: mean (x speed) | use | {sets[0]}: img/s, busy, peak | {sets[1]}: img/s, busy, peak "
        f"| --compile, same folders: img/s (first image s) | {_size(sizes['big'])}, --max-memory {data['cap']}: "
        "peak / cap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, variant), cells in by.items():
        row = [method, variant or "-"]
        par = cells.get(("parity", ""))
        row.append(_status_cell(par, notes) or f"{par['max_abs']:.1e} / {par['mean_abs']:.1e}")
        for prec in ("fp16", "bf16"):
            r = cells.get(("precision", prec))
            cell = _status_cell(r, notes)
            if cell is None:
                flag = "ok" if r["within"] else "OVER"
                cell = f"{r['mean_abs']:.1e} {flag} (x{r['speedup']:.2f})"
            row.append(cell)
        row.append(recommend(cells) or "-")
        for s in FOLDERS:
            r = cells.get(("folder", s))
            cell = _status_cell(r, notes)
            if cell is None:
                util = f" (GPU {r['gpu_util']:.0%})" if r.get("gpu_util") is not None else ""
                cell = f"{r['images_per_s']:.2f}, {r['busy']:.0%}{util}, {_gib(r.get('peak_bytes'))}"
            row.append(cell)
        comp = [cells.get(("compile", s)) for s in FOLDERS]
        cell = [_status_cell(r, notes) for r in comp]
        row.append(
            " / ".join(
                c
                if c is not None
                else f"{r['steady_images_per_s'] or r['images_per_s']:.2f} ({r['first_image_s']:.0f})"
                for c, r in zip(cell, comp, strict=True)
            )
        )
        r = cells.get(("max-memory", ""))
        cell = _status_cell(r, notes)
        if cell is None:
            cell = f"{_gib(r['peak_bytes'])} / {_gib(r['cap'])} ({r['ratio']:.2f}) {'holds' if r['holds'] else 'OVER'}"
        row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    official = [r for r in rows if r["part"] in OFFICIAL]
    if official:
        lines += [
            "",
            "| against the authors' code | size | official s | mattecli s | official / mattecli | max abs diff "
            "| mean abs diff | pixels > 1/255 |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in official:
            cell = _status_cell(r, notes)
            what = f"{r['method']} ({r['part']})"
            if cell is not None:
                lines.append(f"| {what} | {cell} | | | | | | |")
                continue
            lines.append(
                f"| {what} | {r['size'][1]}x{r['size'][0]} | {r['official_s']:.3f} | {r['mattecli_s']:.3f} "
                f"| **{r['ratio']:.2f}** | {r['max_abs']:.1e} | {r['mean_abs']:.1e} | {r['over_1_255']:.2%} |"
            )
    parts = [
        f"{p} {v['status']}" + (f" in {v['seconds']:.0f} s" if v.get("seconds") else "")
        for p, v in data["parts"].items()
    ]
    lines += ["", "Parts: " + "; ".join(parts) + "."]
    lines += ["", *[f"- {n}" for n in data["notes"]]]
    if notes:
        lines += ["", *[f"- [{n}] {status}" for status, n in notes.items()]]
    return "\n".join(lines).rstrip() + "\n"


def recommend(cells: dict) -> str | None:
    """The precision to recommend for one variant: the fastest of fp16 / bf16 within tolerance that is at least
    ``MIN_SPEEDUP`` faster than fp32, else fp32; None when fp32 was not measured."""
    base = cells.get(("precision", "fp32"))
    if base is None or base.get("status") != "ok":
        return None
    good = [
        (r["speedup"], p)
        for p in ("fp16", "bf16")
        if (r := cells.get(("precision", p)))
        and r.get("status") == "ok"
        and r["within"]
        and r["speedup"] >= MIN_SPEEDUP
    ]
    return max(good)[1] if good else "fp32"


# ============================================================================= the child: the parts
class Child:
    """Runs the parts of one child process; one JSON line per finished item goes to the events file."""

    def __init__(self, cfg: dict):
        import torch

        self.cfg, self.torch = cfg, torch
        self.work = Path(cfg["work"])
        self.device = cfg["device"]
        self.cuda = self.device.startswith("cuda")
        self.sizes = {k: tuple(v) for k, v in cfg["sizes"].items()}
        self.events = open(cfg["events"], "a")  # open for the child's life
        self.refs: dict[str, tuple] = {}  # precision: variant -> (fp32 alpha, seconds)
        self.owner: tuple | None = None  # the (method, variant) of the methods kept built
        self.built: dict[str, tuple] = {}  # repr(options) -> (matter, seconds its build took)
        if cfg["smoke"]:
            torch.compile = _identity_compile
        if self.cuda:
            torch.cuda.init()  # before the first memory reading

    def emit(self, **event) -> None:
        self.events.write(json.dumps(_jsonable(event)) + "\n")
        self.events.flush()

    def log(self, text: str) -> None:
        print(f"[gpu_check] {text}", file=sys.stderr, flush=True)

    def run(self) -> None:
        """Each part of the config in turn, each item in turn; an ``end`` event after each part."""
        self.emit(ev="info", **machine_info(self.torch, self.device))
        for part in self.cfg["run"]:
            limit = self.cfg["limits"][part]
            self.log(f"part {part}: {len(self.cfg['items'][part])} items (time limit {limit:.0f} s, within the budget)")
            for item in self.cfg["items"][part]:
                self.item(part, item)
            self.emit(ev="end", part=part)

    def item(self, part: str, item: dict) -> None:
        """Run one item; its row (``status``: ok with the numbers, or ``error: ...``) goes to the events file."""
        fn = getattr(self, "part_" + part.replace("-", "_"))
        start = time.perf_counter()
        try:
            row = {"status": "ok", **(fn(item) or {})}
        except Exception as err:
            traceback.print_exc(file=sys.stderr)
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            row = {"status": f"error: {type(err).__name__}: {text}"[:400]}
            broken = self.cuda and "CUDA" in str(err) and "out of memory" not in str(err).lower()
            if broken:  # the CUDA context may be unusable now: a fresh process goes on with the next items
                self.emit(ev="row", **(item | row | {"seconds": round(time.perf_counter() - start, 3)}))
                self.log(f"{part} {item['key']}: {row['status']}; this process stops, a new one goes on")
                self.events.close()
                os._exit(3)
            self.drop()
        row = item | row | {"seconds": round(time.perf_counter() - start, 3)}
        self.emit(ev="row", **row)
        what = " ".join(
            str(x) for x in (part, item["method"], item["variant"], item.get("precision"), item.get("set")) if x
        )
        self.log(f"{what}: {row['status']} ({row['seconds']:.1f} s)")
        self.free()

    # ------------------------------------------------------------------ plumbing
    def spec(self, item: dict):
        from mattecli import methods

        return methods.get(item["method"])

    def options(self, item: dict, *, device: str | None = None, precision: str = "fp32", **engine):
        """``MethodOptions`` for the item's method and variant with this check's weights files."""
        from mattecli.methods.base import EngineOptions, MethodOptions

        spec, variant = self.spec(item), item["variant"]
        files = {}
        if variant is not None:
            folder = self.work / "weights" / variant
            files = {
                "variant": variant,
                "weights": folder / f"{variant}.safetensors",
                "companion_weights": {c.name: folder / f"{c.name}.safetensors" for c in spec.companions},
            }
        return MethodOptions(
            device=device or self.device, precision=precision, download=False, engine=EngineOptions(**engine), **files
        )

    def inputs(self, name: str, spec) -> tuple:
        """``(image, trimap or None)``: the prepared input ``name``; the trimap only for a method that needs one."""
        import numpy as np

        folder = self.work / "inputs"
        image = np.load(folder / f"{name}.npy")
        trimap = np.load(folder / f"{name}_trimap.npy") if spec.capabilities.needs_trimap else None
        return image, trimap

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def predict(self, matter, image, trimap):
        """``(result, seconds)`` of one ``predict``, the device synchronised."""
        self.sync()
        start = time.perf_counter()
        result = matter.predict(image, trimap)
        self.sync()
        return result, time.perf_counter() - start

    def free(self) -> None:
        import gc

        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def matter(self, item: dict, options, *, alone: bool = False):
        """``(matter, build seconds)``: the item's method built with ``options``, or the same build kept from an
        earlier item of this variant (builds of one variant are kept until another variant comes; ``alone``:
        only this one is kept, so memory measured next is its own)."""
        key, owner = repr(options), (item["method"], item["variant"])
        if self.owner != owner or alone:
            mine = self.built.get(key) if self.owner == owner else None
            self.built = {key: mine} if mine is not None else {}
            self.owner = owner
            self.free()
        if key not in self.built:
            start = time.perf_counter()
            matter = self.spec(item).create(options)
            self.built[key] = (matter, time.perf_counter() - start)
        return self.built[key]

    def drop(self) -> None:
        """Forget every method kept built."""
        self.built, self.owner = {}, None
        self.free()

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        else:
            try:  # Linux: reset the peak RSS (VmHWM) to the current RSS
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass

    def peak(self) -> dict:
        if self.cuda:
            t = self.torch.cuda
            return {"peak_bytes": t.max_memory_allocated(), "reserved_bytes": t.max_memory_reserved()}
        return {"peak_bytes": _vm_hwm(), "peak_is": "process peak RSS (CPU)"}

    # ------------------------------------------------------------------ prepare
    def part_prepare(self, item: dict) -> dict:
        if item.get("what") == "inputs":
            return self.prepare_inputs(item)
        return self.prepare_weights(item)

    def prepare_inputs(self, item: dict) -> dict:
        """The scenes as ``.npy`` (image float32 HxWx3, trimap uint8) and the folder sets as JPEG + PNG files."""
        import cv2
        import numpy as np
        import speed

        folder = self.work / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        made = {}
        wanted = item["inputs"]
        for name in ("parity", "precision", "calib", "big", "official"):
            h, w = self.sizes[name]
            if name not in wanted or (folder / f"{name}_trimap.npy").exists():
                continue
            image, alpha = speed.scene(h, w, seed=1)
            np.save(folder / f"{name}.npy", image)
            if name == "official":
                np.save(folder / f"{name}_alpha.npy", alpha)
            np.save(folder / f"{name}_trimap.npy", speed.trimap_from(alpha))
            made[name] = [h, w]
            if name == "calib":  # a PNG too: AIM's glance balancing reads a file
                cv2.imwrite(str(folder / "calib.png"), (image[..., ::-1] * 255 + 0.5).astype(np.uint8))
        for name in [f for f in FOLDERS if f in wanted]:
            h, w, n = self.sizes[name]
            sub = folder / name
            if (sub / "trimaps" / f"{n - 1:03d}.png").exists():
                continue
            (sub / "images").mkdir(parents=True, exist_ok=True)
            (sub / "trimaps").mkdir(parents=True, exist_ok=True)
            image, alpha = speed.scene(h, w, seed=2)
            bgr, trimap = (image[..., ::-1] * 255 + 0.5).astype(np.uint8), speed.trimap_from(alpha)
            for i in range(n):  # the scene shifted (and mirrored every other image): no two inputs alike
                shift = i * w // n
                b, t = np.roll(bgr, shift, axis=1), np.roll(trimap, shift, axis=1)
                if i % 2:
                    b, t = b[:, ::-1], t[:, ::-1]
                cv2.imwrite(str(sub / "images" / f"{i:03d}.jpg"), b, [cv2.IMWRITE_JPEG_QUALITY, 95])
                cv2.imwrite(str(sub / "trimaps" / f"{i:03d}.png"), t)
            made[name] = [h, w, n]
        return {"made": made}

    def prepare_weights(self, item: dict) -> dict:
        """Random weights for the variant and its companions, batch norms calibrated on the check's device."""
        import torch
        from safetensors.torch import save_file

        spec = self.spec(item)
        variant = spec.variant_named(item["variant"])
        folder = self.work / "weights" / variant.name
        if (folder / "done").exists():
            return {"note": "already there"}
        folder.mkdir(parents=True, exist_ok=True)
        states = {}
        for v in (variant, *spec.companions):
            torch.manual_seed(sum(map(ord, v.name)))
            net = v.build().eval()
            for m in net.modules():  # batch-norm statistics and affine terms away from the identity
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.data.uniform_(0.5, 1.5)
                    m.bias.data.uniform_(-0.1, 0.1)
            states[v.name] = {k: t.detach().contiguous() for k, t in net.state_dict().items()}
            save_file(states[v.name], str(folder / f"{v.name}.safetensors"))
        out = self.calibrate(item, spec, states, folder)
        (folder / "done").write_text("ok\n")
        return out

    def calibrate(self, item: dict, spec, states: dict, folder: Path) -> dict:
        """Rescale the batch norms (and apply the method's adjustment) on one predict of the calibration scene.

        The method is built the normal way, with batch-norm folding turned off and the networks that
        ``mattecli.weights.load_model`` returns kept; afterwards only their batch-norm entries (and what an
        adjustment changed) replace the saved random ones: other load-time transforms (SIM's folded weight
        standardisation) never reach the files.
        """
        import torch
        from safetensors.torch import save_file

        import mattecli.runtime.fold as fold
        import mattecli.runtime.winograd as winograd
        import mattecli.weights as weights
        from mattecli.methods.calibration import calibrating

        captured: dict[str, torch.nn.Module] = {}
        real_load = weights.load_model

        def capture(variant, *args, **kwargs):
            net = real_load(variant, *args, **kwargs)
            captured[variant] = net
            return net

        swaps = [
            (real_load, capture),
            (fold.fold_batchnorm, lambda net, *a, **k: net),
            (winograd.use_winograd, _none),  # a CPU speed path, numerically the same: not needed here
        ]
        with _swapped(swaps):
            matter = spec.create(self.options(item))
            image, trimap = self.inputs("calib", spec)
            if not captured:
                raise RuntimeError("no network came through mattecli.weights.load_model: nothing to calibrate")
            with calibrating(*captured.values()):
                alpha = matter.predict(image, trimap).alpha
        changed = {name: set() for name in captured}
        for name, net in captured.items():
            net.cpu()
            for mod_name, m in net.named_modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    changed[name] |= {f"{mod_name}.{k}" for k in ("weight", "bias", "running_mean", "running_var")}
        adjust = ADJUST.get(spec.name)
        if adjust is not None:
            for name, keys in adjust(captured, self.work / "inputs" / "calib.png").items():
                changed[name] |= keys
        for name, keys in changed.items():
            if name not in states:
                continue
            current = captured[name].state_dict()
            for k in keys & set(states[name]):
                states[name][k] = current[k].detach().cpu().contiguous()
            save_file(states[name], str(folder / f"{name}.safetensors"))
        del matter
        return {"calibrated": sorted(n for n in captured if n in states), "calibration_alpha": _alpha_stats(alpha)}

    # ------------------------------------------------------------------ parity
    def part_parity(self, item: dict) -> dict:
        """The device's fp32 alpha against the CPU's on the parity input (saved for precision when sizes match)."""
        import numpy as np

        spec = self.spec(item)
        image, trimap = self.inputs("parity", spec)
        cpu, _ = self.matter(item, self.options(item, device="cpu"))
        ref, cpu_s = self.predict(cpu, image, trimap)  # one call: the CPU side is the reference, not a timing
        matter, _ = self.matter(item, self.options(item))  # --smoke: the same build (the device is the CPU)
        first = self.predict(matter, image, trimap)[0] if matter is not cpu else ref
        result, dev_s = self.predict(matter, image, trimap)
        alpha = result.alpha
        (self.work / "alpha").mkdir(exist_ok=True)  # precision's fp32 reference: same input, same options
        np.save(self.work / "alpha" / f"{item['variant']}.npy", alpha)
        (self.work / "alpha" / f"{item['variant']}.json").write_text(json.dumps({"seconds": dev_s}))
        return {
            **_diff(alpha, ref.alpha),
            "repeat_max_abs": float(np.abs(first.alpha - alpha).max()),
            "cpu_s": cpu_s,
            "device_s": dev_s,
            "size": list(image.shape[:2]),
            "plan": dict(result.plan),
            "cpu_plan": dict(ref.plan),
            **_alpha_stats(alpha),
        }

    # ------------------------------------------------------------------ precision
    def part_precision(self, item: dict) -> dict:
        """fp32 (the reference, with its seconds), then fp16 / bf16 against it: deviation, tolerance, speed-up."""
        import numpy as np

        spec, variant, precision = self.spec(item), item["variant"], item["precision"]
        saved = self.work / "alpha" / f"{variant}.json"
        same = self.sizes["precision"] == self.sizes["parity"]  # --smoke: one tiny input for both
        if precision == "fp32" and same and saved.exists():  # parity ran the very same fp32 call
            seconds = json.loads(saved.read_text())["seconds"]
            self.refs[variant] = (np.load(saved.with_suffix(".npy")), seconds)
            return {"device_s": seconds, "speedup": 1.0, "from": "the parity part's fp32 run (same input and options)"}
        image, trimap = self.inputs("precision", spec)
        matter, _ = self.matter(item, self.options(item, precision=precision))
        if not self.cfg["smoke"]:  # a warm-up call first (--smoke: one call, the same code)
            self.predict(matter, image, trimap)
        result, seconds = self.predict(matter, image, trimap)
        if precision == "fp32":
            self.refs[variant] = (result.alpha, seconds)
            return {"device_s": seconds, "speedup": 1.0, **_alpha_stats(result.alpha)}
        if variant not in self.refs:
            raise RuntimeError("no fp32 reference: its item did not finish")
        ref, ref_s = self.refs[variant]
        diff = _diff(result.alpha, ref)
        tolerance = getattr(spec, "precision_tolerance", None) or TOLERANCE
        return {
            **diff,
            "device_s": seconds,
            "speedup": ref_s / seconds,
            "tolerance": tolerance,
            "within": diff["mean_abs"] <= tolerance,
            "plan": dict(result.plan),
        }

    # ------------------------------------------------------------------ folder runs
    def part_folder(self, item: dict, compile: bool = False) -> dict:
        """One folder through ``matte_files``, the method built beforehand (kept for the variant's next folder)."""
        from mattecli.pipelines import matte

        spec = self.spec(item)
        options = self.options(item, compile=compile)
        matter, build_s = self.matter(item, options, alone=True)
        folder = self.work / "inputs" / item["set"]
        n = len(list((folder / "images").iterdir()))
        out = self.work / "out" / item["key"].replace("|", "_")
        shutil.rmtree(out, ignore_errors=True)
        timer = _install_timer(matte, self.sync)
        timer.start(matter)
        self.reset_peak()
        sampler = _Utilization(self.torch) if self.cuda else None
        start = time.perf_counter()
        trimaps = folder / "trimaps" if spec.capabilities.needs_trimap else None
        settings = matte.MatteSettings(options=options)
        _, results = matte.matte_files([folder / "images"], out, method=spec.name, trimap=trimaps, settings=settings)
        results = list(results)
        wall = time.perf_counter() - start
        peak = self.peak()
        timer.stop()
        utilization = sampler.stop() if sampler is not None else {}
        shutil.rmtree(out, ignore_errors=True)
        bad = [r for r in results if r.get("status") != "ok"]
        if bad:
            raise RuntimeError(f"{len(bad)} of {len(results)} images failed: {bad[0].get('error')}")
        first = timer.ends[0] - start if timer.ends else None
        steady = (n - 1) / (wall - first) if first is not None and n > 1 and wall > first else None
        return {
            "images": n,
            "size": list(self.sizes[item["set"]][:2]),
            "wall_s": wall,
            "images_per_s": n / wall,
            "steady_images_per_s": steady,
            "first_image_s": first,
            "busy": timer.compute / wall,
            "compute_s": timer.compute,
            "build_s": build_s,
            "compile": compile,
            **peak,
            **utilization,
        }

    def part_compile(self, item: dict) -> dict:
        """:meth:`part_folder` with ``--compile``."""
        return self.part_folder(item, compile=True) | (
            {"compile_backend": "identity (--smoke)"} if self.cfg["smoke"] else {"compile_backend": "inductor"}
        )

    # ------------------------------------------------------------------ max-memory
    def part_max_memory(self, item: dict) -> dict:
        """A fresh build under ``--max-memory`` on the big scene: its peak (weights included) against the cap."""
        spec = self.spec(item)
        cap = parse_bytes(self.cfg["cap"])
        image, trimap = self.inputs("big", spec)
        self.drop()
        self.reset_peak()
        matter, _ = self.matter(item, self.options(item, max_memory=cap))
        result, seconds = self.predict(matter, image, trimap)
        peak = self.peak()
        ratio = peak["peak_bytes"] / cap
        return {
            "cap": cap,
            **peak,
            "ratio": ratio,
            "holds": ratio <= CAP_SLACK,
            "device_s": seconds,
            "size": list(image.shape[:2]),
            "plan": dict(result.plan),
            "budget": dict(matter.provenance.budget or {}),
        }

    # ------------------------------------------------------------------ the authors' code
    def official_env(self) -> dict:
        return dict(os.environ, **_child_env(self.work))

    def call(self, cmd: list[str], what: str) -> dict:
        """Run ``cmd`` (the authors' side, in the official Python) and return its JSON answer."""
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.official_env(), check=False)
        if done.returncode:
            sys.stderr.write(done.stderr[-4000:])
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{what} failed (exit {done.returncode}): {tail}")
        return _last_json(done.stdout)

    def official_python_lacks(self, part: str, modules: list[str]) -> str | None:
        py = self.cfg["official_python"][part]
        probe = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)"
        done = subprocess.run([py, "-c", probe, *modules], capture_output=True, text=True, env=self.official_env())
        if done.returncode:
            tail = (done.stderr.strip().splitlines() or ["?"])[-1]
            return f"skipped: {py} cannot run the authors' code ({tail}); give --{part}-python"
        return None

    def side(self, part: str, payload: dict, what: str) -> dict:
        cmd = [self.cfg["official_python"][part], __file__, "--official-side", json.dumps(payload)]
        return self.call(cmd, what)

    def mattecli_side(self, spec, options, image, trimap):
        """``(alpha of the second call, its seconds, plan)`` of mattecli on the device."""
        matter = spec.create(options)
        self.predict(matter, image, trimap)
        result, seconds = self.predict(matter, image, trimap)
        return result.alpha, seconds, dict(result.plan)

    def part_official_aim(self, item: dict) -> dict:
        """The authors' AIM HYBRID test against mattecli's hybrid strategy, same weights, same pixels, both on the
        device: the weights and the official run in ``--official-aim-python``, mattecli here."""
        import numpy as np
        from PIL import Image

        from mattecli.methods.base import EngineOptions, MethodOptions

        self.drop()
        lacks = self.official_python_lacks("official-aim", ["skimage", "cv2", "PIL", "torch", "mattecli"])
        if lacks:
            return {"status": lacks}
        spec = self.spec(item)
        work = self.work / "official-aim"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        image_png = work / "image.png"
        rgb = (np.load(self.work / "inputs" / "official.npy") * 255 + 0.5).astype(np.uint8)
        Image.fromarray(rgb).save(image_png)
        core = str(Path(item["dir"]).resolve())
        made = self.side(
            "official-aim", {"what": "aim-weights", "core": core, "work": str(work), "image": str(image_png)}, "weights"
        )
        off_out = work / "official.npy"
        off = self.side(
            "official-aim",
            {
                "what": "aim-run",
                "core": core,
                "image": str(image_png),
                "ckpt": made["ckpt"],
                "out": str(off_out),
                "device": self.device,
            },
            "the authors' AIM",
        )
        image = np.asarray(Image.open(image_png).convert("RGB"), dtype=np.float32) / 255.0  # the very same pixels
        options = MethodOptions(
            device=self.device, weights=Path(made["ckpt"]), download=False, engine=EngineOptions(strategy="hybrid")
        )
        alpha, seconds, plan = self.mattecli_side(spec, options, image, None)
        return {
            **_diff(alpha, np.load(off_out)),
            "size": list(image.shape[:2]),
            "official_s": off["seconds"],
            "official_first_s": off["first"],
            "mattecli_s": seconds,
            "ratio": off["seconds"] / seconds,
            "plan": plan,
        }

    def part_official_sim(self, item: dict) -> dict:
        """The authors' SIM test pipeline against mattecli's SIM, same weights, image and trimap, both on the
        device: weights (``sim_official_parity.py --child weights``) and the official run in
        ``--official-sim-python``, mattecli here; differences over the unknown region."""
        import cv2
        import numpy as np
        import sim_official_parity as sop

        from mattecli import io
        from mattecli.methods.base import MethodOptions

        self.drop()
        lacks = self.official_python_lacks("official-sim", ["easydict", "toml", "cv2", "torch"])
        if lacks:
            return {"status": lacks}
        spec = self.spec(item)
        root = str(Path(item["dir"]).resolve())
        work = self.work / "official-sim"
        shutil.rmtree(work, ignore_errors=True)
        (work / "src").mkdir(parents=True)
        src = work / "src" / "scene.png"
        inputs = self.work / "inputs"
        cv2.imwrite(str(src), (np.load(inputs / "official.npy")[..., ::-1] * 255 + 0.5).astype(np.uint8))
        cv2.imwrite(
            str(work / "src" / "scene_alpha.png"), (np.load(inputs / "official_alpha.npy") * 255 + 0.5).astype(np.uint8)
        )
        case = sop._prepare(str(src), work, 0.12)  # the parity script's inputs: PNG image, band trimap
        calib = work / "calibration"
        calib.mkdir()
        h, w = case["tri"].shape
        small = (w // 2, h // 2)
        cv2.imwrite(
            str(calib / "image.png"), cv2.resize(cv2.imread(str(case["image"])), small, interpolation=cv2.INTER_AREA)
        )
        cv2.imwrite(str(calib / "trimap.png"), cv2.resize(case["tri"], small, interpolation=cv2.INTER_NEAREST))
        payload = {
            "official": root,
            "image": str(calib / "image.png"),
            "trimap": str(calib / "trimap.png"),
            "folder": str(calib),
            "threads": os.cpu_count() or 1,
        }
        weights = self.call(
            [
                self.cfg["official_python"]["official-sim"],
                str(BENCH / "sim_official_parity.py"),
                "--child",
                "weights",
                json.dumps(payload),
            ],
            "the SIM weights (bench/sim_official_parity.py --child weights)",
        )
        off_out = work / "official.npy"
        off = self.side(
            "official-sim",
            {
                "what": "sim-run",
                "root": root,
                "image": str(case["image"]),
                "trimap": str(case["trimap"]),
                "weights": weights,
                "out": str(off_out),
                "device": self.device,
            },
            "the authors' SIM",
        )
        image = io.read_image(case["image"])
        trimap = io.read_trimap(case["trimap"], shape=image.shape[:2])
        (classifier,) = spec.companions
        options = MethodOptions(
            device=self.device,
            weights=Path(weights["matting"]),
            companion_weights={classifier.name: Path(weights["classifier"])},
            download=False,
        )
        alpha, seconds, plan = self.mattecli_side(spec, options, image, trimap)
        official = np.load(off_out)
        alpha16 = np.round(np.clip(alpha.astype(np.float64), 0, 1) * 65535).astype(np.uint16)
        eq = sop._equality(official, alpha16, case["tri"])
        unknown = case["tri"] == 128
        return {
            **_diff(alpha[unknown], official[unknown]),
            "unknown_16bit": {k: float(v) if not isinstance(v, bool) else v for k, v in eq.items()},
            "size": list(image.shape[:2]),
            "official_s": off["seconds"],
            "official_first_s": off["first"],
            "mattecli_s": seconds,
            "ratio": off["seconds"] / seconds,
            "plan": plan,
            "calibration_alpha": weights.get("calibration_alpha"),
        }


def _diff(a, b) -> dict:
    """Max and mean |a - b| and the share of pixels off by more than 1/255."""
    import numpy as np

    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "over_1_255": float((d > 1 / 255).mean())}


def _alpha_stats(alpha) -> dict:
    """How soft an alpha is: a constant or all-binary alpha makes a comparison prove little."""
    import numpy as np

    soft = float(((alpha > 0.01) & (alpha < 0.99)).mean())
    return {"alpha_mean": float(np.mean(alpha)), "soft_share": soft, "constant": bool(alpha.min() == alpha.max())}


def _vm_hwm() -> int:
    """This process's peak RSS in bytes."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))


@contextlib.contextmanager
def _swapped(swaps: list[tuple]):
    """Inside the block, every ``mattecli`` module attribute that is one of the ``(original, replacement)``
    functions is the replacement (wherever a module imported it from); afterwards every attribute that holds a
    replacement, in modules imported during the block too, holds its original again."""

    def sweep(pairs) -> None:
        for module in [m for name, m in list(sys.modules.items()) if name.split(".")[0] == "mattecli" and m]:
            for attr, value in list(vars(module).items()):
                for old, new in pairs:
                    if value is old:
                        setattr(module, attr, new)

    sweep(swaps)
    try:
        yield
    finally:
        sweep([(new, old) for old, new in swaps])


def _none(*_args, **_kwargs) -> int:
    return 0


def _identity_compile(model=None, **_kwargs):
    """--smoke's ``torch.compile``: the module itself (or, used as a decorator, the function)."""
    if model is None:
        return lambda fn: fn
    return model


class _Utilization:
    """The GPU's own busy share (NVML's utilisation, ``torch.cuda.utilization``) sampled every 50 ms in a
    thread while it lives; where NVML is not there (no ``pynvml``), the reason instead."""

    def __init__(self, torch):
        import threading

        self.torch, self.samples, self.error = torch, [], None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                self.samples.append(float(self.torch.cuda.utilization()))
            except Exception as err:  # no NVML here: said once, not sampled
                self.error = f"{type(err).__name__}: {str(err).strip()[:120]}"
                return
            self.done.wait(0.05)

    def stop(self) -> dict:
        self.done.set()
        self.thread.join()
        if self.samples:
            return {"gpu_util": sum(self.samples) / 100 / len(self.samples), "gpu_util_samples": len(self.samples)}
        return {"gpu_util": None, "gpu_util_note": self.error or "no sample"}


class _Timer:
    """``MatteRunner.compute`` timed: the seconds inside it (device synchronised at its end) and when each ended."""

    def __init__(self, sync):
        self.sync, self.matter, self.compute, self.ends = sync, None, 0.0, []

    def start(self, matter) -> None:
        self.matter, self.compute, self.ends = matter, 0.0, []

    def stop(self) -> None:
        self.matter = None


_TIMER: _Timer | None = None


def _install_timer(matte, sync) -> _Timer:
    """Wrap ``MatteRunner.compute`` once (as ``bench/speed.py`` does): it uses the matter built beforehand."""
    global _TIMER
    if _TIMER is None:
        _TIMER = _Timer(sync)
        real = matte.MatteRunner.compute

        def compute(self, job, inputs):
            if self.matter is None and _TIMER.matter is not None:
                self.matter = _TIMER.matter  # built (and timed) before the run, like a warm process
            start = time.perf_counter()
            out = real(self, job, inputs)
            _TIMER.sync()
            _TIMER.compute += time.perf_counter() - start
            _TIMER.ends.append(time.perf_counter())
            return out

        matte.MatteRunner.compute = compute
    return _TIMER


def machine_info(torch, device: str) -> dict:
    """torch, CUDA and cuDNN versions, TF32 settings, CPU and threads, and the GPU (name, bytes, capability)."""
    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "cpu": _cpu_name(),
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "gpu": None,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_bytes=props.total_memory, capability=f"{props.major}.{props.minor}")
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    except OSError:
        return "?"


# ============================================================================= method adjustments for random weights
def _balance_aim(nets: dict, calib_png: Path) -> dict[str, set[str]]:
    """AIM: shift the glance head's biases so every class wins somewhere on the scene
    (``bench/aim_official_parity._balance_classes``): a random glance calls every pixel alike."""
    import aim_official_parity

    changed = {}
    for name, net in nets.items():
        if hasattr(net, "decoder_final_g"):
            aim_official_parity._balance_classes(net, calib_png)
            changed[name] = {"decoder_final_g.bias"}
    return changed


#: method name -> adjustment of its calibrated random networks ({variant: network} -> {variant: changed keys})
ADJUST = {"aim": _balance_aim}


# ============================================================================= the authors' code, on a device
def _official_side(payload: dict) -> dict:
    """Runs in ``--official-python``: the authors' AIM / SIM on ``payload['device']``, or AIM's weights."""
    sys.path.insert(0, str(BENCH))
    what = payload["what"]
    if what == "aim-weights":
        import aim_official_parity

        ckpt = aim_official_parity._make_weights(Path(payload["core"]), Path(payload["work"]), Path(payload["image"]))
        return {"ckpt": str(ckpt)}
    if what == "aim-run":
        return _official_aim_run(payload)
    if what == "sim-run":
        return _official_sim_run(payload)
    raise ValueError(what)


def _official_aim_run(p: dict) -> dict:
    """The authors' HYBRID inference (``core/test.py inference_img``) on a device, twice; the second is timed.

    ``bench/aim_official_parity._official_side`` is this on the CPU only; here the model and ``args.cuda``
    follow the device and the one torchvision call (``transforms.Normalize``) is stubbed device-aware.
    The resize keeps scikit-image 0.14.5's defaults, as the parity script passes them.
    """
    import types

    import numpy as np
    import torch
    from PIL import Image

    device = torch.device(p["device"])

    class Normalize:  # the one torchvision call test.py makes, on the input's device
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

        def __call__(self, t):
            return (t - self.mean.to(t.device)) / self.std.to(t.device)

    transforms = types.ModuleType("torchvision.transforms")
    transforms.Normalize = Normalize
    tv = types.ModuleType("torchvision")
    tv.transforms = transforms
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms})
    sys.path.insert(0, p["core"])
    os.chdir(Path(p["ckpt"]).parent)  # AimNet() reads models/pretrained/... from the working directory
    import skimage.transform

    real_resize = skimage.transform.resize
    import test as official  # noqa: E402  (core/test.py)

    official.resize = lambda image, shape: real_resize(
        image, shape, order=1, mode="constant", cval=0, clip=True, preserve_range=False, anti_aliasing=False
    )
    from network.AimNet import AimNet

    model = AimNet()
    model.load_state_dict(torch.load(p["ckpt"], map_location="cpu")["state_dict"], strict=True)
    model = model.to(device).eval()
    img = np.array(Image.open(p["image"]))[:, :, :3]
    args = types.SimpleNamespace(cuda=device.type == "cuda", test_choice="HYBRID")
    seconds = []
    for _ in range(2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            alpha = official.inference_img(args, model, img)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    np.save(p["out"], np.asarray(alpha, np.float32))
    return {"first": seconds[0], "seconds": seconds[1]}


def _official_sim_run(p: dict) -> dict:
    """The authors' SIM test pipeline (``scripts/main.py run()``'s loop body) on a device, twice; the second timed.

    ``bench/sim_official_parity._official_forward`` is this on the CPU only; the steps are the same with the
    tensors and networks on ``p['device']`` (the authors' ``main()`` runs them on CUDA). The module import
    and its stubs, the config and the logger are the parity script's.
    """
    import numpy as np
    import sim_official_parity as sop
    import torch

    device = torch.device(p["device"])
    root, out = Path(p["root"]), Path(p["out"])
    main = sop._import_official(root)
    cfg = sop._config(main, root, p["weights"]["classifier"], p["weights"]["matting"])
    logger = sop._logger(out.parent)
    classifier = main.build_classifier(cfg.classifier, logger).to(device).eval()
    model = main.build_sim_model(cfg.model, logger).to(device).eval()
    seconds = []
    for _ in range(2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            inputs = main.preprocess(p["trimap"], p["trimap"], p["image"])  # 'alpha' only feeds SAD
            trimap = inputs["trimap"].float().to(device)
            image_scale = inputs["image_scale"].float().to(device)
            image_trans = inputs["image_trans"].float().to(device)
            trimap_2chn = inputs["trimap_2chn"].float().to(device)
            trimap_clks = inputs["trimap_clks"].float().to(device)
            semantic = main.extract_semantic_trimap_whole(cfg.classifier, classifier, image_trans, trimap)
            pred = model(image_scale, trimap_2chn, image_trans, trimap_clks, semantic, is_training=False)["alpha"]
            pred = torch.clamp(pred, 0, 1)
            pred[trimap == 0] = 0
            pred[trimap == 255] = 1
            pred = pred[:, :, 0 : inputs["origin_h"], 0 : inputs["origin_w"]].cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    np.save(out, pred[0, 0].numpy().astype(np.float32))
    return {"first": seconds[0], "seconds": seconds[1]}


# ============================================================================= entry points
def parse_args(argv: list[str] | None = None):
    """The command line, with the mode's defaults filled in (device, coverage, cap, budget, limits)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="the same code paths on the CPU, tiny inputs (seconds)")
    p.add_argument("--out", type=Path, default=BENCH, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--parts", default=",".join(PARTS[1:]), help=f"comma-separated, of: {', '.join(PARTS[1:])}")
    p.add_argument(
        "--time-limit",
        action="append",
        default=[],
        metavar="SECONDS|PART=SECONDS",
        help=f"per part (GPU defaults: {', '.join(f'{k} {v}' for k, v in LIMITS.items())}; --smoke {SMOKE_LIMIT})",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"seconds for the whole run (default {BUDGET}, --smoke {SMOKE_BUDGET})",
    )
    p.add_argument("--device", default=None, help="default cuda (cpu with --smoke)")
    p.add_argument("--sizes", choices=tuple(SIZES), default=None, help="input sizes (default gpu; smoke with --smoke)")
    p.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    p.add_argument(
        "--coverage", choices=("all", "first", "smoke"), default=None, help="default all; smoke with --smoke"
    )
    p.add_argument("--cap", default=None, help="--max-memory of the max-memory part (default 4G; 2G with --smoke)")
    p.add_argument("--official-aim", type=Path, default=None, help="the authors' AIM core/ folder")
    p.add_argument("--official-sim", type=Path, default=None, help="the authors' SIM tree (nowsyn/SIM)")
    p.add_argument("--official-python", default=sys.executable, help="Python that runs the authors' code")
    p.add_argument("--official-aim-python", default=None, help="for AIM's code (default --official-python)")
    p.add_argument("--official-sim-python", default=None, help="for SIM's code (default --official-python)")
    p.add_argument("--work", type=Path, default=None, help="keep weights, inputs and alphas here")
    args = p.parse_args(argv)
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        p.error(f"unknown part(s) {', '.join(bad)}; parts: {', '.join(PARTS[1:])}")
    args.parts = ["prepare", *[q for q in PARTS[1:] if q in parts]]
    args.limits = {}
    for text in args.time_limit:
        part, _, value = text.rpartition("=")
        if part and part not in PARTS:
            p.error(f"--time-limit: unknown part {part!r}")
        for q in [part] if part else PARTS:
            args.limits[q] = float(value)
    args.budget = args.budget or (SMOKE_BUDGET if args.smoke else BUDGET)
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    args.sizes = args.sizes or ("smoke" if args.smoke else "gpu")
    args.coverage = args.coverage or ("smoke" if args.smoke else "all")
    args.cap = args.cap or ("2G" if args.smoke else "4G")
    args.official_aim_python = args.official_aim_python or args.official_python
    args.official_sim_python = args.official_sim_python or args.official_python
    return args


def main(argv: list[str] | None = None) -> int:
    """The check (0), or a child's role (``--child CONFIG``, ``--official-side JSON``); 2 without CUDA."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        Child(json.loads(Path(argv[1]).read_text())).run()
        return 0
    if argv[:1] == ["--official-side"]:
        print(json.dumps(_jsonable(_official_side(json.loads(argv[1])))), flush=True)
        return 0
    args = parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: CUDA is not available here; --smoke runs the same code on the CPU", file=sys.stderr)
            return 2
    items, skipped, names = make_plan(args)
    keep = args.work is not None
    work = args.work.resolve() if keep else Path(tempfile.mkdtemp(prefix="mattecli-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    parent = Parent(args, items, skipped, names, work)

    def terminate(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        parent.run()
    except BaseException as err:  # a signal, or a bug here: what was measured is written all the same
        parent.finish(f"stopped: this run ended early ({type(err).__name__})")
        parent.write()
        raise
    finally:
        parent.write()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print((args.out / "gpu_check.md").read_text(), end="")
    print(f"[gpu_check] wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
