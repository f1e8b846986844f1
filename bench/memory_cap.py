"""Peak RSS of real CLI runs against ``--max-memory``, per method and strategy (issue 22, deliverable 4).

    python bench/memory_cap.py prepare WORK [--weights DIR]    # photo-like images + trimaps, weights imported
    python bench/memory_cap.py run WORK --label before [--only REGEX] [--size 8|33]
    python bench/memory_cap.py table WORK                        # bench/memory_cap.md from WORK/results.jsonl

``prepare`` writes a synthetic photo-like scene (smooth colour gradients, textures and noise, a
soft-edged figure composited over a background) at 8 MP (3840x2160) and 33 MP (7680x4320), with a
trimap whose unknown band follows the figure's soft edge (about 2% of the pixels, the share of a
portrait's hair and outline), and imports random calibrated weights of every real architecture
(the ``.safetensors`` files of ``bench/layout_parity.py prepare``: ``--weights DIR``, else built
here the same way) into ``WORK/hf-home``. No smaller network is used: the memory is that of the
real architectures.

``run`` runs each case through the command line (``python -m mattecli matte ... --max-memory CAP
--device cpu``, ``MATTECLI_OFFLINE=1``, one thread) in a child process and records its peak RSS
(VmHWM, from ``wait4``'s ``ru_maxrss``) against the cap; a child whose RSS passes ``--kill-at``
(default 2.5 x cap, at most 12 GiB, so a runaway never starves the machine) is killed and recorded
as such. A case passes when it exits 0 with a peak within 5% of the cap, or when it refuses the
cap with a one-line error (non-zero exit, no traceback) without exceeding it. Results are appended
to ``WORK/results.jsonl`` (one line per run, with its label); ``table`` writes the markdown table.
Pin the whole bench to one core (``taskset -c 1``): the children inherit it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30
SIZES = {8: (2160, 3840), 33: (4320, 7680)}
VARIANTS = ("aim", "sim-comp1k", "sim-classifier", "shm-mindspore", "msia")

#: (method, strategy or None for the default, extra CLI arguments)
METHODS: list[tuple[str, str | None, list[str]]] = [
    ("aim", None, []),  # hybrid
    ("aim", "whole", []),
    ("aim", "resize", []),
    ("aim", "tiled", []),
    ("sim", None, ["--trimap", "{tri}"]),  # auto
    ("sim", "whole", ["--trimap", "{tri}"]),
    ("sim", "tiled", ["--trimap", "{tri}"]),
    ("shm", None, []),  # shm-mindspore: resize
    ("shm", "paper", []),
    ("shm", "whole", []),
    ("shm", "tiled", []),
    ("msia", None, []),  # auto
    ("msia", "whole", []),
    ("msia", "tiled", []),
    ("cf", None, ["--trimap", "{tri}"]),  # auto
    ("cf", "whole", ["--trimap", "{tri}"]),
    ("cf", "tiled", ["--trimap", "{tri}"]),
    ("knn", None, ["--trimap", "{tri}"]),  # auto
    ("knn", "whole", ["--trimap", "{tri}"]),
    ("knn", "tiled", ["--trimap", "{tri}"]),
    # the authors' hub file is pinned by sha256: random weights of the real architecture by --weights
    ("vitmatte", None, ["--trimap", "{tri}", "--weights", "{weights}/vitmatte-s-comp1k.safetensors"]),  # auto
]

#: the 33 MP set (slow on one core): what the issue reported plus every method's large-image path
AT_33 = {
    ("aim", None),
    ("aim", "tiled"),
    ("msia", "tiled"),
    ("knn", None),
    ("cf", None),
    ("sim", "tiled"),
    ("shm", None),
    ("vitmatte", None),
}


def cases(size_filter: int | None = None) -> list[dict]:
    out = []
    for mp in (8, 33):
        if size_filter is not None and mp != size_filter:
            continue
        for method, strategy, extra in METHODS:
            if mp == 33 and (method, strategy) not in AT_33:
                continue
            caps = ["3G"] if not (method in ("aim", "vitmatte") and strategy is None and mp == 33) else ["4G", "3G"]
            for cap in caps:
                name = f"{method}-{strategy or 'default'}-{mp}mp-{cap}"
                out.append({"name": name, "method": method, "strategy": strategy, "mp": mp, "cap": cap, "extra": extra})
    return out


# ----------------------------------------------------------------------------- prepare
def _scene(h: int, w: int, band: int = 64):
    """uint8 BGR photo-like image and uint8 trimap (0 / 128 / 255) of ``h x w``, built in row bands."""
    import numpy as np

    image = np.empty((h, w, 3), np.uint8)
    trimap = np.empty((h, w), np.uint8)
    rng = np.random.default_rng(0)
    edge = max(4, min(h, w) // 400)  # the soft edge's half-width
    grow = max(8, min(h, w) // 200)  # the trimap's band beyond it
    xx = np.arange(w, dtype=np.float32)[None, :]
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        # a figure: an ellipse whose outline wobbles like hair, radius in pixels of the short side
        ang = np.arctan2(yy - h * 0.55, xx - w * 0.5)
        wob = 1 + 0.04 * np.sin(ang * 23) + 0.02 * np.sin(ang * 71)
        r = np.hypot((yy - h * 0.55) / (h * 0.38 * wob), (xx - w * 0.5) / (w * 0.2 * wob))
        d = (r - 1.0) * min(h * 0.38, w * 0.2)  # ~ signed distance in px (negative inside)
        alpha = np.clip(0.5 - d / (2 * edge), 0, 1)
        fg = np.stack(
            np.broadcast_arrays(
                0.75 + 0.12 * np.sin(xx / 37 + yy / 53), 0.55 + 0.1 * np.cos(yy / 29), 0.35 + 0.08 * np.sin(xx / 11)
            ),
            -1,
        )
        bg = np.stack(
            np.broadcast_arrays(
                0.25 + 0.15 * np.sin(yy / 301), 0.4 + 0.1 * np.cos(xx / 211 + yy / 97), 0.55 + 0.1 * np.sin(xx / 17)
            ),
            -1,
        )
        img = alpha[..., None] * fg + (1 - alpha[..., None]) * bg + rng.normal(0, 0.02, (y1 - y0, w, 3))
        image[y0:y1] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)[..., ::-1]
        t = np.full(d.shape, 128, np.uint8)
        t[d <= -(edge + grow)] = 255
        t[d >= edge + grow] = 0
        trimap[y0:y1] = t
    return image, trimap


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MATTECLI_"))}
    env.update(HF_HOME=str(home), MATTECLI_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def prepare(work: Path, weights: Path | None) -> None:
    import cv2
    import numpy as np

    for mp, (h, w) in SIZES.items():
        d = work / f"{mp}mp"
        (d / "images").mkdir(parents=True, exist_ok=True)
        (d / "trimaps").mkdir(parents=True, exist_ok=True)
        if (d / "images" / "scene.png").is_file():
            continue
        image, trimap = _scene(h, w)
        cv2.imwrite(str(d / "images" / "scene.png"), image)
        cv2.imwrite(str(d / "trimaps" / "scene.png"), trimap)
        unknown = float(np.count_nonzero(trimap == 128)) / trimap.size
        print(f"{mp} MP: {w}x{h}, {unknown:.1%} unknown", file=sys.stderr)
    if weights is None:
        sys.path.insert(0, str(ROOT / "bench"))
        from layout_parity import _nets_and_calibrate

        weights = work / "weights"
        _nets_and_calibrate(weights)
    env = _env(work / "hf-home")
    for v in VARIANTS:
        done = subprocess.run(
            [sys.executable, "-m", "mattecli", "weights", "import", v, str(weights / f"{v}.safetensors")],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"weights import {v} failed: {done.stderr}")


# ----------------------------------------------------------------------------- run
def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cap_bytes(cap: str) -> int:
    m = re.fullmatch(r"([0-9.]+)([KMG])", cap)
    return int(float(m.group(1)) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)])


def run_case(work: Path, case: dict, kill_at: int | None) -> dict:
    d = work / f"{case['mp']}mp"
    out = work / "out" / case["name"]
    if out.exists():
        import shutil

        shutil.rmtree(out)
    args = ["matte", str(d / "images"), str(out), "-m", case["method"], "--device", "cpu", "--max-memory", case["cap"]]
    if case["strategy"]:
        args += ["--strategy", case["strategy"]]
    args += [a.format(tri=d / "trimaps", weights=work / "weights") for a in case["extra"]]
    cmd = [sys.executable, "-m", "mattecli", *args]
    cap = _cap_bytes(case["cap"])
    limit = kill_at or min(int(2.5 * cap), 12 * GiB)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(work / "hf-home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = threading.Event()

    def watch():
        while proc.poll() is None:
            if _rss(proc.pid) > limit:
                killed.set()
                os.kill(proc.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr.read().splitlines()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    seconds = time.perf_counter() - start
    peak = usage.ru_maxrss * 1024
    rc = proc.returncode
    lines = [ln for ln in stderr_lines if ln.strip()]
    traceback = any(ln.startswith("Traceback") for ln in lines)
    within = peak <= 1.05 * cap and not killed.is_set()
    refused = rc != 0 and not killed.is_set() and not traceback
    return {
        **{k: case[k] for k in ("name", "method", "strategy", "mp", "cap")},
        "command": "mattecli " + " ".join(args).replace(str(work), "WORK"),
        "cap_bytes": cap,
        "peak_bytes": peak,
        "ratio": round(peak / cap, 3),
        "exit": rc,
        "killed": killed.is_set(),
        "seconds": round(seconds, 1),
        "stderr": lines[-3:],
        "ok": within and (rc == 0 or refused),
    }


def run(work: Path, label: str, only: str | None, size: int | None, kill_at: int | None) -> None:
    results = work / "results.jsonl"
    for case in cases(size):
        if only and not re.search(only, case["name"]):
            continue
        row = run_case(work, case, kill_at)
        row["label"] = label
        row["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs (pinned: {sorted(os.sched_getaffinity(0))})"
        with results.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(
            f"{label} {row['name']}: peak {row['peak_bytes'] / GiB:.2f} GiB / {row['cap']} = {row['ratio']:.2f}, "
            f"exit {row['exit']}{' KILLED' if row['killed'] else ''}, {row['seconds']} s "
            f"{'ok' if row['ok'] else 'FAIL'} | {(row['stderr'] or [''])[-1][:160]}",
            file=sys.stderr,
            flush=True,
        )


# ----------------------------------------------------------------------------- table
def table(work: Path, out: Path) -> str:
    rows = [json.loads(ln) for ln in (work / "results.jsonl").read_text().splitlines() if ln.strip()]
    latest: dict[tuple[str, str], dict] = {}
    for r in rows:
        latest[(r["name"], r["label"])] = r
    labels = list(dict.fromkeys(r["label"] for r in rows))
    names = list(dict.fromkeys(r["name"] for r in rows))
    machine = rows[-1]["machine"] if rows else ""
    lines = [
        "# `--max-memory` against peak RSS (bench/memory_cap.py)",
        "",
        f"Machine: {machine}; one thread (`OMP_NUM_THREADS=1`), `--device cpu`, random calibrated weights of the",
        "real architectures, a synthetic photo-like scene (2% unknown in its trimap). Peak: the child's VmHWM.",
        "Pass: exit 0 with peak <= 1.05 x cap, or a one-line refusal (non-zero exit, no traceback) under it.",
        "",
        "| case | MP | cap | " + " | ".join(f"{lb} peak GiB | {lb} peak/cap | {lb}" for lb in labels) + " |",
        "|---|---|---|" + "---|---|---|" * len(labels),
    ]
    for name in names:
        first = next(r for (n, _), r in latest.items() if n == name)
        cells = []
        for lb in labels:
            r = latest.get((name, lb))
            if r is None:
                cells += ["", "", ""]
                continue
            verdict = "pass" if r["ok"] else "FAIL"
            if r["killed"]:
                verdict += " (killed)"
            elif r["exit"]:
                verdict += f" (exit {r['exit']})"
            peak = f"{r['peak_bytes'] / GiB:.2f}" + ("+" if r["killed"] else "")
            cells += [peak, f"{r['ratio']:.2f}", f"{verdict}, {r['seconds']:.0f} s"]
        strategy = first["strategy"] or "default"
        lines.append(f"| {first['method']} {strategy} | {first['mp']} | {first['cap']} | " + " | ".join(cells) + " |")
    lines += ["", "Commands (WORK = the bench folder):", ""]
    for name in names:
        r = next(r for (n, _), r in latest.items() if n == name)
        lines.append(f"- `{r['command']}`")
    refusals = [r for r in latest.values() if r["exit"] and not r["killed"]]
    if refusals:
        lines += ["", "Refusals and errors (last stderr line):", ""]
        for r in refusals:
            lines.append(f"- {r['label']} {r['name']}: `{(r['stderr'] or [''])[-1][:200]}`")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("work", type=Path)
    pp.add_argument("--weights", type=Path, default=None)
    r = sub.add_parser("run")
    r.add_argument("work", type=Path)
    r.add_argument("--label", default="run")
    r.add_argument("--only", default=None, help="regex on case names, e.g. '^aim-.*-8mp'")
    r.add_argument("--size", type=int, choices=sorted(SIZES), default=None)
    r.add_argument("--kill-at", type=float, default=None, help="GiB (default 2.5 x cap, at most 12)")
    t = sub.add_parser("table")
    t.add_argument("work", type=Path)
    t.add_argument("--out", type=Path, default=ROOT / "bench" / "memory_cap.md")
    args = p.parse_args()
    if args.cmd == "prepare":
        prepare(args.work, args.weights)
    elif args.cmd == "run":
        run(args.work, args.label, args.only, args.size, None if args.kill_at is None else int(args.kill_at * GiB))
    else:
        print(table(args.work, args.out))


if __name__ == "__main__":
    main()
