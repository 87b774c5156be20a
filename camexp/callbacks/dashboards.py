"""Publishes what CAMCallback collected to each logger: TensorBoard here, Weights & Biases in
camexp/loggers.py (imported only when a WandbLogger is in use).

CAMCallback stays logger-agnostic: it leaves an `EvaluationSummary` per split (metrics, per-class
counts, the accuracy-versus-threshold curve, overlay samples), and this callback, placed after it,
hands the summary to one small function per logger, on rank 0 only.
"""

from __future__ import annotations

import math

from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from camexp.callbacks.cam_metrics import CAMCallback, EvaluationSummary

PER_CLASS_COLUMNS = ("class", "images", "acc_top1", "loc_top1", "loc_gt_known")


def per_class_rows(summary: EvaluationSummary) -> list[list]:
    """One row per class in PER_CLASS_COLUMNS order (accuracies are None where undefined)."""
    pc = summary.per_class

    def value(key: str, i: int) -> float | None:
        v = pc[key][i]
        return None if math.isnan(v) else round(v, 6)

    return [
        [name, int(pc["images"][i]), value("acc_top1", i), value("loc_top1", i), value("loc_gt_known", i)]
        for i, name in enumerate(summary.class_names)
    ]


def per_class_markdown(summary: EvaluationSummary) -> str:
    lines = ["| " + " | ".join(PER_CLASS_COLUMNS) + " |", "|---|---:|---:|---:|---:|"]
    for name, images, *accs in per_class_rows(summary):
        cells = ["-" if a is None else f"{100 * a:.1f}" for a in accs]
        lines.append(f"| {name} | {images} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def threshold_curve_figure(summary: EvaluationSummary, cam_threshold: float | None = None):
    """Matplotlib figure: GT-known localization accuracy against the CAM threshold."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.plot(summary.curve["thresholds"], [100 * a for a in summary.curve["loc_gt_known"]], marker="o", ms=3)
    if cam_threshold is not None:
        ax.axvline(cam_threshold, color="grey", ls="--", lw=1, label=f"paper rule ({cam_threshold:g})")
        ax.legend(loc="lower center", fontsize=8)
    ax.set_xlabel("CAM threshold (fraction of the map's max)")
    ax.set_ylabel("GT-known loc. accuracy %")
    ax.set_title(f"{summary.split}: localization vs threshold (epoch {summary.epoch})", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def publish_tensorboard(logger: TensorBoardLogger, summary: EvaluationSummary, cam_threshold: float) -> None:
    """Threshold curve as a figure and the per-class table as text (scalars and overlays are logged elsewhere)."""
    experiment = logger.experiment
    if summary.curve.get("thresholds"):
        fig = threshold_curve_figure(summary, cam_threshold)
        experiment.add_figure(f"{summary.split}/loc_vs_threshold", fig, summary.step, close=True)
    experiment.add_text(f"{summary.split}/per_class", per_class_markdown(summary), summary.step)


class EvaluationDashboards(Callback):
    """After each validation/test pass, publish CAMCallback's summary to every logger that knows how."""

    def __init__(self, cam_callback: CAMCallback) -> None:
        self.cam_callback = cam_callback
        self._published: dict[str, EvaluationSummary] = {}

    @rank_zero_only
    def _publish(self, split: str, trainer) -> None:
        summary = self.cam_callback.last_summary.get(split)
        if summary is None or summary is self._published.get(split):  # nothing new from this pass
            return
        self._published[split] = summary
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                publish_tensorboard(logger, summary, self.cam_callback.cam_threshold)
            elif isinstance(logger, WandbLogger):
                from camexp.loggers import publish_wandb  # wandb is imported only when in use

                publish_wandb(logger, summary)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._publish("val", trainer)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._publish("test", trainer)
