"""What the commands print: results and file paths on stdout; progress, camexp's own warnings and errors on
stderr; none of the libraries' chatter (Lightning's banners and tips, the model summary, deprecation notes,
advice about logging intervals or worker counts). CAMEXP_VERBOSE=1 (or `--verbose`) shows it all again.

`quiet_console()` is a context manager and a decorator: `train`, `validate`, `evaluate_checkpoint` and the
benchmark scripts run inside it, so the filters apply to camexp's commands only and are undone afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from pytorch_lightning.callbacks import TQDMProgressBar

VERBOSE_ENV = "CAMEXP_VERBOSE"

# Lightning's top loggers: their INFO lines (GPU/TPU available, tips, "100% of the batches", the model summary,
# "Initializing distributed", "`Trainer.fit` stopped") are dropped; warnings and errors still show.
LIBRARY_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
# rank_zero_info's logger, and the INFO lines of it a user needs: which checkpoint a resumed run continues from.
RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")
KEPT_INFO = ("Restoring states from the checkpoint path",)

# Warnings that are chatter for a camexp user: the libraries' deprecations (nothing the user can change) and
# Lightning's generic advice, which camexp's settings already answer.
QUIET_CATEGORIES: tuple[type[Warning], ...] = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
QUIET_MESSAGES = (
    r"Checkpoint directory .* exists and is not empty",  # every resumed run writes into its own folder again
    r"The number of training batches .* is smaller than the logging interval",
    r"The '\w+_dataloader' does not have many workers",
    r"Consider setting `persistent_workers=True`",
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def verbose_console(on: bool = True) -> Iterator[None]:
    """CAMEXP_VERBOSE=1 for the duration (the `--verbose` flag); DDP workers started meanwhile inherit it."""
    saved = os.environ.get(VERBOSE_ENV)
    if on:
        os.environ[VERBOSE_ENV] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(VERBOSE_ENV, None)
        else:
            os.environ[VERBOSE_ENV] = saved


class _KeepInfo(logging.Filter):
    """Passes warnings and errors, and of the INFO lines only those in KEPT_INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.getMessage().startswith(KEPT_INFO)


def _quiet_categories() -> tuple[type[Warning], ...]:
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    return (*QUIET_CATEGORIES, PossibleUserWarning)


@contextlib.contextmanager
def quiet_console() -> Iterator[None]:
    """Silence the libraries' chatter (warnings and Lightning's INFO logging) for the duration; restore it after."""
    if verbose():
        yield
        return
    keep = _KeepInfo()
    saved = {name: logging.getLogger(name).level for name in (*LIBRARY_LOGGERS, *RANK_ZERO_LOGGERS)}
    with warnings.catch_warnings():
        for category in _quiet_categories():
            warnings.filterwarnings("ignore", category=category)
        for message in QUIET_MESSAGES:
            warnings.filterwarnings("ignore", message=message)
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        for name in RANK_ZERO_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
            logging.getLogger(name).addFilter(keep)
        try:
            yield
        finally:
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)
            for name in RANK_ZERO_LOGGERS:
                logging.getLogger(name).removeFilter(keep)


class StderrProgressBar(TQDMProgressBar):
    """Lightning's progress bar on stderr (Lightning writes it to stdout), so stdout holds only the results."""

    def init_sanity_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_sanity_tqdm()

    def init_train_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_train_tqdm()

    def init_validation_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_validation_tqdm()

    def init_test_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_test_tqdm()

    def init_predict_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_predict_tqdm()

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # "on_0" for version_0; the run directory is printed at the end
        return metrics


def progress_callbacks(enabled: bool) -> list:
    """The progress bar for a Trainer's callbacks (none when trainer.enable_progress_bar=false)."""
    return [StderrProgressBar()] if enabled else []



def quiet_synced_metric_warnings() -> None:
    """CAMCallback logs val/test values that its torchmetrics already reduced over the ranks; Lightning's
    advice to log them with sync_dist=True would reduce them twice, so silence it for those keys."""
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\('(val|test)/")
