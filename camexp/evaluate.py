"""Validate or evaluate a checkpoint, on the code path of training's validation (`camexp.wiring`), so the numbers
are the same.

`camexp validate CKPT`: the validation metrics, on 1..N processes. `camexp evaluate CKPT`: one pass over a split
gives both protocols, the score maps and a report:

    checkpoint + <run>/config.yaml (+ overrides) -> data, CAMNet.load_from_checkpoint
    Trainer.validate/test with CAMCallback (paper protocol, incl. Table 3's top-5 heuristic)
                         and ScoreMapCallback (GT-class maps -> wsoleval accumulator, optional .npy + metadata)
    -> <out>/results.json, wsoleval.json, report.md, curves.png, extremes.png [, maps/, metadata/]

The saved maps and metadata are exactly what `camexp evaluate-maps --metadata <out>/metadata --maps
<out>/maps` reads, and it prints the same wsoleval numbers. One process (devices=1): the wsoleval
state lives in the callback, and a checkpoint evaluation is cheap next to training.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from PIL import Image

from camexp import config, data
from camexp.callbacks.score_maps import ScoreMapCallback
from camexp.console import progress_callbacks, quiet_console, quiet_synced_metric_warnings
from camexp.data.boxes import DegenerateBoxWarning, clean_boxes
from camexp.errors import CamexpError, CheckpointMismatchError
from camexp.localization import BASELINES, baseline_prefix
from camexp.models import CAMNet
from camexp.models.camnet import head_name
from camexp.outputs import output_file, output_folder
from camexp.reports import format_result, write_report, write_results, wsoleval_fractions, wsoleval_json
from camexp.runs.checkpoints import check_checkpoint
from camexp.runs.ddp import workers_stop_with
from camexp.wiring import (
    build_cam_callback,
    build_data,
    check_accelerator,
    check_localization_method,
    trainer_arguments,
)
from camexp.wsol.accumulator import WSOLAccumulator
from camexp.wsol.evaluate_maps import write_json
from camexp.wsol.metadata import SplitMetadata, write_metadata
from camexp.wsol.protocol import CAM_CURVE_INTERVAL, RESIZE_LENGTH, integer_gt_boxes

STAGES = {"val": "validate", "test": "test"}


def run_dir_of(ckpt: Path) -> Path:
    """<run>/checkpoints/x.ckpt -> <run>; a checkpoint elsewhere -> its folder."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def metadata_from_dataset(dataset) -> SplitMetadata:
    """The split's ground truth in wsolevaluation terms: ids (relative image paths), labels, integer boxes in
    original pixels clipped to the image, original sizes (from the annotation, else the image header)."""
    images = getattr(dataset, "images", None)
    if images is None:
        raise CamexpError(
            f"camexp evaluate needs an image-list evaluation dataset (CUB, SynthLoc, ILSVRC, wsoleval, scenes); "
            f"got {type(dataset).__name__}."
        )
    meta = SplitMetadata(image_ids=[images.relpath(i) for i in range(len(images))])
    meta.line_of = {image_id: n + 1 for n, image_id in enumerate(meta.image_ids)}
    meta.labels = {image_id: int(images.labels[n]) for n, image_id in enumerate(meta.image_ids)}
    if images.boxes is None:
        return meta
    for n, image_id in enumerate(meta.image_ids):
        if images.sizes is not None:
            width, height = (int(v) for v in images.sizes[n])
        else:
            with Image.open(images.path(n)) as img:  # header only
                width, height = img.size
        meta.sizes[image_id] = (width, height)
        # The dataset's own box cleaning (clipped, boxes left without area dropped), then integers: the
        # boxes the evaluation batches carry, as `wsol.protocol.scored_gt_boxes` scores them in every command.
        source = images.box_sources[n] if images.box_sources else "the annotations"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateBoxWarning)  # the dataset already warned about these
            clean = clean_boxes(images.boxes[n], (width, height), str(images.path(n)), source)
        meta.boxes[image_id] = [tuple(int(v) for v in box) for box in integer_gt_boxes(clean, (width, height))]
    return meta


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


