"""`train(cfg)`: config -> checks before any work -> run directory -> data -> model -> callbacks -> loggers
-> Trainer -> fit -> summary. Reads top to bottom; each step is one call."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import Logger

from camexp import data
from camexp.callbacks.cam_metrics import CAMCallback
from camexp.callbacks.dashboards import EvaluationDashboards
from camexp.console import progress_callbacks, quiet_console, quiet_synced_metric_warnings
from camexp.errors import CheckpointError, CheckpointMismatchError
from camexp.loggers import build_loggers
from camexp.models import CAMNet
from camexp.models.camnet import head_name
from camexp.outputs import check_writable
from camexp.reports import read_results, results_table, write_results
from camexp.runs.checkpoints import AtomicCheckpointIO, checkpoint_callbacks, remove_stale_temporaries
from camexp.runs.ddp import shared_with_workers, workers_stop_with
from camexp.runs.directories import resolve_run_dir, write_run_dir_file
from camexp.runs.preemption import PreemptionCheckpoint
from camexp.runs.resume import ExactResume, RunRecord, check_resume_changes, drop_events_after_checkpoint
from camexp.wiring import (
    build_cam_callback,
    build_data,
    build_model,
    check_accelerator,
    check_localization_method,
    trainer_arguments,
    wandb_settings,
)


@quiet_console()
def train(cfg: DictConfig, run_dir_file: str | None = None) -> dict[str, float]:
    """Train and validate one experiment; returns the validation results (fractions). Rank 0 writes results.json,
    report.md and config.yaml into the run directory, and with `run_dir_file` that directory's path there."""
    started = time.time()
    run_dir, ckpt_path = resolve_run_dir(cfg.logger.save_dir, cfg.name, cfg.resume)
    resume_changes = check_resume_changes(cfg, run_dir, ckpt_path)  # before anything is written
    check_before_work(cfg, run_dir, run_dir_file)
    quiet_synced_metric_warnings()

    datamodule = build_data(cfg, "fit")
    model = build_model(cfg, datamodule.num_classes, datamodule.class_names)
    check_localization_method(cfg, model, "train")

    cam_callback = build_cam_callback(cfg, datamodule)
    best, last, *steps = checkpoint_callbacks(run_dir, cfg.trainer.checkpoint_every_n_steps)
    callbacks = [*training_callbacks(cfg, run_dir, cam_callback, ckpt_path, resume_changes), best, last, *steps]
    loggers = build_loggers(run_dir, cfg.logger.tensorboard, wandb_settings(cfg), resuming=ckpt_path is not None)
    trainer = training_trainer(cfg, run_dir, callbacks, loggers)
    wandb_logger = next((lg for lg in loggers if type(lg).__name__ == "WandbLogger"), None)
    if trainer.is_global_zero:
        prepare_run_dir(run_dir, ckpt_path, wandb_logger)
    try:
        # DDP workers re-run this command and inherit both; they stop with rank 0 when it fails
        with shared_with_workers(run_dir, ckpt_path), workers_stop_with(trainer):
            fit(trainer, model, datamodule, ckpt_path)

        results, kept = run_results(cam_callback, run_dir, ckpt_path)
        if trainer.is_global_zero:
            table = write_run_results(cfg, run_dir, results, kept, started)
            if run_dir_file:
                write_run_dir_file(run_dir_file, run_dir)
            summary = _summary(cfg, run_dir, table, last, cam_callback, results, head_name(model), wandb_logger)
            print(summary, flush=True)
    finally:
        if wandb_logger is not None and trainer.is_global_zero:
            from camexp.loggers import finish

            finish()  # the next train() in this process starts a new W&B run
    return results


def check_before_work(cfg: DictConfig, run_dir: Path, run_dir_file: str | None = None) -> None:
    """What would otherwise fail only after the data and model were built, or leave an empty run directory
    behind: a GPU that is not there, a folder that cannot be written, W&B online without a login."""
    check_accelerator(cfg.trainer.accelerator, cfg.trainer.devices)
    if run_dir.is_relative_to(Path(cfg.logger.save_dir)):
        fix = "Set logger.save_dir to a folder you can write (or fix its permissions)."
        check_writable(run_dir, f"the run directory, under logger.save_dir={cfg.logger.save_dir}", fix)
    else:  # resume=PATH, or a run directory given by CAMEXP_RUN_DIR
        fix = "Copy the run directory somewhere writable and resume from the copy (or fix its permissions)."
        check_writable(run_dir, "the run directory", fix)
    if run_dir_file:
        fix = "Give --run-dir-file a path in a folder you can write."
        check_writable(Path(run_dir_file).parent, f"the folder of --run-dir-file {run_dir_file}", fix)
    if cfg.logger.wandb.enabled:
        from camexp.loggers import check_login  # imports wandb: only when enabled

        check_login()


def training_callbacks(
    cfg: DictConfig, run_dir: Path, cam_callback: CAMCallback, ckpt_path: str | None, resume_changes: dict[str, tuple]
) -> list[Callback]:
    """Every callback of a training run but its checkpoints (Lightning runs those last whatever the order)."""
    return [
        cam_callback,
        EvaluationDashboards(cam_callback),  # per-class table, threshold curve (and W&B media) from cam_callback
        ExactResume(),  # a resumed run continues the data order and random stream where they were
        PreemptionCheckpoint(run_dir / "checkpoints"),  # SIGTERM/SIGUSR1: checkpoint, exit 128 + signum
        LearningRateMonitor(logging_interval="step"),
        # config.yaml (+ resume_changes.yaml) once a resumed checkpoint was restored into the model
        RunRecord(cfg, run_dir, ckpt_path, resume_changes),
        *progress_callbacks(cfg.trainer.enable_progress_bar),  # on stderr: stdout holds the results
    ]


