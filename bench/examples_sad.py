"""Quality of the classical methods on the committed examples (SAD over the unknown region, /1000).

python bench/examples_sad.py            # writes bench/examples_sad.md
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from mattecli import io, methods
from mattecli.methods.base import MethodOptions
from mattecli.pipelines.matte import matte_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def main() -> None:
    rows = []
    for method in ("cf", "knn"):
        spec = methods.get(method)
        matter = spec.create(MethodOptions())
        for image_path in sorted((EXAMPLES / "images").glob("*.png")):
            image = io.read_image(image_path)
            trimap = io.read_trimap(EXAMPLES / "trimaps" / image_path.name, shape=image.shape[:2])
            gt = io.read_gray(EXAMPLES / "alpha" / image_path.name)
            start = time.perf_counter()
            alpha = matte_image(matter, image, trimap)
            seconds = time.perf_counter() - start
            alpha8 = np.round(alpha * 255) / 255  # score what is written to disk (8-bit PNG)
            unknown = trimap == 128
            sad = np.abs(alpha8 - gt)[unknown].sum() / 1000
            mse = float((np.square(alpha8 - gt)[unknown]).mean())
            rows.append((method, image_path.stem, image.shape[1], image.shape[0], sad, mse, seconds))
    lines = [
        "# Classical methods on `examples/` (unknown region, Composition-1k units)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}; command: `python bench/examples_sad.py`",
        "",
        "| method | image | size | SAD | MSE | seconds |",
        "|---|---|---|---:|---:|---:|",
    ]
    for method, name, w, h, sad, mse, seconds in rows:
        lines.append(f"| {method} | {name} | {w}x{h} | {sad:.3f} | {mse:.5f} | {seconds:.2f} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "examples_sad.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
