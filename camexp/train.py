"""`train(cfg)`: config -> data -> model -> callbacks -> loggers -> Trainer -> fit -> report. Reads top to bottom."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from camexp import config, data
from camexp.callbacks import CAMCallback
from camexp.errors import CamexpError
from camexp.models import CAMNet
from camexp.report import results_table, write_results

RUN_DIR_ENV = "CAMEXP_RUN_DIR"  # set by rank 0 so DDP worker processes log into the same run


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
    )


def _versions(experiment_dir: Path) -> list[int]:
    found = [p.name.split("_", 1)[1] for p in experiment_dir.glob("version_*") if p.is_dir()]
    return sorted(int(v) for v in found if v.isdigit())


def resolve_run_dir(cfg: DictConfig) -> tuple[Path, str | None]:
    """The run directory (save_dir/name/version_N) and the checkpoint to resume from, if any.

    resume=last continues the newest version of this experiment that has a last.ckpt;
    resume=PATH resumes that checkpoint in its own run directory.
    """
    if os.environ.get(RUN_DIR_ENV):  # a DDP worker: rank 0 already decided
        run_dir = Path(os.environ[RUN_DIR_ENV])
        resume = cfg.resume
        ckpt = str(run_dir / "checkpoints" / "last.ckpt") if resume == "last" else resume
        return run_dir, ckpt
    experiment_dir = Path(cfg.logger.save_dir) / cfg.name
    if cfg.resume == "last":
        for version in reversed(_versions(experiment_dir)):
            candidate = experiment_dir / f"version_{version}" / "checkpoints" / "last.ckpt"
            if candidate.is_file():
                return candidate.parent.parent, str(candidate)
        raise CamexpError(
            f"resume=last but no checkpoint was found under {experiment_dir}/version_*/checkpoints/last.ckpt. "
            f"Start the run without resume, or pass resume=PATH/TO.ckpt."
        )
    if cfg.resume:
        ckpt = Path(cfg.resume)
        if not ckpt.is_file():
            raise CamexpError(f"resume={cfg.resume}: no such checkpoint file.")
        return ckpt.parent.parent, str(ckpt)
    versions = _versions(experiment_dir)
    return experiment_dir / f"version_{versions[-1] + 1 if versions else 0}", None


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    if cfg.logger.tensorboard:
        loggers.append(TensorBoardLogger(str(run_dir.parent.parent), name=run_dir.parent.name, version=run_dir.name))
    return loggers


def train(cfg: DictConfig, run_dir_file: str | None = None) -> dict[str, float]:
    started = time.time()
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = data.build(cfg.data, str(config.data_root(cfg)), seed=cfg.seed)
    datamodule.prepare_data()  # generates SynthLoc on first use (before DDP workers start)
    datamodule.setup("fit")
    num_classes = datamodule.check_num_classes(cfg.model.num_classes)

    model = build_model(cfg, num_classes, datamodule.class_names)

    inherited_run_dir = bool(os.environ.get(RUN_DIR_ENV))
    run_dir, ckpt_path = resolve_run_dir(cfg)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP workers re-run this command and inherit it
    cam_callback = CAMCallback(
        datamodule.class_names,
        *datamodule.mean_std,
        cam_threshold=cfg.eval.cam_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        num_overlays=cfg.eval.num_overlays,
        method=cfg.eval.method,
        heuristic_top5=cfg.eval.heuristic_top5,
    )
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor="val/acc_top1",
        mode="max",
        save_last=True,
    )
    callbacks = [cam_callback, checkpoints, LearningRateMonitor(logging_interval="step")]
    loggers = build_loggers(cfg, run_dir)

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
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # the DataModule shards itself (exact evaluation, data/samplers.py)
        inference_mode=cfg.eval.method != "backprop",  # gradient saliency needs autograd in validation
    )
    if trainer.is_global_zero:
        config.save(cfg, run_dir / "config.yaml")
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    finally:
        if not inherited_run_dir:  # the next train() in this process starts a new run
            os.environ.pop(RUN_DIR_ENV, None)

    results = dict(cam_callback.last_results)
    if trainer.is_global_zero:
        results["wall_time_s"] = round(time.time() - started, 1)
        write_results(run_dir, results)
        table = results_table(results, "val", cfg.model.name, cfg.model.pool)
        (run_dir / "report.md").write_text(f"# {cfg.name}\n\n{table}\n")
        if run_dir_file:
            Path(run_dir_file).write_text(str(run_dir) + "\n")
        print(_summary(cfg, run_dir, table, checkpoints, cam_callback, results), flush=True)
    return results


def _summary(cfg, run_dir: Path, table: str, checkpoints: ModelCheckpoint, cam_callback: CAMCallback, results) -> str:
    images = int(results.get("val/num_images", 0))
    skipped = int(results.get("val/skipped_images", 0))
    lines = [
        "",
        f"== {cfg.name}: {cfg.model.name} ({'GAP' if cfg.model.pool == 'avg' else 'GMP'}) on {cfg.data.name}, "
        f"validation on {images} images, {results.get('wall_time_s', 0):.0f} s ==",
        table,
        "",
    ]
    if skipped:
        lines.append(f"Skipped {skipped} corrupt validation images (data.skip_corrupt=true).")
    lines += [
        f"run directory : {run_dir}",
        f"config        : {run_dir / 'config.yaml'}",
        f"checkpoint    : {checkpoints.last_model_path or checkpoints.best_model_path}",
        f"CAM overlays  : {cam_callback.last_overlay_path}",
        f"TensorBoard   : tensorboard --logdir {run_dir.parent}",
    ]
    return "\n".join(lines)