def training_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[Callback], loggers: list[Logger]) -> pl.Trainer:
    """The fitting Trainer: the settings evaluation shares (`wiring.trainer_arguments`) and the training loop's."""
    t = cfg.trainer
    return pl.Trainer(
        **trainer_arguments(cfg, run_dir),
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        log_every_n_steps=t.log_every_n_steps,
        limit_train_batches=t.limit_train_batches,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        num_sanity_val_steps=t.num_sanity_val_steps,
        gradient_clip_val=t.gradient_clip_val,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],  # write + rename in the checkpoint folder: a kill keeps the old file
    )


def prepare_run_dir(run_dir: Path, ckpt_path: str | None, wandb_logger: Logger | None) -> None:
    """Rank 0, before fitting: temporaries of saves a kill interrupted go; the W&B run id is kept for a resume;
    a resumed run drops what was logged after its checkpoint (it logs those steps again)."""
    remove_stale_temporaries(run_dir)
    if wandb_logger is not None:
        from camexp.loggers import remember_run_id

        remember_run_id(wandb_logger, run_dir)
    if ckpt_path:
        drop_events_after_checkpoint(run_dir, ckpt_path)


def fit(trainer: pl.Trainer, model: CAMNet, datamodule: data.CAMDataModule, ckpt_path: str | None) -> None:
    """trainer.fit; a resumed checkpoint is read with weights_only=True whatever the torch version (a pickled
    object in it is refused, never run), and one whose weights do not fit the network (a change accepted with
    resume_changes=allow) is named in one paragraph. Nothing was recorded yet (runs.resume.RunRecord)."""
    import pickle

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"Cannot resume from {ckpt_path} safely (weights_only=True): {str(err).splitlines()[0][:200]} "
            f"A camexp checkpoint holds only tensors and plain values; this one carries other objects. Resume from "
            f"a checkpoint camexp wrote (resume=PATH), or start the run without resume."
        ) from None
    except RuntimeError as err:
        if ckpt_path is None or "Error(s) in loading state_dict" not in str(err):
            raise
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), "")[:240]
        raise CheckpointMismatchError(
            f"{ckpt_path} does not fit the network these settings build ({detail}); the run's "
            f"config.yaml is unchanged. Resume without the changes to the network (model.*, the number of classes), "
            f"or start a new run without resume."
        ) from None


def run_results(cam_callback: CAMCallback, run_dir: Path, ckpt_path: str | None) -> tuple[dict[str, float], bool]:
    """The validation results of this fit, and whether they are a finished run's kept results.json (a resume of
    a run that had already finished: nothing was trained or evaluated now)."""
    results = dict(cam_callback.last_results)
    kept = ckpt_path is not None and not results and (run_dir / "results.json").is_file()
    return (read_results(run_dir) if kept else results), kept


def write_run_results(cfg: DictConfig, run_dir: Path, results: dict[str, float], kept: bool, started: float) -> str:
    """Rank 0: results.json (with the wall time) and report.md, unless a finished run's are kept; the table."""
    if kept:
        print(f"camexp: {run_dir} had already finished (trainer.max_epochs={cfg.trainer.max_epochs}); its "
              f"results.json and report.md are kept.", file=sys.stderr)  # fmt: skip
    else:
        results["wall_time_s"] = round(time.time() - started, 1)
        write_results(run_dir, results)
    table = results_table(results, "val", cfg.model.name, cfg.model.pool, cfg.eval.method)
    if not kept:
        (run_dir / "report.md").write_text(f"# {cfg.name}\n\n{table}\n")
    return table


def _summary(
    cfg: DictConfig,
    run_dir: Path,
    table: str,
    checkpoints: ModelCheckpoint,
    cam_callback: CAMCallback,
    results: dict[str, float],
    head: str,
    wandb_logger: Logger | None,
) -> str:
    """What rank 0 prints on stdout when the run ends: the results table and where everything is."""
    images = int(results.get("val/num_images", 0))
    skipped = int(results.get("val/skipped_images", 0))
    # Lightning stores the checkpoint's real path; print it under the run directory like the other paths
    checkpoint = Path(checkpoints.last_model_path or checkpoints.best_model_path)
    lines = [
        "",
        f"== {cfg.name}: {cfg.model.name} ({head}) on {cfg.data.name}: trained and validated in "
        f"{results.get('wall_time_s', 0):.0f} s; validation: {images} images ==",
        table,
        "",
    ]
    if skipped:
        lines.append(f"Skipped {skipped} corrupt validation images (data.skip_corrupt=true).")
    lines += [
        f"run directory : {run_dir}",
        f"config        : {run_dir / 'config.yaml'}",
        f"checkpoint    : {run_dir / 'checkpoints' / checkpoint.name}",
        f"CAM overlays  : {cam_callback.last_overlay_path}",
        f"TensorBoard   : tensorboard --logdir {run_dir.parent}",
    ]
    if wandb_logger is not None:
        from camexp.loggers import run_location

        lines.append(f"W&B run       : {run_location(wandb_logger)}")
    return "\n".join(lines)
