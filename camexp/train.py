"""`train(cfg)`: config -> run directory and the checks before any work -> data -> model -> callbacks -> loggers
-> Trainer -> fit -> report. Reads top to bottom."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from camexp import config, data
from camexp import runs as faults
from camexp.callbacks.cam_metrics import CAMCallback
from camexp.callbacks.dashboards import EvaluationDashboards
from camexp.console import progress_callbacks, quiet_console, verbose
from camexp.errors import CamexpError, CheckpointMismatchError, ConfigError
from camexp.loggers import WandbSettings, build_loggers
from camexp.models import CAMNet, available_networks
from camexp.outputs import check_writable, output_file
from camexp.reports import read_results, results_table, write_results

RUN_DIR_ENV = "CAMEXP_RUN_DIR"  # the run directory: set by rank 0 for the DDP workers it starts, or by a launch script
RESUME_ENV = "CAMEXP_RESUME_CKPT"  # the checkpoint rank 0 resumes from ("" for none), for its DDP workers


def build_model(cfg: DictConfig, num_classes: int, class_names: list[str]) -> CAMNet:
    m = cfg.model
    return CAMNet(
        network=m.name,
        num_classes=num_classes,
        pool=m.pool,
        width=m.width,
        dropout=m.dropout,
        pretrained=m.pretrained,
        weights_path=m.weights_path,
        optim=OmegaConf.to_container(cfg.optim),
        class_names=class_names,
        input_size=cfg.data.input_size,
        normalize=cfg.data.normalize,
    )


def head_name(model: CAMNet) -> str:
    """GAP, GMP or FC: the network's head as the paper names it (from the built network, since
    googlenet_gmp pools by max whatever model.pool says, and an FC network has no global pooling)."""
    if not model.cam_capable:
        return "FC"
    return "GMP" if getattr(model.net, "pool", "avg") == "max" else "GAP"


def check_localization_method(cfg: DictConfig, model: CAMNet, command: str) -> None:
    """Refuse eval.method=cam for a network without a CAM (fully connected head) before any work: every
    localization metric would be missing from the results."""
    if cfg.eval.method != "cam" or model.cam_capable:
        return
    name = cfg.model.name
    gap = f"{name}_gap" if f"{name}_gap" in available_networks() else "a GAP network such as alexnet_gap"
    raise ConfigError(
        f"model.name={name} has a fully connected head: it has no class activation map, so eval.method=cam "
        f"would report no localization metric at all. Add eval.method=backprop to the `camexp {command}` "
        f"command (the paper's Backprop baseline for FC networks), or train {gap} for CAMs."
    )


def _versions(experiment_dir: Path) -> list[int]:
    found = [p.name.split("_", 1)[1] for p in experiment_dir.glob("version_*") if p.is_dir()]
    return sorted(int(v) for v in found if v.isdigit())


def external_launch_name() -> str | None:
    """A run name that every process of an externally launched job (srun, torchrun) computes alike.

    Those processes start together and cannot ask rank 0 which version_N it picked, so the name comes
    from the job: slurm_<job id> or torchrun_<run id>. None when Lightning starts the processes itself.
    """
    tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    if tasks > 1 and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive") and "SLURM_JOB_ID" in os.environ:
        return f"slurm_{os.environ['SLURM_JOB_ID']}"
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "TORCHELASTIC_RUN_ID" in os.environ:
        run_id = os.environ["TORCHELASTIC_RUN_ID"]
        if run_id in ("", "none"):
            raise CamexpError(
                "torchrun started this run without a run id, so its processes cannot agree on a run directory. "
                "Pass --standalone (one node) or --rdzv-id=<unique id> (several nodes), "
                f"or export {RUN_DIR_ENV}=<run dir> for every process."
            )
        return f"torchrun_{run_id}"
    return None


def resolve_run_dir(cfg: DictConfig) -> tuple[Path, str | None]:
    """The run directory (save_dir/name/version_N) and the checkpoint to resume from, if any.

    resume=last continues from the newest checkpoint of this experiment (last.ckpt or a step
    checkpoint; a damaged newest file is skipped with a warning naming it); resume=auto does the
    same, or starts afresh when there is none (for requeued jobs); resume=PATH resumes that file in
    its own run directory, and fails with a message naming it if it is damaged. DDP worker processes
    started by Lightning take what rank 0 chose (RUN_DIR_ENV, RESUME_ENV).
    """
    experiment_dir = Path(cfg.logger.save_dir) / cfg.name
    fixed = os.environ.get(RUN_DIR_ENV)
    if fixed and RESUME_ENV in os.environ:  # a worker process: rank 0 already decided
        return Path(fixed), os.environ[RESUME_ENV] or None
    if cfg.resume in ("last", "auto"):
        run_dir = Path(fixed) if fixed else faults.newest_run_with_checkpoint(experiment_dir)
        ckpt = faults.newest_valid_checkpoint(run_dir) if run_dir else None
        if ckpt is not None:
            return run_dir, str(ckpt)
        if cfg.resume == "last":
            where = run_dir / "checkpoints" if run_dir else experiment_dir / "*" / "checkpoints"
            raise CamexpError(
                f"resume=last but no valid checkpoint was found in {where}. "
                f"Start the run without resume (or with resume=auto), or pass resume=PATH/TO.ckpt."
            )
    elif cfg.resume:
        ckpt = faults.check_checkpoint(cfg.resume)
        return (Path(fixed) if fixed else ckpt.parent.parent), str(ckpt)
    if fixed:
        return Path(fixed), None
    launch = external_launch_name()
    if launch:
        return experiment_dir / launch, None
    versions = _versions(experiment_dir)
    return experiment_dir / f"version_{versions[-1] + 1 if versions else 0}", None


def check_resume_changes(cfg: DictConfig, run_dir: Path, ckpt_path: str | None) -> dict[str, tuple]:
    """On a resume, the settings that differ from the run's config.yaml ({key: (old, new)};
    config.RESUME_IGNORED aside), refused unless resume_changes=allow. Only reads: a refused resume
    leaves the run directory as it was."""
    saved = run_dir / "config.yaml"
    if ckpt_path is None or not saved.is_file():
        return {}
    resolved = OmegaConf.to_container(cfg, resolve=True)
    changes = config.resume_changes(config.as_written(cfg), config.load_written(saved), resolved)
    if changes and cfg.resume_changes != "allow":
        listed = "; ".join(f"{key}: {old} -> {new}" for key, (old, new) in changes.items())
        raise CamexpError(
            f"resume={cfg.resume} continues {run_dir}, but these settings differ from its config.yaml: {listed}. "
            f"Its checkpoint was trained with the old values, so the run would mix two experiments. Resume with "
            f"the run's own settings (leave these overrides out), start a new run (without resume), or add "
            f"resume_changes=allow to continue with the new values: they are then listed in "
            f"{run_dir / faults.RESUME_CHANGES_FILE} and written to config.yaml."
        )
    return changes


def check_accelerator(accelerator: str, devices=None) -> None:
    """A GPU that is not there (trainer.accelerator=gpu|cuda|mps), or more GPUs than there are, fails here in one
    paragraph instead of deep inside Lightning."""
    name = str(accelerator).lower()
    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        built = "" if torch.version.cuda else "; this torch was built without CUDA"
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is usable here (torch.cuda.is_available() is "
            f"False{built}). Use trainer.accelerator=auto (the GPU when there is one, else the CPU) or "
            f"trainer.accelerator=cpu; on a GPU machine, check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES."
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but Apple's MPS is not available here. "
            f"Use trainer.accelerator=auto or trainer.accelerator=cpu."
        )
    cuda = name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())
    if cuda and isinstance(devices, int) and devices > torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(
            f"trainer.devices={devices} but this machine has {count} visible GPU(s). Set trainer.devices to at most "
            f"{count} (-1: all of them), or spread the processes over machines with trainer.num_nodes."
        )


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


def quiet_synced_metric_warnings() -> None:
    """CAMCallback logs val/test values that its torchmetrics already reduced over the ranks; Lightning's
    advice to log them with sync_dist=True would reduce them twice, so silence it for those keys."""
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\('(val|test)/")


@contextlib.contextmanager
def shared_with_workers(run_dir: Path, ckpt_path: str | None) -> Iterator[None]:
    """Tell the DDP worker processes that Lightning starts (they re-run this command) which run
    directory and checkpoint rank 0 chose; restore the environment afterwards."""
    saved = {key: os.environ.get(key) for key in (RUN_DIR_ENV, RESUME_ENV)}
    os.environ[RUN_DIR_ENV], os.environ[RESUME_ENV] = str(run_dir), ckpt_path or ""
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wandb_settings(cfg: DictConfig) -> WandbSettings | None:
    """logger.wandb as the loggers take it (None when disabled); the run config is the experiment as written:
    resolved, but ${oc.env:...} as written, so no secret reaches the W&B config."""
    w = cfg.logger.wandb
    if not w.enabled:
        return None
    return WandbSettings(w.project, w.entity, list(w.tags), w.log_model, cfg.name, config.as_written(cfg))


def build_cam_callback(cfg: DictConfig, datamodule: data.CAMDataModule, protocol: str | None = None) -> CAMCallback:
    """CAMCallback as the config sets it up; ``protocol`` overrides ``eval.protocol``."""
    return CAMCallback(
        datamodule.class_names,
        *datamodule.mean_std,
        cam_threshold=cfg.eval.cam_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        num_overlays=cfg.eval.num_overlays,
        method=cfg.eval.method,
        heuristic_top5=cfg.eval.heuristic_top5,
        protocol=protocol or cfg.eval.protocol,
        box_thresholds=cfg.eval.box_thresholds,
        wsoleval_size=cfg.eval.wsoleval_size,
    )


def fit(trainer: pl.Trainer, model: CAMNet, datamodule: data.CAMDataModule, ckpt_path: str | None) -> None:
    """trainer.fit; a resumed checkpoint is read with weights_only=True whatever the torch version (a pickled
    object in it is refused, never run), and one whose weights do not fit the network (a change accepted with
    resume_changes=allow) is named in one paragraph. Nothing was recorded yet (faults.RunRecord)."""
    import pickle

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except pickle.UnpicklingError as err:
        raise faults.CheckpointError(
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


@quiet_console()
def train(cfg: DictConfig, run_dir_file: str | None = None) -> dict[str, float]:
    started = time.time()
    run_dir, ckpt_path = resolve_run_dir(cfg)
    resume_changes = check_resume_changes(cfg, run_dir, ckpt_path)  # before anything is written
    check_before_work(cfg, run_dir, run_dir_file)
    quiet_synced_metric_warnings()
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = data.build(cfg.data, str(config.data_root(cfg)), seed=cfg.seed)
    datamodule.prepare_data()  # generates SynthLoc on first use (before DDP workers start)
    datamodule.setup("fit")
    num_classes = datamodule.check_num_classes(cfg.model.num_classes)

    model = build_model(cfg, num_classes, datamodule.class_names)
    check_localization_method(cfg, model, "train")

    cam_callback = build_cam_callback(cfg, datamodule)
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor="val/acc_top1",
        mode="max",
    )
    # last.ckpt after every epoch (Lightning 2.6's save_last=True only follows improvements of the monitor).
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False)
    callbacks = [
        cam_callback,
        EvaluationDashboards(cam_callback),  # per-class table, threshold curve (and W&B media) from cam_callback
        best,
        checkpoints,
        faults.ExactResume(),  # a resumed run continues the data order and random stream where they were
        faults.PreemptionCheckpoint(run_dir / "checkpoints"),  # SIGTERM/SIGUSR1: checkpoint, exit 128 + signum
        LearningRateMonitor(logging_interval="step"),
        # config.yaml (+ resume_changes.yaml) once a resumed checkpoint was restored into the model
        faults.RunRecord(cfg, run_dir, ckpt_path, resume_changes),
        *progress_callbacks(cfg.trainer.enable_progress_bar),  # on stderr: stdout holds the results
    ]
    if cfg.trainer.checkpoint_every_n_steps > 0:  # a kill mid-epoch loses at most this many steps
        # the newest and the one before it, also after a resume
        callbacks.append(faults.StepCheckpoints(run_dir / "checkpoints", cfg.trainer.checkpoint_every_n_steps, keep=2))
    loggers = build_loggers(run_dir, cfg.logger.tensorboard, wandb_settings(cfg), resuming=ckpt_path is not None)

    t = cfg.trainer
    trainer = pl.Trainer(
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        num_sanity_val_steps=t.num_sanity_val_steps,
        gradient_clip_val=t.gradient_clip_val,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=verbose(),  # the layer table only with CAMEXP_VERBOSE=1
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # the DataModule shards itself (exact evaluation, data/samplers.py)
        inference_mode=cfg.eval.method != "backprop",  # gradient saliency needs autograd in validation
        plugins=[faults.AtomicCheckpointIO()],  # write + rename in the checkpoint folder: a kill keeps the old file
    )
    wandb_logger = next((lg for lg in loggers if type(lg).__name__ == "WandbLogger"), None)
    if trainer.is_global_zero:
        faults.remove_stale_temporaries(run_dir)
        if wandb_logger is not None:
            from camexp.loggers import remember_run_id

            remember_run_id(wandb_logger, run_dir)
    if ckpt_path and trainer.is_global_zero:  # the resumed run logs what was logged after its checkpoint again
        faults.drop_events_after_checkpoint(run_dir, ckpt_path)
    try:
        # DDP workers re-run this command and inherit both; they stop with rank 0 when it fails
        with shared_with_workers(run_dir, ckpt_path), faults.workers_stop_with(trainer):
            fit(trainer, model, datamodule, ckpt_path)

        results = dict(cam_callback.last_results)
        kept = ckpt_path is not None and not results and (run_dir / "results.json").is_file()
        if kept:  # resumed a run that had already finished: nothing was trained or evaluated now
            results = read_results(run_dir)
        if trainer.is_global_zero:
            if kept:
                print(f"camexp: {run_dir} had already finished (trainer.max_epochs={cfg.trainer.max_epochs}); its "
                      f"results.json and report.md are kept.", file=sys.stderr)  # fmt: skip
            else:
                results["wall_time_s"] = round(time.time() - started, 1)
                write_results(run_dir, results)
            table = results_table(results, "val", cfg.model.name, cfg.model.pool, cfg.eval.method)
            if not kept:
                (run_dir / "report.md").write_text(f"# {cfg.name}\n\n{table}\n")
            if run_dir_file:
                Path(run_dir_file).parent.mkdir(parents=True, exist_ok=True)
                Path(run_dir_file).write_text(str(run_dir) + "\n")
            summary = _summary(cfg, run_dir, table, checkpoints, cam_callback, results, head_name(model))
            if wandb_logger is not None:
                from camexp.loggers import run_location

                summary += f"\nW&B run       : {run_location(wandb_logger)}"
            print(summary, flush=True)
    finally:
        if wandb_logger is not None and trainer.is_global_zero:
            from camexp.loggers import finish

            finish()  # the next train() in this process starts a new W&B run
    return results


def _summary(
    cfg, run_dir: Path, table: str, checkpoints: ModelCheckpoint, cam_callback: CAMCallback, results, head: str
) -> str:
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
    return "\n".join(lines)


def checkpoint_config(ckpt: Path, files: Sequence[str], overrides: Sequence[str], command: str) -> DictConfig:
    """The config a checkpoint was trained with (its run's config.yaml) or the given experiment files, + overrides."""
    run_config = ckpt.parent.parent / "config.yaml"
    if not files and not run_config.is_file():
        raise CamexpError(
            f"No config.yaml next to {ckpt} (expected {run_config}). "
            f"Pass the experiment file: camexp {command} {ckpt} experiments/NAME.yaml [key=value ...]."
        )
    cfg = config.load(list(files) or [run_config], overrides)
    if not files and not any(o.split("=", 1)[0].lstrip("+~") == "data.root" for o in overrides):
        config.check_recorded_data_root(cfg, run_config)  # relative to another folder: refused, never generated
    return cfg


def evaluation_data(cfg: DictConfig, stage: str) -> data.CAMDataModule:
    """Seeded, prepared and set-up DataModule for evaluating a checkpoint (stage: validate | test)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = data.build(cfg.data, str(config.data_root(cfg)), seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup(stage)
    datamodule.check_num_classes(cfg.model.num_classes)
    return datamodule


def evaluation_model(ckpt: Path, cfg: DictConfig, datamodule: data.CAMDataModule) -> CAMNet:
    """The checkpoint's CAMNet, refused before any evaluation work when its class count is not the data's
    (the one check `validate` and `evaluate` share)."""
    model = CAMNet.from_checkpoint(ckpt)
    trained = int(model.hparams.num_classes)
    if trained != datamodule.num_classes:
        raise CheckpointMismatchError(
            f"Checkpoint {ckpt} was trained for {trained} classes but {cfg.data.name} at {config.data_root(cfg)} "
            f"has {datamodule.num_classes} classes. Point data.root (and the dataset settings) at the data the "
            f"checkpoint was trained on, or evaluate a checkpoint trained on this dataset."
        )
    return model


def evaluation_trainer(cfg: DictConfig, callbacks: list, root_dir: Path, devices=None) -> pl.Trainer:
    """A Trainer that only evaluates: no logger, no checkpoints, the DataModule's unpadded shards."""
    t = cfg.trainer
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices if devices is None else devices,
        strategy=t.strategy if devices is None else "auto",
        num_nodes=t.num_nodes if devices is None else 1,
        precision=t.precision,
        deterministic=t.deterministic,
        limit_val_batches=t.limit_val_batches,
        limit_test_batches=t.limit_val_batches,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=verbose(),
        logger=False,
        enable_checkpointing=False,
        callbacks=[*callbacks, *progress_callbacks(t.enable_progress_bar)],
        default_root_dir=str(root_dir),
        use_distributed_sampler=False,
        inference_mode=cfg.eval.method != "backprop",  # gradient saliency needs autograd
    )