def evaluation_trainer(cfg: DictConfig, callbacks: list, root_dir: Path, devices: int | None = None) -> pl.Trainer:
    """A Trainer that only evaluates: no logger, no checkpoints, the DataModule's unpadded shards."""
    return pl.Trainer(
        **trainer_arguments(cfg, root_dir, devices),
        limit_test_batches=cfg.trainer.limit_val_batches,
        logger=False,
        enable_checkpointing=False,
        callbacks=[*callbacks, *progress_callbacks(cfg.trainer.enable_progress_bar)],
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
    ckpt = check_checkpoint(ckpt, "validate")
    if out:
        out = output_file(out, "--out")  # before any work
    cfg = checkpoint_config(ckpt, files, overrides, "validate")
    check_accelerator(cfg.trainer.accelerator, cfg.trainer.devices)
    datamodule = build_data(cfg, "validate")
    model = evaluation_model(ckpt, cfg, datamodule)
    check_localization_method(cfg, model, f"validate {ckpt}")
    cam_callback = build_cam_callback(cfg, datamodule)
    trainer = evaluation_trainer(cfg, [cam_callback], out.parent if out else ckpt.parent.parent / "validate")
    with workers_stop_with(trainer):
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


@quiet_console()
def evaluate_checkpoint(
    ckpt: str | Path,
    config_args: Sequence[str] = (),
    split: str = "val",
    out_dir: str | Path | None = None,
    save_maps: bool = False,
    cam_curve_interval: float = CAM_CURVE_INTERVAL,
    num_extremes: int = 8,
) -> dict[str, float]:
    """Evaluate `ckpt` on `split` ("val" or "test"); returns the metrics (fractions) also written to results.json."""
    if split not in STAGES:
        raise CamexpError(f"--split must be val or test; got {split!r}.")
    if not Path(ckpt).is_file():
        raise CamexpError(f"No checkpoint file {ckpt}. Pass one written by camexp train (<run>/checkpoints/last.ckpt).")
    ckpt = check_checkpoint(ckpt, "evaluate")  # a damaged file: names it and the run's valid checkpoints
    run_dir = run_dir_of(ckpt)
    out = output_folder(Path(out_dir) if out_dir else run_dir / f"eval_{split}", "--out")  # before any work
    files, overrides = config.split_words(config_args)
    cfg = checkpoint_config(ckpt, files, ["eval.heuristic_top5=true", *overrides], "evaluate")
    check_accelerator(cfg.trainer.accelerator)  # one process (devices=1), on the configured accelerator
    datamodule = build_data(cfg, STAGES[split])
    model = evaluation_model(ckpt, cfg, datamodule)
    if cfg.eval.method == "cam" and not model.cam_capable:
        raise CamexpError(
            f"{model.hparams.network} has no CAM (fully connected head). Evaluate it with the paper's "
            f"Backprop baseline: camexp evaluate {ckpt} eval.method=backprop."
        )

    metadata = metadata_from_dataset(datamodule.dataset(split))
    scorer = WSOLAccumulator(cam_curve_interval)
    baselines = {name: WSOLAccumulator(cam_curve_interval) for name in BASELINES}  # the sanity baselines, same images
    # The scorer computes wsoleval exactly in the reference's 224 frame; a CAM callback set to wsoleval in that
    # same frame would only repeat the box sweep (another frame's numbers are kept, as *_callback keys).
    same_frame = cfg.eval.wsoleval_size == RESIZE_LENGTH
    cam_callback = build_cam_callback(cfg, datamodule, protocol="paper" if same_frame else None)
    map_callback = ScoreMapCallback(
        metadata,
        scorer,
        *datamodule.mean_std,
        class_names=datamodule.class_names,
        method=cfg.eval.method,
        cam_threshold=cfg.eval.cam_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        maps_dir=out / "maps" if save_maps else None,
        masks_dir=out / "metadata" if save_maps else None,
        num_extremes=num_extremes,
        baselines=baselines,
    )
    trainer = evaluation_trainer(cfg, [cam_callback, map_callback], out, devices=1)  # maps are gathered in-process
    run = trainer.validate if split == "val" else trainer.test
    run(model, datamodule=datamodule, verbose=False)

    prefix = split
    wsol = scorer.compute()
    baseline_results = {name: b.compute() for name, b in baselines.items()}
    results = dict(cam_callback.last_results)
    fractions = wsoleval_fractions(wsol, prefix)
    for name, result in baseline_results.items():
        fractions.update(wsoleval_fractions(result, baseline_prefix(prefix, name)))
    for key, value in fractions.items():
        if results.get(key, value) != value:  # the callback's number in another frame (eval.wsoleval_size)
            results[f"{key}_callback"] = results[key]
        results[key] = value
    write_results(out, results)
    baseline_json = {name: result.metrics(percent=True) for name, result in baseline_results.items()}
    write_json(
        out / "wsoleval.json",
        {**wsoleval_json(wsol), "checkpoint": str(ckpt), "split": split, "baselines": baseline_json},
    )
    seen = [metadata.image_ids[p] for p in sorted(set(map_callback.seen))]
    if save_maps:  # the images actually scored (skipped corrupt images or limit_val_batches drop some)
        write_metadata(out / "metadata", metadata.subset(seen))

    data_split = cfg.data.val_split if split == "val" else (cfg.data.test_split or cfg.data.val_split)
    title = f"{cfg.name}: {cfg.model.name} ({head_name(model)}) on {cfg.data.name}/{data_split}"
    rescore = f"camexp evaluate-maps --metadata {out / 'metadata'} --maps {out / 'maps'}"
    notes = [
        f"checkpoint: `{ckpt}`",
        f"images: {len(seen)}; localization method: {cfg.eval.method}",
        f"score maps: `{out / 'maps'}` (re-score: `{rescore}`)" if save_maps else "score maps: not saved (--save-maps)",
    ]
    best, worst = map_callback.extreme_tiles()
    report = write_report(
        out, title, results, prefix, cfg.model.name, cfg.model.pool, wsol, best, worst, cfg.eval.cam_threshold, notes,
        method=cfg.eval.method, iou_threshold=cfg.eval.iou_threshold, baselines=baseline_results,
    )
    _print_summary(title, results, prefix, cfg, wsol, out, report, baseline_results)
    return results


def _print_summary(title, results, prefix, cfg, wsol, out: Path, report: Path, baselines=None) -> None:
    from camexp.reports import results_table

    lines = ["", f"== {title} ==", results_table(results, prefix, cfg.model.name, cfg.model.pool, cfg.eval.method), ""]
    lines.append(f"wsoleval on {wsol.num_images} images:")
    lines += format_result(wsol)
    for name, result in (baselines or {}).items():  # the sanity baselines on the same images
        same_box = " (the same box at every threshold)" if name == "whole_image" else ""
        lines.append(f"sanity baseline {name}{same_box}:")
        lines += format_result(result)
    lines += [
        "",
        f"report        : {report}",
        f"results       : {out / 'results.json'}",
        f"wsoleval      : {out / 'wsoleval.json'}",
    ]
    if (out / "maps").is_dir():
        lines.append(f"score maps    : {out / 'maps'} (metadata: {out / 'metadata'})")
    print("\n".join(lines), flush=True)
