"""Record every number and picture camexp writes on fixed inputs, to prove a refactor changes none of them.

    python tests/record_outputs.py --out /tmp/eq_before.json       # on the old code
    python tests/record_outputs.py --out /tmp/eq_after.json        # on the new code
    python tests/record_outputs.py --compare /tmp/eq_before.json /tmp/eq_after.json

The script runs the real commands in a scratch folder (always the same path, so paths inside reports
compare equal; CAMEXP_RECORD_SCRATCH picks another):
train with both protocols (trained weights) and for one batch at lr=1e-30 (fresh weights), validate on
1 and 2 processes, evaluate with saved maps, evaluate-maps on them, report, compare, cam, probe,
units, finegrained and the text detector.
It then records a digest of every file they wrote: TensorBoard scalars and images by value, PNGs by
their decoded pixels, .npy by bytes, JSON and text with wall times and dates masked. Not a pytest test:
it trains several networks (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRATCH = Path(os.environ.get("CAMEXP_RECORD_SCRATCH", "/tmp/camexp_record_outputs"))  # paths inside are masked
REPO = Path(__file__).resolve().parents[1]
SKIP_NAMES = {"hparams.yaml", "console.log", "wandb_run_id"}  # Lightning's own dump; timing only; W&B's random id
TIMING = re.compile(
    r"\d+(\.\d+)? ?(s|ms|min)\b|\d{4}-\d\d-\d\d[ T_][\d:._-]+|\d+(\.\d+)? ?(images|it)/s"
    r"|\[\d\d:\d\d<[^\]]*\]|offline-run-\d{8}_\d{6}-\w+"  # progress bars; W&B's run folder (a date and a random id)
)


def camexp(*args: str) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "camexp", *args]
    done = subprocess.run(cmd, cwd=SCRATCH, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    (SCRATCH / "stdout").mkdir(exist_ok=True)
    camexp.calls = getattr(camexp, "calls", 0) + 1
    name = f"{camexp.calls:02d}_{args[0]}"
    (SCRATCH / "stdout" / f"{name}.txt").write_text(done.stdout)


def run_all() -> None:
    if SCRATCH.exists():
        shutil.rmtree(SCRATCH)
    SCRATCH.mkdir(parents=True)
    exp = str(REPO / "experiments" / "synthloc_gap.yaml")
    common = [
        "data.root=synth", "data.num_workers=0", "data.batch_size=32", "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false", "logger.save_dir=logs", "eval.num_overlays=8",
        "data.synth.n_train=192", "data.synth.n_val=48", "logger.wandb.enabled=true",
    ]
    camexp("synth", "--out", "synth", "--n-train", "192", "--n-val", "48")
    camexp("train", exp, *common, "name=paper", "eval.heuristic_top5=true", "--run-dir-file", "paper.dir")
    camexp("train", exp, *common, "name=wsol", "eval.protocol=wsoleval", "--run-dir-file", "wsol.dir")
    fresh = ["name=fresh", "optim.lr=1e-30", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]
    camexp("train", exp, *common, *fresh, "--run-dir-file", "fresh.dir")
    runs = {n: (SCRATCH / f"{n}.dir").read_text().strip() for n in ("paper", "wsol", "fresh")}
    for name, run in runs.items():
        ckpt = f"{run}/checkpoints/last.ckpt"
        camexp("validate", ckpt, "--out", f"validate_{name}.json")
        camexp("evaluate", ckpt, "--save-maps", "--out", f"evaluate_{name}")
        camexp("evaluate-maps", "--metadata", f"evaluate_{name}/metadata", "--maps", f"evaluate_{name}/maps",
               "--json", f"evaluate_maps_{name}.json")
        camexp("report", run)
    camexp("validate", f"{runs['paper']}/checkpoints/last.ckpt", "trainer.devices=2", "trainer.strategy=ddp",
           "--out", "validate_paper_ddp.json")
    camexp("compare", runs["paper"], runs["wsol"], runs["fresh"])
    camexp("cam", "synth/images", "--ckpt", f"{runs['paper']}/checkpoints/last.ckpt", "--out", "cam_paper",
           "--workers", "0", "--device", "cpu")
    data = ["--data", exp, *common[:2], "data.synth.n_train=192", "data.synth.n_val=48"]
    paper_ckpt = f"{runs['paper']}/checkpoints/last.ckpt"
    camexp("probe", "--features", paper_ckpt, *data, "--out", "probe", "--no-cache", "--device", "cpu")
    # The paper's section 4 on the same network: class-specific units, CAM crops, the text (concept) detector.
    camexp("units", paper_ckpt, *data, "--out", "units", "--no-cache", "--device", "cpu")
    camexp("finegrained", paper_ckpt, *data, "--out", "finegrained", "--no-cache", "--device", "cpu")
    camexp("text-demo", "--features", paper_ckpt, "--n", "16", "--size", "128", "--out", "text_demo", "--no-cache",
           "--device", "cpu")


def digest_file(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".png" or suffix == ".jpg":
        with Image.open(path) as img:
            return hashlib.sha256(np.asarray(img.convert("RGBA")).tobytes()).hexdigest()
    if suffix == ".npy":
        return hashlib.sha256(np.load(path, allow_pickle=False).tobytes()).hexdigest()
    if suffix == ".ckpt":
        return "checkpoint"  # its weights show in every number below; its pickle layout may change
    if path.name.startswith("events.out.tfevents"):
        return digest_events(path)
    if suffix == ".wandb" or "wandb" in path.parts and suffix not in {".json", ".yaml", ".md", ".txt"}:
        return "wandb-binary"  # W&B's own records carry run ids and times; the same values are in TensorBoard
    text = path.read_text(errors="replace")
    text = text.replace(str(SCRATCH), "<scratch>")
    if suffix == ".json":
        try:
            return json.dumps(mask_json(json.loads(text)), sort_keys=True)
        except json.JSONDecodeError:
            pass
    return TIMING.sub("<t>", text)


def mask_json(value):
    if isinstance(value, dict):
        return {k: ("<t>" if re.search(r"time|seconds|_s$|date|wall", k) else mask_json(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_json(v) for v in value]
    if isinstance(value, str):
        return TIMING.sub("<t>", value)
    return value


def digest_events(path: Path) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    lines = []
    for tag in sorted(acc.Tags()["scalars"]):
        if "time" in tag or "per_sec" in tag:
            continue
        lines += [f"{tag} {e.step} {e.value!r}" for e in acc.Scalars(tag)]
    for tag in sorted(acc.Tags()["images"]):
        lines += [f"{tag} {e.step} {hashlib.sha256(e.encoded_image_string).hexdigest()}" for e in acc.Images(tag)]
    return "\n".join(lines)


def record() -> dict[str, str]:
    found = {}
    for path in sorted(SCRATCH.rglob("*")):
        rel = path.relative_to(SCRATCH)
        if not path.is_file() or path.name in SKIP_NAMES or rel.parts[0] in {"synth"} or "feature_cache" in rel.parts:
            continue
        if "wandb" in rel.parts and path.suffix not in {".json", ".yaml"}:
            continue
        key = re.sub(r"events\.out\.tfevents\.[^/]*", "events", str(rel))
        key = re.sub(r"run-\d{8}_\d{6}-\w+", "run", key)
        found[key] = digest_file(path)
    return found


def compare(before: dict[str, str], after: dict[str, str]) -> int:
    """Masks apply again here, so a record made before a mask was added compares with one made after."""
    before = {k: TIMING.sub("<t>", v) for k, v in before.items() if Path(k).name not in SKIP_NAMES}
    after = {k: TIMING.sub("<t>", v) for k, v in after.items() if Path(k).name not in SKIP_NAMES}
    missing, added = sorted(set(before) - set(after)), sorted(set(after) - set(before))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    for title, keys in (("only before", missing), ("only after", added), ("changed", changed)):
        for key in keys:
            print(f"{title}: {key}")
    print(f"{len(before)} files before, {len(after)} after: {len(changed)} changed, "
          f"{len(missing)} gone, {len(added)} new")
    return 1 if missing or added or changed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the digests here (JSON)")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(Path(p).read_text()) for p in args.compare)
        return compare(before, after)
    run_all()
    Path(args.out).write_text(json.dumps(record(), indent=1, sort_keys=True))
    print(f"recorded {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
