"""`camexp cam` throughput against a bare torch forward loop of the same network at the same input size.

    python benchmarks/bench_cam.py [--copies 4] [--repeats 3] [--top-k 5] [--workers 2]

A folder of the real photos that packages ship (copied --copies times). Both sides read the files with the
same loader (decode, resize the whole image to 224, ImageNet normalization; batch 16, --workers processes)
and run the same EfficientNet-Lite0 forward pass. The bare loop stops there; `camexp cam` also computes the
top-k CAMs at each photo's original resolution, the paper-rule boxes and Table 3's heuristic boxes.
Writing overlays is timed apart. Passes alternate between the sides after a warm-up (best of --repeats).
Goal: camexp cam (without overlays) >= 0.9x the bare loop's images/s.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from camexp import viz
from camexp.console import quiet_console
from camexp.data.photos import copy_photos
from camexp.explainer import _ImageFiles, image_files, iter_explanations, load_explainer, overlay_picture

BATCH = 16
GOAL = 0.9


def bare_loop(explainer, files: list[Path], workers: int) -> float:
    """Seconds for decode + forward of every file, nothing else."""
    dataset = _ImageFiles(files, explainer.transform, keep_pixels=False)
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=workers, collate_fn=list)
    started = time.perf_counter()
    with torch.inference_mode():
        for items in loader:
            explainer.net(torch.stack([s["image"] for s in items]).to(explainer.device))
    return time.perf_counter() - started


def cam_loop(explainer, files: list[Path], workers: int, top_k: int) -> float:
    started = time.perf_counter()
    for _ in iter_explanations(explainer, files, top_k, None, 0.2, BATCH, workers, progress=False):
        pass
    return time.perf_counter() - started


def overlay_seconds(explainer, files: list[Path], workers: int, top_k: int, out: Path) -> float:
    """Seconds spent drawing and writing the overlay PNGs (the CAM work itself excluded)."""
    spent = 0.0
    explanations = iter_explanations(explainer, files, top_k, None, 0.2, BATCH, workers, keep_pixels=True,
                                     progress=False)  # fmt: skip
    for i, explanation in enumerate(explanations):
        started = time.perf_counter()
        viz.save_png(overlay_picture(explanation, 0.2), out / f"{i}.png")
        spent += time.perf_counter() - started
    return spent


@quiet_console()  # the libraries' chatter off: the tables alone on stdout
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    explainer = load_explainer("efficientnet_lite0", device="cpu")
    root = Path(tempfile.mkdtemp(prefix="bench_cam_"))
    try:
        for copy in range(args.copies):
            copy_photos(root / "photos" / f"copy{copy}")
        files = image_files([root / "photos"])
        bare_loop(explainer, files[:BATCH], args.workers)  # warm-up both sides
        cam_loop(explainer, files[:BATCH], args.workers, args.top_k)
        bare, cam = [], []
        for _ in range(args.repeats):
            bare.append(bare_loop(explainer, files, args.workers))
            cam.append(cam_loop(explainer, files, args.workers, args.top_k))
        (root / "overlays").mkdir()
        drawing = overlay_seconds(explainer, files, args.workers, args.top_k, root / "overlays")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = len(files)
    ratio = min(bare) / min(cam)
    print(f"== camexp cam vs a bare forward loop: EfficientNet-Lite0 at 224, {n} real photos, top-{args.top_k} ==")
    print(f"| side | images/s (best of {args.repeats}) |")
    print("|---|---:|")
    print(f"| bare loop (decode + forward) | {n / min(bare):.1f} |")
    print(f"| camexp cam (+ CAMs at original size, paper + heuristic boxes) | {n / min(cam):.1f} |")
    print(f"| overlays alone (draw + write PNG) | {n / drawing:.1f} |")
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"camexp cam / bare loop = {ratio:.2f}x (goal >= {GOAL}x: {verdict})")
    print(f"overlays add {drawing / n * 1e3:.0f} ms per image (drawn at <= 320 px per panel, PNG)")


if __name__ == "__main__":
    main()
