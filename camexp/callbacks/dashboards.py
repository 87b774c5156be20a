"""EvaluationDashboards: publishes what CAMCallback collected to each logger (camexp/loggers.py draws it).

CAMCallback stays logger-agnostic: it leaves an `EvaluationSummary` per split (metrics, per-class
counts, the accuracy-versus-threshold curve, overlay samples), and this callback, placed after it,
hands the summary to the publish function of each logger, on rank 0 only.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from typing_extensions import override  # a Lightning dependency

from camexp.callbacks.cam_metrics import CAMCallback, EvaluationSummary
from camexp.loggers import publish_tensorboard, publish_wandb


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
                publish_wandb(logger, summary)  # imports wandb: only reached when a WandbLogger is in use

    @override
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._publish("val", trainer)

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._publish("test", trainer)