@quiet_console()
def validate(
    ckpt: str | Path, overrides: Sequence[str] = (), files: Sequence[str] = (), out: str | Path | None = None
) -> dict[str, float]:
    """Evaluate a checkpoint on the validation split with its run's config.yaml (or the given
    experiment files) + overrides, on 1..N processes (same metrics). Prints every metric; rank 0
    writes them as JSON to `out` ({"metrics", "per_class", "curve"}). Overlays go to <run dir>/validate/overlays,
    or with `out` beside it (<out's folder>/overlays): an explicit output leaves the run directory untouched."""
    quiet_synced_metric_warnings()
    ckpt = faults.check_checkpoint(ckpt, "validate")
    if out:
        out = output_file(out, "--out")  # before any work
    cfg = checkpoint_config(ckpt, files, overrides, "validate")
    check_accelerator(cfg.trainer.accelerator, cfg.trainer.devices)
    datamodule = evaluation_data(cfg, "validate")
    model = evaluation_model(ckpt, cfg, datamodule)
    check_localization_method(cfg, model, f"validate {ckpt}")
    cam_callback = build_cam_callback(cfg, datamodule)
    trainer = evaluation_trainer(cfg, [cam_callback], out.parent if out else ckpt.parent.parent / "validate")
    with faults.workers_stop_with(trainer):
        logged = trainer.validate(model, datamodule=datamodule, verbose=False)
    results = {key: float(value) for key, value in (logged[0] if logged else {}).items()}
    results.update(cam_callback.last_results)
    results = dict(sorted(results.items()))
    if trainer.is_global_zero:
        width = max(map(len, results), default=0)
        lines = [f"== {ckpt} on {cfg.data.name}/{cfg.data.val_split}, {trainer.world_size} process(es) =="]
        lines += [f"{key:<{width}}  {value:.10g}" for key, value in results.items()]
        if out:
            summary = cam_callback.last_summary.get("val")
            extra = {"per_class": summary.per_class, "curve": summary.curve} if summary else {}
            out.write_text(json.dumps({"metrics": results, **extra}, indent=2) + "\n")
            lines.append(f"metrics written to {out}")
        if cam_callback.last_overlay_path:
            lines.append(f"CAM overlays: {cam_callback.last_overlay_path}")
        print("\n".join(lines), flush=True)
    return results
