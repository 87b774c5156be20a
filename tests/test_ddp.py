"""DDP: one run directory for every rank, rank 0 writes the files, and an odd-sized validation set on 2
processes gives exactly the metrics of 1 process (real gloo processes on the CPU)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from camexp import config
from camexp.errors import CamexpError
from camexp.runs.ddp import shared_with_workers
from camexp.runs.directories import RESUME_ENV, RUN_DIR_ENV, resolve_run_dir
from tests.conftest import REPO, TINY_SYNTH, tiny_overrides

_LAUNCH_VARS = (RUN_DIR_ENV, RESUME_ENV, "SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_JOB_NAME", "WORLD_SIZE",
                "TORCHELASTIC_RUN_ID")  # fmt: skip


@pytest.fixture
def clean_launch_env(monkeypatch):
    for name in _LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _resolve(cfg):
    return resolve_run_dir(cfg.logger.save_dir, cfg.name, cfg.resume)


def _cfg(tmp_path, *overrides):
    return config.load(REPO / "experiments" / "synthloc_gap.yaml", [f"logger.save_dir={tmp_path}", *overrides])


def test_lightning_workers_use_the_run_dir_and_checkpoint_rank0_chose(clean_launch_env, tmp_path):
    cfg = _cfg(tmp_path, "resume=last")  # resume=last would fail here: nothing to resume; the worker must not look
    with shared_with_workers(tmp_path / "x" / "version_7", "/ckpts/step.ckpt"):
        assert _resolve(cfg) == (tmp_path / "x" / "version_7", "/ckpts/step.ckpt")
    assert RUN_DIR_ENV not in os.environ and RESUME_ENV not in os.environ  # restored for the next run


def test_srun_tasks_agree_on_a_run_dir_named_after_the_job(clean_launch_env, tmp_path):
    (tmp_path / "synthloc_gap" / "version_0").mkdir(parents=True)  # another task may create dirs meanwhile
    clean_launch_env.setenv("SLURM_NTASKS", "16")
    clean_launch_env.setenv("SLURM_JOB_ID", "4242")
    clean_launch_env.setenv("SLURM_JOB_NAME", "train_googlenet_gap")
    assert _resolve(_cfg(tmp_path)) == (tmp_path / "synthloc_gap" / "slurm_4242", None)


def test_torchrun_without_a_run_id_is_refused_with_the_fix(clean_launch_env, tmp_path):
    clean_launch_env.setenv("WORLD_SIZE", "4")
    clean_launch_env.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(CamexpError, match="--standalone"):
        _resolve(_cfg(tmp_path))
    clean_launch_env.setenv("TORCHELASTIC_RUN_ID", "job17")
    assert _resolve(_cfg(tmp_path))[0] == tmp_path / "synthloc_gap" / "torchrun_job17"


def _camexp(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in _LAUNCH_VARS:
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "camexp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _tensorboard_scalars(run_dir: Path, prefix: str) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"] if tag.startswith(prefix)}


@pytest.mark.slow
def test_two_gloo_processes_give_exactly_the_metrics_of_one(tiny_synthloc, tmp_path):
    assert TINY_SYNTH["n_val"] % 2 == 1  # 21 images: 11 + 10 on two ranks, nothing padded
    ddp = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
    # A lenient box rule so the tiny 2-epoch model scores some localization hits (counts worth comparing).
    extra = {"trainer.max_epochs": 2, "eval.cam_threshold": 0.55, "eval.iou_threshold": 0.3}
    overrides = tiny_overrides(tiny_synthloc, tmp_path / "logs", **extra)
    _camexp(["train", str(REPO / "experiments" / "synthloc_gap.yaml"), *overrides, *ddp], cwd=tmp_path)

    experiment = tmp_path / "logs" / "synthloc_gap"
    assert [p.name for p in experiment.iterdir()] == ["version_0"]  # the worker joined rank 0's run
    run_dir = experiment / "version_0"
    for name in ("config.yaml", "results.json", "report.md", "overlays/val_epoch001.png", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # rank 0 logs; rank 1 only contributes
    assert OmegaConf.load(run_dir / "config.yaml").trainer.devices == 2
    assert not (run_dir / "wandb").exists()  # W&B is off by default

    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    one = tmp_path / "one.json"
    two = tmp_path / "two.json"
    _camexp(["validate", "--out", str(one), ckpt, "trainer.devices=1"], cwd=tmp_path)
    printed = _camexp(["validate", "--out", str(two), ckpt, *ddp], cwd=tmp_path).stdout
    assert "2 process(es)" in printed
    one, two = json.loads(one.read_text()), json.loads(two.read_text())

    m1, m2 = one["metrics"], two["metrics"]
    assert m1["val/num_images"] == 21  # not 22: no sample counted twice
    assert set(m1) == set(m2) and {"val/loss", "val/acc_top1", "val/loc_gt_known"} <= set(m1)
    for key in m1:  # counts-based metrics exactly; the loss to float precision (per-image sums, other batching)
        if key == "val/loss":
            assert math.isclose(m1[key], m2[key], rel_tol=1e-6), (m1[key], m2[key])
        else:
            assert m1[key] == m2[key], key
    assert m1["val/loc_gt_known"] > 0 and m1["val/acc_top1"] > 0
    assert one["per_class"] == two["per_class"] and sum(one["per_class"]["images"]) == 21
    assert one["curve"] == two["curve"]

    # The training run's own 2-process validation (same weights: last.ckpt is saved after it) agrees too.
    logged = _tensorboard_scalars(run_dir, "val/")
    assert set(logged) == set(m1)
    for key in m1:
        assert math.isclose(logged[key], m1[key], rel_tol=1e-6 if key == "val/loss" else 1e-7), key
    print("\n| metric | 1 process | 2 processes | 2 processes (training run) |\n|---|---:|---:|---:|")
    for key in sorted(m1):
        print(f"| {key} | {m1[key]:.9g} | {m2[key]:.9g} | {logged[key]:.9g} |")


def _corrupt_val_image(src: Path, dst: Path, position: int) -> Path:
    """A copy of the set with its `position`-th validation image (in id order) cut short; ShardSampler gives
    position p to rank p % world_size."""
    shutil.copytree(src, dst)
    split = [line.split() for line in (dst / "train_test_split.txt").read_text().splitlines() if line.strip()]
    images = dict(line.split() for line in (dst / "images.txt").read_text().splitlines() if line.strip())
    val_ids = sorted(int(image_id) for image_id, is_train in split if is_train == "0")
    victim = dst / "images" / images[str(val_ids[position])]
    victim.write_bytes(victim.read_bytes()[:200])
    return victim


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1], ids=["rank0", "rank1"])
def test_a_corrupt_image_in_one_rank_s_shard_gives_one_message_and_no_traceback(tiny_synthloc, tmp_path, rank):
    victim = _corrupt_val_image(tiny_synthloc, tmp_path / "synthloc", position=rank)
    extra = {"data.batch_size": 8, "data.skip_corrupt": "false", "trainer.limit_train_batches": 1}
    ddp = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
    overrides = tiny_overrides(tmp_path / "synthloc", tmp_path / "logs", **extra)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in _LAUNCH_VARS:
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "camexp", "train", str(REPO / "experiments" / "synthloc_gap.yaml"), *overrides, *ddp],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-4000:]
    lines = done.stderr.splitlines()
    # the failing rank's camexp message, once; rank 0 adds one line when the other rank failed; nothing else
    assert [line for line in lines if str(victim) in line] == [lines[0]], done.stderr[-4000:]
    assert lines[0].startswith("camexp: error: Cannot decode image") and "skip_corrupt" in lines[0]
    assert len(lines) == 1 + rank, lines  # rank 0 failed: it stopped its worker silently
    if rank == 1:
        assert lines[1].startswith("camexp: error: Another process of this 2-process run stopped"), lines
    assert "Traceback" not in done.stderr and "gloo" not in done.stderr
    assert done.stdout == ""
