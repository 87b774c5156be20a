"""Images/s of camexp's train and eval pipelines against torchvision's ImageFolder with the same transforms.

    python benchmarks/bench_data.py [--images 300] [--sizes 400x350 1000x750] [--workers 2] [--repeats 3]

Writes generated JPEGs to a temporary folder in the ILSVRC layout (train/<wnid>/*.JPEG, val/*.JPEG
+ LOC_val_solution.csv) and, for ImageFolder, the same val files in val_folders/<wnid>/. Both sides
use DataLoader(num_workers=N, batch 32) and the transforms of the paper at 224 (train: resize 256,
random 224 crop, flip, ImageNet normalization; eval: resize to 224 x 224). camexp's side is the
real ILSVRCDataModule loader (sampler, collate, eval boxes included).

Measurements alternate between the two sides after a warm-up pass each (same page cache, same
background load). Two numbers per side: images/s through the workers (median of --repeats passes),
and CPU ms per image in one process (best of --repeats passes), which load from other processes on
a shared machine moves far less. Both ratios are camexp over ImageFolder: above 1.0 is better.
"scaling" is camexp's images/s with N workers over its one-process rate: about N when the workers
keep N cores busy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from camexp.console import quiet_console
from camexp.data import ILSVRCDataModule
from camexp.data.transforms import eval_transform, train_transform

INPUT, RESIZE, BATCH = 224, 256, 32


def write_dataset(root: Path, n: int, size: tuple[int, int], classes: int = 10, seed: int = 0) -> Path:
    """n photo-like JPEGs (smooth colour fields + noise, quality 90) in the ILSVRC layout."""
    rng = np.random.default_rng(seed)
    w, h = size
    rows = ["ImageId,PredictionString"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        wnid = f"n{1000000 + i % classes:08d}"
        fx, fy = rng.uniform(20, 80, size=2)
        base = np.stack([np.sin(xx / fx), np.cos(yy / fy), np.sin((xx + yy) / 60)], -1)
        pixels = ((base * 0.5 + 0.5) * 200 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        for folder in (root / "train" / wnid, root / "val_folders" / wnid):
            folder.mkdir(parents=True, exist_ok=True)
        name = f"ILSVRC2012_val_{i + 1:08d}"
        image.save(root / "train" / wnid / f"{wnid}_{i}.JPEG", quality=90)
        (root / "val").mkdir(exist_ok=True)
        image.save(root / "val" / f"{name}.JPEG", quality=90)
        shutil.copyfile(root / "val" / f"{name}.JPEG", root / "val_folders" / wnid / f"{name}.JPEG")
        rows.append(f"{name},{wnid} {w // 8} {h // 8} {w - w // 8} {h - h // 8}")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root


def images_per_second(loader: DataLoader) -> float:
    """Wall-clock throughput of one full pass."""
    start, count = time.perf_counter(), 0
    for batch in loader:
        count += len(batch["image"] if isinstance(batch, dict) else batch[0])
    return count / (time.perf_counter() - start)


def cpu_ms_per_image(loader: DataLoader) -> float:
    """CPU time per image of one pass of a num_workers=0 loader (decode, transform, targets, collate)."""
    start, count = time.process_time(), 0
    for batch in loader:
        count += len(batch["image"] if isinstance(batch, dict) else batch[0])
    return 1000 * (time.process_time() - start) / count


def interleaved(measure, ours: DataLoader, theirs: DataLoader, repeats: int) -> tuple[list[float], list[float]]:
    """`repeats` measurements of each side, alternating (ours, theirs, ours, ...) after one warm-up pass
    each, so both sides see the same page cache and the same background load."""
    measure(ours), measure(theirs)
    pairs = [(measure(ours), measure(theirs)) for _ in range(repeats)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def camexp_loaders(root: Path, workers: int) -> tuple[DataLoader, DataLoader]:
    dm = ILSVRCDataModule(
        root, {}, input_size=INPUT, train_resize=RESIZE, batch_size=BATCH, num_workers=workers, persistent_workers=True
    )
    dm.setup()
    return dm.train_dataloader(), dm.val_dataloader()


def imagefolder_loaders(root: Path, workers: int) -> tuple[DataLoader, DataLoader]:
    kw = dict(batch_size=BATCH, num_workers=workers, persistent_workers=workers > 0)
    train = ImageFolder(str(root / "train"), transform=train_transform(INPUT, RESIZE))
    val = ImageFolder(str(root / "val_folders"), transform=eval_transform(INPUT))
    return DataLoader(train, shuffle=True, drop_last=True, **kw), DataLoader(val, shuffle=False, **kw)


def run(n: int, size: tuple[int, int], workers: int, repeats: int) -> list[tuple[str, float, float, float, float]]:
    """Per pipeline: (name, camexp img/s, ImageFolder img/s, camexp CPU ms/img, ImageFolder CPU ms/img)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = write_dataset(Path(tmp), n, size)
        parallel = zip(camexp_loaders(root, workers), imagefolder_loaders(root, workers), strict=True)
        serial = zip(camexp_loaders(root, 0), imagefolder_loaders(root, 0), strict=True)
        rows = []
        for name, (ours, theirs), (ours_1, theirs_1) in zip(("train", "eval"), parallel, serial, strict=True):
            rate_ours, rate_theirs = interleaved(images_per_second, ours, theirs, repeats)
            cpu_ours, cpu_theirs = interleaved(cpu_ms_per_image, ours_1, theirs_1, repeats)
            median = statistics.median
            rows.append((name, median(rate_ours), median(rate_theirs), min(cpu_ours), min(cpu_theirs)))
        return rows


@quiet_console()  # the libraries' chatter off: the tables alone on stdout
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--sizes", nargs="+", default=["400x350", "1000x750"], help="WxH of the generated JPEGs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    print(
        f"data pipeline: {args.images} JPEGs, input {INPUT}; img/s: DataLoader(num_workers={args.workers}), median "
        f"of {args.repeats} interleaved passes; CPU ms/img: one process, best of {args.repeats}; "
        f"scaling: img/s over the 1-process rate (ideal {args.workers})"
    )
    print(
        f"{'JPEGs':>9} {'pipeline':<8} {'camexp img/s':>12} {'ImageFolder img/s':>17} {'ratio':>6}"
        f" {'camexp CPU ms/img':>17} {'ImageFolder CPU ms/img':>22} {'ratio':>6} {'scaling':>8}"
    )
    for spec in args.sizes:
        w, h = (int(v) for v in spec.lower().split("x"))
        for name, ours, theirs, ours_ms, theirs_ms in run(args.images, (w, h), args.workers, args.repeats):
            print(
                f"{spec:>9} {name:<8} {ours:12.0f} {theirs:17.0f} {ours / theirs:6.2f}"
                f" {ours_ms:17.2f} {theirs_ms:22.2f} {theirs_ms / ours_ms:6.2f} {ours * ours_ms / 1000:8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
