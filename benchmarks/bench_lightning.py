"""Benchmark: what the Lightning Trainer, set up as `camexp train` sets it up, costs a training epoch.

    python benchmarks/bench_lightning.py [--quick] [--n-train 2000] [--repeats 5] [key=value ...]

The default experiment (experiments/synthloc_gap.yaml: SynthNet-GAP, width 32, input 128, batch 64, 2 loader
workers, fp32, SGD + warmup/cosine, on CPU; `key=value` overrides it like `camexp train`) on a SynthLoc train
split generated in a temporary folder. Two sides, in one process, on the same DataLoader object (the
DataModule's training loader: its sampler, workers, collate and random crops), each with a fresh CAMNet from
the same seed and the optimizer and scheduler of `CAMNet.configure_optimizers`:

- Lightning: `trainer.fit` for one epoch with what `camexp train` adds to training: TensorBoard logging every
  `trainer.log_every_n_steps`, LearningRateMonitor, ExactResume, PreemptionCheckpoint, the `training_step`
  logging; no validation, progress bar off, no checkpoint files (the plain loop writes none either).
- plain: `for batch in loader`: forward, cross-entropy (and the batch accuracy training_step computes),
  zero_grad, backward, optimizer step, scheduler step.

Timed in wall seconds (the loader workers are other processes) from the epoch's start (Lightning's
on_train_epoch_start; the plain loop's `iter`) to the last step's end, so both windows hold the same steps.
One warm-up epoch each, then --repeats epochs each, alternating (plain, Lightning, plain, ...), so both sides see
the same page cache and background load; the table gives the median and best of each. `fit` is the whole
`trainer.fit` call (Trainer setup and teardown included): informative, paid once per run, not per epoch.
Goal: Lightning's images/s >= 0.97x the plain loop's (ratio of the medians).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback, LearningRateMonitor

from camexp import config, data
from camexp.console import quiet_console
from camexp.loggers import build_loggers
from camexp.runs.preemption import PreemptionCheckpoint
from camexp.runs.resume import ExactResume
from camexp.wiring import build_model

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "synthloc_gap.yaml"
GOAL = 0.97


class EpochClock(Callback):
    """Wall seconds from on_train_epoch_start to the end of the last training batch, and the images seen."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.images = self.steps = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch["label"])
        self.steps += 1
        self.end = time.perf_counter()


class _StepsOnly:
    """What CAMNet.configure_optimizers reads from its trainer (the schedule's length), for the plain loop."""

    def __init__(self, steps: int) -> None:
        self.estimated_stepping_batches = steps


def fresh_model(cfg, datamodule) -> pl.LightningModule:
    torch.manual_seed(cfg.seed)  # the same initial weights on both sides
    return build_model(cfg, datamodule.num_classes, datamodule.class_names)


def device_of(cfg) -> torch.device:
    accelerator = cfg.trainer.accelerator
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if cuda else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_epoch(cfg, datamodule, loader) -> tuple[float, float, int, int]:
    """(epoch seconds, the same, images, steps) of one epoch of a plain PyTorch loop."""
    device = device_of(cfg)
    model = fresh_model(cfg, datamodule).to(device)
    model.trainer = _StepsOnly(len(loader))
    optimizers = model.configure_optimizers()
    model.trainer = None
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    clip = cfg.trainer.gradient_clip_val
    loader.sampler.set_epoch(0)  # as Lightning does before the epoch
    model.train()
    images = steps = 0
    synchronize(device)
    start = time.perf_counter()
    for batch in loader:
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        logits = model(image)
        loss = F.cross_entropy(logits, label)
        (logits.argmax(1) == label).float().mean()  # training_step's batch accuracy
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        images, steps = images + len(label), steps + 1
    synchronize(device)
    seconds = time.perf_counter() - start
    return seconds, seconds, images, steps


