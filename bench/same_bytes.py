"""The same ``mattecli matte`` command on an idle machine and on a busy one: are the mattes equal?

    python bench/same_bytes.py WORK --hold 10G -- IMAGE -m aim [more matte flags]

Runs ``python -m mattecli matte IMAGE WORK/idle --json --device cpu FLAGS`` once as it is, then
again into ``WORK/busy`` while another process holds ``--hold`` bytes of touched memory (numpy,
every page written, so the kernel counts it), and compares: every output file byte for byte, and
the ``--json`` rows without their timings. ``MemAvailable`` (``/proc/meminfo``) is printed before
each run. Weights come from the Hugging Face cache of the environment (set ``HF_HOME`` to a cache
with imported weights, e.g. the one ``bench/memory_cap.py prepare`` fills, and
``MATTECLI_OFFLINE=1``). Exit status 0 when both runs agree, 1 when they do not.

The question it answers is the one of "Same command, same matte" in ``bench/RESULTS.md``: before
the runtime planned from declared figures, ``auto`` compared RSS probes with half the available
memory, so the busy run could tile where the idle one did not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HOG = """
import sys, numpy as np
block = np.ones(int(sys.argv[1]), np.uint8)  # every page written
print("held", flush=True)
sys.stdin.read()
"""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return -1


def run(out: Path, matte_args: list[str]) -> tuple[list[dict], float]:
    cmd = [sys.executable, "-m", "mattecli", "matte", *matte_args[:1], str(out), *matte_args[1:]]
    cmd += ["--json", "--device", "cpu", "--overwrite"]
    print(f"  MemAvailable {available() / (1 << 30):.1f} GiB: {' '.join(cmd[1:])}", file=sys.stderr)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"matte failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    for row in rows:
        row.pop("seconds", None)
        row["output"] = Path(row["output"]).name
    return rows, seconds


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(folder.iterdir())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--hold", default="10G", help="memory the other process holds during the busy run")
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.parse_args([a for a in argv if a != "--"])  # --help, or the options' own errors
        parser.error("give -- IMAGE [matte flags] after the options")
    args = parser.parse_args(argv[: argv.index("--")])
    matte_args = argv[argv.index("--") + 1 :]
    args.work.mkdir(parents=True, exist_ok=True)

    print("idle run", file=sys.stderr)
    idle_rows, idle_s = run(args.work / "idle", matte_args)
    print(f"busy run: another process holds {args.hold}", file=sys.stderr)
    hog = subprocess.Popen([sys.executable, "-c", HOG, str(parse_size(args.hold))], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert hog.stdout.readline().strip() == "held"
        busy_rows, busy_s = run(args.work / "busy", matte_args)
    finally:
        hog.kill()
        hog.wait()
    same_files = digests(args.work / "idle") == digests(args.work / "busy")
    same_rows = idle_rows == busy_rows
    for row in idle_rows:
        plan = {k: row.get(k) for k in ("strategy", "tile", "tiles", "fallback", "budget") if row.get(k) is not None}
        print(f"{row['output']}: {json.dumps(plan)}")
    print(f"idle {idle_s:.1f} s, busy {busy_s:.1f} s; files identical: {same_files}; rows identical: {same_rows}")
    sys.exit(0 if same_files and same_rows else 1)


if __name__ == "__main__":
    os.environ.setdefault("MATTECLI_OFFLINE", "1")
    main()
