"""Checkpoint files: written atomically (`AtomicCheckpointIO`: a temporary file beside the target, then a
rename), checked before use (a damaged file is named, with the run's newest valid one), and kept few
(`StepCheckpoints` keeps the two newest step files, also after a resume), so a kill never leaves only a
half-written checkpoint. resume=last/auto moves a damaged file into checkpoints/damaged/ and takes the
previous one."""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_warn

from camexp.errors import CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint as a hidden temporary file in the destination folder, fsyncs it, then renames
    it over the destination: a kill at any moment leaves the previous file whole.

    Lightning's own save stages the file in the system temp folder and moves it into place, which is a
    copy, not a rename, when that is another file system (node-local /tmp, checkpoints on a shared disk).
    Remote paths (s3://, ...) go through Lightning's save unchanged.
    """

    TEMP_GLOB = ".*.ckpt.*.tmp"

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of saves that a kill interrupted (never valid checkpoints)."""
    for temp in (Path(run_dir) / "checkpoints").glob(AtomicCheckpointIO.TEMP_GLOB):
        temp.unlink(missing_ok=True)


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` is not a readable checkpoint, or None if it is one.

    torch.save writes a zip archive holding <name>/data.pkl: a file that is no zip at all is not a
    checkpoint, a truncated one has no central directory, a damaged one fails the CRC check, and a zip
    of other files (no data.pkl) is not a checkpoint either. Reads the file once, without unpickling it.
    """
    if not path.is_file():
        return "no such file" if not path.is_dir() else "it is a folder, not a checkpoint file"
    if path.stat().st_size == 0:
        return "the file is empty"
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        return "not a zip archive, so not a checkpoint that torch.save (camexp train) writes"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"not a complete checkpoint archive ({err}); the file is probably truncated"
    if bad is not None:
        return f"the archive member {bad} is damaged (CRC mismatch)"
    if not any(name.endswith("/data.pkl") for name in names):
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        return f"a zip archive of other files ({shown or 'empty'}), not a PyTorch checkpoint (it has no data.pkl)"
    return None


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, newest first (by modification time; last.ckpt first on ties): those
    of checkpoints/ and the hpc_ckpt_N.ckpt that Lightning saves in the run dir when Slurm signals a requeue."""
    found = [*(Path(run_dir) / "checkpoints").glob("*.ckpt"), *Path(run_dir).glob("hpc_ckpt_*.ckpt")]
    files = [p for p in found if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)


def check_checkpoint(path: str | Path, command: str = "train") -> Path:
    """`path` if it is a readable checkpoint; otherwise a CheckpointError naming it, the run's newest valid
    checkpoint and what to do, in the words of `command` (train: resume=...; evaluate, validate, cam)."""
    path = Path(path)
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    others = [p for p in run_checkpoints(path.parent.parent) if p != path and checkpoint_problem(p) is None]
    raise CheckpointError(f"Cannot use checkpoint {path}: {problem}. {_checkpoint_advice(command, others)}")


def _checkpoint_advice(command: str, others: list[Path]) -> str:
    """What to do instead of a bad checkpoint: resume= is train's option; the other commands take a path."""
    if command == "train":
        if others:
            return f"The newest valid checkpoint of this run is {others[0]}: resume={others[0]} (or resume=last)."
        return "No other valid checkpoint was found next to it; start the run again without resume."
    usage = {"cam": "camexp cam --ckpt {} IMAGES ..."}.get(command, f"camexp {command} {{}} [key=value ...]")
    if others:
        return f"The newest valid checkpoint of this run is {others[0]}: {usage.format(others[0])}."
    return f"Pass a checkpoint written by camexp train: {usage.format('<run>/checkpoints/last.ckpt')}."


DAMAGED_DIR = "damaged"  # checkpoints/damaged/: damaged files resume set aside (out of its way, kept to inspect)


def set_aside(path: Path, run_dir: Path) -> Path | None:
    """Move a damaged checkpoint into <run>/checkpoints/damaged/; None when another process of the same job
    (srun, torchrun: every process resolves the checkpoint) moved it first."""
    target = Path(run_dir) / "checkpoints" / DAMAGED_DIR / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    return target


def newest_valid_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run that reads back. Damaged newer ones are moved into checkpoints/damaged/
    with a warning naming them, so the next resume and the run's own checkpoint rules no longer meet them."""
    for path in run_checkpoints(run_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        target = set_aside(path, run_dir)
        moved = f"Moved it to {target} (delete it when you no longer need it)" if target else "Another process moved it"
        rank_zero_warn(f"Skipping damaged checkpoint {path}: {problem}. {moved}; looking at the previous one.")
    return None


# -- step checkpoints: the two newest, also after a resume -----------------------------------------------------


STEP_FILE = re.compile(r"step(\d+)(?:-v(\d+))?\.ckpt")


def step_file_order(path: Path) -> tuple[int, int] | None:
    """(step, version) of a step checkpoint file (step0000004.ckpt, step0000004-v1.ckpt); None for other files."""
    match = STEP_FILE.fullmatch(Path(path).name)
    return (int(match[1]), int(match[2] or 0)) if match else None


def stale_step_checkpoints(paths: Iterable[Path], current_step: int, keep: int) -> list[Path]:
    """The step checkpoints to delete at `current_step`: all but the `keep` newest up to it, and every file of a
    later step (written by a run that was killed after that step and resumed from an earlier checkpoint)."""
    steps = sorted((order, Path(p)) for p in paths if (order := step_file_order(Path(p))) is not None)
    past = [p for (step, _), p in steps if step <= current_step]
    future = [p for (step, _), p in steps if step > current_step]
    return past[: max(len(past) - keep, 0)] + future


class StepCheckpoints(ModelCheckpoint):
    """A checkpoint every `every_n_train_steps` optimizer steps (step0000500.ckpt, ...), the `keep` newest kept.

    ModelCheckpoint alone keeps more after a resume: Lightning never deletes the file a run resumed from, and
    files that a killed run wrote after the resumed checkpoint are not its own. Files of a step the resumed run
    reaches again are overwritten (no -v1 copies). Its state key is the plain ModelCheckpoint's, so checkpoints
    written before this class existed resume with their state.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int, keep: int = 2) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="step{step:07d}",
            auto_insert_metric_name=False,
            monitor="step",
            mode="max",
            save_top_k=keep,
            every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,
        )
        self.keep = keep

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        newest = self.best_model_path  # monitor=step, mode=max: the newest step checkpoint
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.best_model_path != newest and trainer.is_global_zero:  # it just saved one
            for path in stale_step_checkpoints(Path(self.dirpath).glob("step*.ckpt"), trainer.global_step, self.keep):
                path.unlink(missing_ok=True)


def checkpoint_callbacks(run_dir: Path, every_n_steps: int) -> list[ModelCheckpoint]:
    """A training run's checkpoints: the best epoch by val/acc_top1 (epochNNN.ckpt), last.ckpt after every
    epoch, and with every_n_steps > 0 a step checkpoint every that many optimizer steps (the two newest kept),
    so a kill mid-epoch loses at most that many steps."""
    folder = Path(run_dir) / "checkpoints"
    best = ModelCheckpoint(
        dirpath=folder, filename="epoch{epoch:03d}", auto_insert_metric_name=False, monitor="val/acc_top1", mode="max"
    )
    # last.ckpt after every epoch (Lightning 2.6's save_last=True only follows improvements of the monitor).
    last = ModelCheckpoint(dirpath=folder, filename="last", enable_version_counter=False)
    steps = [StepCheckpoints(folder, every_n_steps, keep=2)] if every_n_steps > 0 else []
    return [best, last, *steps]