def lightning_epoch(cfg, datamodule, loader, run_dir: Path) -> tuple[float, float, int, int]:
    """(epoch seconds, whole fit seconds, images, steps) of one `trainer.fit` epoch as `camexp train` runs it."""
    model = fresh_model(cfg, datamodule)
    clock = EpochClock()
    t = cfg.trainer
    started = time.perf_counter()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator=t.accelerator,
        devices=1,
        precision=t.precision,
        deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=t.gradient_clip_val,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=build_loggers(run_dir, cfg.logger.tensorboard, None) or False,  # TensorBoard, as camexp train logs
        callbacks=[
            ExactResume(),
            PreemptionCheckpoint(run_dir / "checkpoints"),
            LearningRateMonitor(logging_interval="step"),
            clock,
        ],
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,
    )
    trainer.fit(model, train_dataloaders=loader)
    synchronize(device_of(cfg))
    fit_seconds = time.perf_counter() - started
    return clock.end - clock.start, fit_seconds, clock.images, clock.steps


@quiet_console()  # the libraries' chatter off: the table alone on stdout
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="640 training images and 3 repeats")
    parser.add_argument("--n-train", type=int, default=None, help="training images (default 2000; --quick 640)")
    parser.add_argument("--repeats", type=int, default=None, help="timed epochs per side (default 5; --quick 3)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, as for `camexp train`")
    args = parser.parse_args()
    n_train = args.n_train or (640 if args.quick else 2000)
    repeats = args.repeats or (3 if args.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"data.root={tmp}/synthloc", f"data.synth.n_train={n_train}", "data.synth.n_val=10",
                     *args.overrides]  # fmt: skip
        cfg = config.load(EXPERIMENT, overrides)
        datamodule = data.build(cfg.data, str(config.data_root(cfg)), seed=cfg.seed)
        datamodule.prepare_data()
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()  # one loader for both sides (persistent workers, if configured)
        logs = Path(tmp) / "logs" / "bench"

        def plain() -> tuple[float, float, int, int]:
            return plain_epoch(cfg, datamodule, loader)

        def lightning(version: int) -> tuple[float, float, int, int]:
            return lightning_epoch(cfg, datamodule, loader, logs / f"version_{version}")

        plain(), lightning(0)  # warm-up: workers, page cache, allocator, first-call imports
        pairs = [(plain(), lightning(i)) for i in range(1, repeats + 1)]
    plain_runs, lightning_runs = [p for p, _ in pairs], [lg for _, lg in pairs]
    if {(r[2], r[3]) for r in plain_runs + lightning_runs} != {(plain_runs[0][2], plain_runs[0][3])}:
        print("the two sides did not run the same steps: no comparison", file=sys.stderr)
        return 1
    images, steps = plain_runs[0][2], plain_runs[0][3]

    def rates(runs: list[tuple[float, float, int, int]]) -> tuple[float, float, float]:
        epoch = [r[0] for r in runs]
        return images / statistics.median(epoch), images / min(epoch), statistics.median(r[1] for r in runs)

    print(
        f"training epoch, {cfg.model.name} width {cfg.model.width}, input {cfg.data.input_size}, batch "
        f"{cfg.data.batch_size}, {cfg.data.num_workers} workers, {cfg.trainer.precision}, {device_of(cfg).type}: "
        f"{images} images in {steps} steps; median and best of {repeats} epochs per side, alternating"
    )
    print(f"{'side':<10} {'img/s (median)':>14} {'img/s (best)':>12} {'fit s (median)':>14}")
    plain_median, plain_best, _ = rates(plain_runs)
    lightning_median, lightning_best, fit_seconds = rates(lightning_runs)
    print(f"{'plain':<10} {plain_median:14.1f} {plain_best:12.1f} {'-':>14}")
    print(f"{'Lightning':<10} {lightning_median:14.1f} {lightning_best:12.1f} {fit_seconds:14.2f}")
    ratio = lightning_median / plain_median
    print(f"ratio Lightning / plain: {ratio:.3f}x (medians), {lightning_best / plain_best:.3f}x (best)")
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"goal: Lightning >= {GOAL:.2f}x the plain loop's images/s (medians) -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
