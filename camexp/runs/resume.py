"""Resuming a run as if it had never stopped: the same settings, the same random stream, one stream of logs.

Lightning restores weights, optimizer, scheduler and loop counters; the training loader restores the data
order (camexp/data/resumable.py). What is left is the global random state that drives the augmentation
(and dropout): `ExactResume` stores it in every checkpoint and puts it back right before the first resumed
batch, so a resumed run matches an uninterrupted one (exactly with data.num_workers=0; with workers, the rest
of the interrupted epoch gets other random crops). A resumed run first drops from the run's TensorBoard
event files what the interrupted run logged after its checkpoint (`drop_events_after_checkpoint`), so it
continues one stream of steps.

A resume keeps the run's settings: `check_resume_changes` refuses changed ones unless resume_changes=allow,
and `RunRecord` then lists them in resume_changes.yaml beside config.yaml.
"""

from __future__ import annotations

import os
import pickle
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_warn

from camexp import config
from camexp.errors import CamexpError

RESUME_CHANGES_FILE = "resume_changes.yaml"  # in the run dir: the settings changed by resumes (resume_changes=allow)


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
            f"{run_dir / RESUME_CHANGES_FILE} and written to config.yaml."
        )
    return changes


def record_resume_changes(run_dir: Path, ckpt_path: str, changes: dict[str, tuple]) -> Path:
    """Append one entry to <run dir>/resume_changes.yaml: when, from which checkpoint, key: {old, new}."""
    entry = {
        "resumed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkpoint": str(ckpt_path),
        "changes": {key: {"old": old, "new": new} for key, (old, new) in changes.items()},
    }
    path = Path(run_dir) / RESUME_CHANGES_FILE
    with path.open("a") as f:  # a YAML list, one item per resume
        f.write(yaml.safe_dump([entry], sort_keys=False))
    return path


class RunRecord(Callback):
    """Rank 0 writes the run's config.yaml, and the settings a resume changed (resume_changes=allow) into
    resume_changes.yaml, at fit start: after Lightning restored a resumed checkpoint's weights, so a resume
    whose checkpoint does not fit its new settings fails with the run's record as it was."""

    def __init__(self, cfg: DictConfig, run_dir: Path, ckpt_path: str | None, changes: dict[str, tuple]) -> None:
        self.cfg, self.run_dir, self.ckpt_path, self.changes = cfg, Path(run_dir), ckpt_path, changes

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        if self.changes:
            path = record_resume_changes(self.run_dir, self.ckpt_path, self.changes)
            listed = "; ".join(f"{key}: {old} -> {new}" for key, (old, new) in self.changes.items())
            print(f"camexp: resuming with changed settings (resume_changes=allow): {listed}; see {path}",
                  file=sys.stderr)  # fmt: skip
        config.save(self.cfg, self.run_dir / "config.yaml")


# -- random state ------------------------------------------------------------------------------------------------


def random_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, random) as tensors and plain values, so the
    checkpoint stays loadable with torch.load(weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }


def set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


class ExactResume(Callback):
    """Saves the global random state and the training loader's position in every checkpoint, and
    restores both when training resumes.

    Restored in `on_train_start`: after Lightning built the loaders and before the first batch is
    drawn, i.e. at the same point of the random stream where the checkpoint was taken (after a
    training step). The loader position is restored here too because Lightning 2.x restores a
    stateful loader only if it builds the loader after loading the checkpoint, and it builds it
    before when `configure_optimizers` reads `trainer.estimated_stepping_batches` (CAMNet does).
    Every rank restores rank 0's random state (all ranks are seeded alike and draw alike).
    """

    def __init__(self) -> None:
        self._trainer = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def _loader(self):
        loader = self._trainer.train_dataloader if self._trainer is not None else None
        return loader if hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict") else None

    def state_dict(self) -> dict[str, Any]:
        loader = self._loader()
        return {
            "random": random_state(),
            "train_loader": loader.state_dict() if loader is not None else None,
            "saved_at": time.time(),  # what the run logged after this moment, it logs again when resumed from here
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is None:
            return
        loader = self._loader()
        if loader is not None and self._pending.get("train_loader") is not None:
            loader.load_state_dict(self._pending["train_loader"])
        set_random_state(self._pending["random"])
        self._pending = None


# -- TensorBoard after a resume: one stream of steps ------------------------------------------------------------


def checkpoint_position(path: str | Path) -> tuple[int, float] | None:
    """(global step, time of saving) of a checkpoint: the time ExactResume stored in it, else the file's mtime;
    None when it does not load safely (weights_only) here: Lightning's own restore then says why."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, OSError) as err:
        rank_zero_warn(f"Cannot read the step of {path} ({err}); its TensorBoard events are left as they are.")
        return None
    saved_at = (state.get("callbacks", {}).get("ExactResume") or {}).get("saved_at")
    return int(state.get("global_step", 0)), float(saved_at if saved_at is not None else Path(path).stat().st_mtime)


def logged_after(step: int, wall_time: float, resume_step: int, saved_at: float) -> bool:
    """Whether an event was logged after the checkpoint (resume_step, saved_at) was taken, at a step the resumed
    run logs again. Both conditions matter: the epoch's validation images are logged at the checkpoint's own
    step before it is saved; the epoch's training averages are logged after it at an earlier step."""
    return step >= resume_step and wall_time > saved_at


def rewrite_event_file(path: Path, keep: Callable[[Any], bool]) -> bool:
    """Rewrite a TensorBoard event file with only the events `keep` accepts (written beside it, then renamed);
    False, and the file untouched, when it keeps them all."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    records = list(RawEventFileLoader(str(path)).Load())
    kept = [record for record in records if keep(Event.FromString(record))]
    if len(kept) == len(records):
        return False
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as f:
            writer = RecordWriter(f)
            for record in kept:
                writer.write(record)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return True


def drop_events_after_checkpoint(run_dir: Path, ckpt: str | Path) -> list[Path]:
    """Remove from the run's TensorBoard event files what was logged after `ckpt` was saved (the resumed run
    logs those steps again); returns the files changed."""
    position = checkpoint_position(ckpt)
    if position is None:
        return []
    resume_step, saved_at = position
    changed = []
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        if rewrite_event_file(path, lambda event: not logged_after(event.step, event.wall_time, resume_step, saved_at)):
            changed.append(path)
    return changed
