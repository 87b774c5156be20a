"""The loggers: TensorBoard, and Weights & Biases beside it when asked; publishing an evaluation summary to them.

wandb is imported only inside the W&B functions, so a run without W&B never loads it. W&B keys are stable:
scalars `train/*`, `val/*`, `test/*` (logged by Lightning); per evaluation pass `{split}/cam_overlays` (images
with predicted and GT boxes as W&B box data), `{split}/per_class` (table) and `{split}/loc_vs_threshold` (line
plot). The resolved experiment config is the run config, so runs can be grouped and filtered by any key (e.g.
`model.pool`); values from environment variables stay as written (`${oc.env:...}`, `config.as_written`).
Offline (`WANDB_MODE=offline`) everything lands under `<run dir>/wandb/offline-run-*`; `wandb sync` uploads
it later. TensorBoard gets the same overlays (as PNG), the threshold curve as a figure and the per-class table
as text. Every function takes plain values (paths, settings, summaries), never the config tree.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger

from camexp import viz
from camexp.errors import CamexpError
from camexp.reports import PER_CLASS_COLUMNS, per_class_markdown, per_class_rows, threshold_curve_figure

if TYPE_CHECKING:  # the callbacks produce these; the functions here only read them
    import wandb

    from camexp.callbacks.cam_metrics import EvaluationSummary
    from camexp.callbacks.overlays import OverlaySample

RUN_ID_FILE = "wandb_run_id"  # in the run dir: a resumed run continues the same W&B run


@dataclass(frozen=True)
class WandbSettings:
    """Where a W&B run goes (the config's `logger.wandb`), the experiment's name and its run config (the
    experiment as written)."""

    project: str
    entity: str | None
    tags: list[str]
    log_model: bool
    experiment: str
    run_config: dict[str, Any]


def build_loggers(
    run_dir: Path, tensorboard: bool, wandb_settings: WandbSettings | None, resuming: bool = False
) -> list[Logger]:
    """TensorBoard (when `tensorboard`) and, with `wandb_settings`, Weights & Biases beside it. A resumed run
    writes into the same TensorBoard directory and does not log the step-0 hp_metric placeholder again."""
    loggers: list[Logger] = []
    if tensorboard:
        root, name, version = str(run_dir.parent.parent), run_dir.parent.name, run_dir.name
        loggers.append(TensorBoardLogger(root, name=name, version=version, default_hp_metric=not resuming))
    if wandb_settings is not None:
        loggers.append(build_wandb_logger(run_dir, wandb_settings))
    return loggers


# -- TensorBoard ---------------------------------------------------------------------------------------------


def add_png_image(experiment: Any, tag: str, picture: np.ndarray, png: bytes, step: int) -> None:
    """TensorBoard image from PNG bytes already encoded: `add_image` would re-encode the picture with PIL's
    slow default compression (~0.8 s for a 16-panel overlay grid, every validation)."""
    writer = getattr(experiment, "_get_file_writer", None)  # SummaryWriter's; add_image uses it too
    if writer is None:
        experiment.add_image(tag, picture, step, dataformats="HWC")
        return
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width = picture.shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)
    writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def publish_tensorboard(logger: TensorBoardLogger, summary: EvaluationSummary, cam_threshold: float) -> None:
    """Threshold curve as a figure and the per-class table as text (scalars and overlays are logged elsewhere)."""
    experiment = logger.experiment
    if summary.curve.get("thresholds"):
        fig = threshold_curve_figure(summary.curve, summary.split, summary.epoch, cam_threshold)
        experiment.add_figure(f"{summary.split}/loc_vs_threshold", fig, summary.step, close=True)
    experiment.add_text(
        f"{summary.split}/per_class", per_class_markdown(summary.class_names, summary.per_class), summary.step
    )


# -- Weights & Biases (wandb imported inside each function) --------------------------------------------------


def _has_credentials(host: str) -> bool:
    """Whether wandb.init would find credentials (WANDB_API_KEY, an identity token, netrc, its settings), looked
    up as wandb does it but without prompting, printing or asking the server."""
    import wandb

    try:
        from wandb.sdk.lib import wbauth  # the lookup wandb.init itself does (recent wandb)
    except ImportError:  # older wandb: its api key lookup reads the same places and never prompts
        return bool(wandb.api.api_key)
    try:
        auth = wbauth.authenticate_session(host=host, source="camexp", prompt=False, update_session=False)
    except wandb.errors.AuthenticationError as err:  # e.g. a malformed WANDB_API_KEY
        raise CamexpError(
            f"logger.wandb.enabled=true but W&B rejects the credentials found: {str(err).rstrip('.')}. "
            f"Fix WANDB_API_KEY (or run `wandb login --relogin`), or log offline with WANDB_MODE=offline."
        ) from None
    return auth is not None


def check_login() -> None:
    """Online W&B without credentials fails inside wandb.init with a long UsageError, after the data and model
    were built and the run directory made: refuse it before any work. Offline and disabled modes need none."""
    import wandb

    settings = wandb.setup().settings  # WANDB_MODE, or the mode that `wandb offline` saved
    if settings.mode in ("offline", "dryrun", "disabled") or _has_credentials(settings.base_url):
        return
    netrc = os.environ.get("NETRC", "~/.netrc")
    raise CamexpError(
        f"logger.wandb.enabled=true and W&B is online (WANDB_MODE={os.environ.get('WANDB_MODE', 'not set')}), "
        f"but no W&B login was found for {settings.base_url} (no WANDB_API_KEY, no entry in {netrc}). "
        f"Log in once with `wandb login` (or export WANDB_API_KEY=...), or log offline with WANDB_MODE=offline "
        f"(the run goes to <run dir>/wandb; upload it later with `wandb sync`), or set logger.wandb.enabled=false."
    )


def build_wandb_logger(run_dir: Path, settings: WandbSettings) -> WandbLogger:
    """A WandbLogger writing under `run_dir/wandb`, named after the run (experiment/version_N), resuming its
    W&B run if any."""
    id_file = Path(run_dir) / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    return WandbLogger(
        name=f"{settings.experiment}/{run_dir.name}",
        save_dir=str(run_dir),
        id=run_id,
        project=settings.project,
        entity=settings.entity,
        tags=list(settings.tags),
        log_model=settings.log_model,
        config=settings.run_config,
        resume="allow",
        job_type="train",
    )


def remember_run_id(logger: WandbLogger, run_dir: Path) -> None:
    """Rank 0, after the run started: keep its id so `resume=last` continues the same W&B run."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / RUN_ID_FILE).write_text(str(logger.version) + "\n")


def _box(box: np.ndarray, class_id: int, caption: str, scores: dict[str, float] | None = None) -> dict[str, Any]:
    x0, y0, x1, y1 = (float(v) for v in box)
    data = {
        "position": {"minX": x0, "minY": y0, "maxX": x1, "maxY": y1},
        "domain": "pixel",
        "class_id": int(class_id),
        "box_caption": caption,
    }
    if scores:
        data["scores"] = scores
    return data


def overlay_image(sample: OverlaySample, class_names: list[str]) -> wandb.Image:
    """The CAM heatmap over the image; the predicted box (from the GT class's CAM, the paper's rule) and
    the GT boxes as W&B box layers, so they can be toggled and filtered by class in the UI."""
    import wandb

    class_labels = dict(enumerate(class_names))
    name = class_names[sample.label]
    boxes: dict[str, Any] = {}
    if sample.pred_box is not None:
        scores = {"iou": round(sample.iou, 4)} if sample.iou is not None else None
        boxes["predictions"] = {
            "box_data": [_box(sample.pred_box, sample.label, f"CAM box: {name}", scores)],
            "class_labels": class_labels,
        }
    if sample.gt_boxes is not None:
        boxes["ground_truth"] = {
            "box_data": [_box(b, sample.label, name) for b in sample.gt_boxes],
            "class_labels": class_labels,
        }
    picture = viz.heatmap_overlay(sample.image, sample.cam)
    return wandb.Image(picture, boxes=boxes or None, caption=" | ".join(sample.caption))  # the saved overlay's


def publish_wandb(logger: WandbLogger, summary: EvaluationSummary) -> None:
    """Overlays, the per-class table and the threshold curve of one evaluation pass, at its global step."""
    import wandb

    split = summary.split
    rows = per_class_rows(summary.class_names, summary.per_class)
    media: dict[str, Any] = {f"{split}/per_class": wandb.Table(columns=list(PER_CLASS_COLUMNS), data=rows)}
    if summary.samples:
        media[f"{split}/cam_overlays"] = [overlay_image(s, summary.class_names) for s in summary.samples]
    if summary.curve.get("thresholds"):
        rows = [
            [t, a] for t, a in zip(summary.curve["thresholds"], summary.curve["loc_gt_known"], strict=True) if a == a
        ]
        table = wandb.Table(columns=["cam_threshold", "loc_gt_known"], data=rows)
        media[f"{split}/loc_vs_threshold"] = wandb.plot.line(
            table, "cam_threshold", "loc_gt_known", title=f"{split}: GT-known localization vs CAM threshold"
        )
    logger.log_metrics(media, step=summary.step)


def run_location(logger: WandbLogger) -> str:
    """Where the W&B run was written, and how to upload it when offline."""
    run = logger.experiment
    folder = Path(run.dir).parent  # .../wandb/offline-run-*/files -> .../wandb/offline-run-*
    if getattr(run, "offline", False):
        return f"{folder} (offline; upload with: wandb sync {folder})"
    return f"{folder} ({getattr(run, 'url', '') or 'online'})"


def finish() -> None:
    """Close the run (so a second run in the same process starts a new W&B run)."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
