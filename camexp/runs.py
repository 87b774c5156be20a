"""Surviving a kill: which checkpoint to resume from, and the random state that goes with it.

Lightning restores weights, optimizer, scheduler and loop counters; the training loader restores
the data order (camexp/data/resumable.py). What is left is the global random state that drives the
augmentation (and dropout): `RandomStateCheckpoint` stores it in every checkpoint and puts it back
right before the first resumed batch, so a resumed run matches an uninterrupted one (exactly with
data.num_workers=0; with workers, the rest of the interrupted epoch gets other random crops).

Checkpoints are written atomically (`AtomicCheckpointIO`: a temporary file beside the target, then
a rename) and the step checkpoints keep the two newest files (`StepCheckpoints`, also after a resume),
so a kill never leaves only a half-written checkpoint. A file damaged some other way (a copy cut short)
is detected and named; resume=last/auto moves it into checkpoints/damaged/ and takes the previous one.
A resumed run first drops from the run's TensorBoard event files what the interrupted run logged after
its checkpoint (`drop_events_after_checkpoint`), so the resumed run continues one stream of steps.

On SIGTERM or SIGUSR1 (preemption, Slurm's time-limit warning) `PreemptionCheckpoint` saves a
resumable checkpoint at the next training batch boundary and exits with 128 + the signal number.

A resume keeps the run's settings: `train.check_resume_changes` refuses changed ones unless
resume_changes=allow, and `RunRecord` then lists them in resume_changes.yaml beside config.yaml.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_warn

from camexp import config
from camexp.errors import (  # defined beside the other user-facing errors; imported from here too
    CamexpError,
    CheckpointError,
)

RESUME_CHANGES_FILE = "resume_changes.yaml"  # in the run dir: the settings changed by resumes (resume_changes=allow)


class PeerStoppedError(CamexpError):
    """Another process of a distributed run stopped (it printed its own error), so this one stops too."""


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


# -- DDP: one failing process stops the others quietly ---------------------------------------------------------

# What a collective operation raises when another process of the run is gone (gloo, NCCL).
PEER_LOST = (
    "Connection closed by peer",
    "Connection reset by peer",
    "remote worker crashing",
    "Broken pipe",
    "NCCL communicator was aborted",
)


def lost_a_peer(err: BaseException) -> bool:
    """Whether `err` is a collective operation failing because another process of the run stopped."""
    return isinstance(err, RuntimeError) and any(marker in str(err) for marker in PEER_LOST)


@contextlib.contextmanager
def workers_stop_with(trainer) -> Iterator[None]:
    """Around a multi-process fit/validate: when this process fails, stop the DDP worker processes Lightning
    started for it (rank 0 alone has them), so they neither wait for it nor print the traceback of a lost
    connection; when another process failed, this one's lost connection becomes a one-line PeerStoppedError
    (the failed process printed its own message). A preemption's exit (SystemExit) is no failure: every rank
    stops by itself at the same step."""
    try:
        yield
    except Exception as err:
        launcher = getattr(trainer.strategy, "launcher", None)
        procs = getattr(launcher, "procs", None) or []
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
        if trainer.world_size > 1 and lost_a_peer(err):
            raise PeerStoppedError(
                f"Another process of this {trainer.world_size}-process run stopped, so this one stops too. Its own "
                "error is printed above; if there is none, it was killed (look at its memory use and the "
                "scheduler's log)."
            ) from None
        raise


def newest_run_with_checkpoint(experiment_dir: Path) -> Path | None:
    """The run directory under `experiment_dir` whose newest checkpoint is the most recent."""
    best: tuple[int, Path] | None = None
    for run_dir in (p for p in Path(experiment_dir).glob("*") if p.is_dir()):
        files = run_checkpoints(run_dir)
        if files and (best is None or files[0].stat().st_mtime_ns > best[0]):
            best = (files[0].stat().st_mtime_ns, run_dir)
    return best[1] if best else None


# -- random state --------------------------------------------------------------------------------------------


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


# -- preemption: SIGTERM / SIGUSR1 -------------------------------------------------------------------------


class Preempted(SystemExit):
    """Training stopped on a preemption signal after saving a checkpoint; the process exits with
    128 + the signal number (143 for SIGTERM, 138 for SIGUSR1), so `train && next-step` stops there."""

    def __init__(self, signum: int, checkpoint: Path, step: int) -> None:
        super().__init__(128 + signum)
        self.signum, self.checkpoint, self.step = signum, checkpoint, step


class PreemptionCheckpoint(Callback):
    """On SIGTERM (how schedulers preempt) or SIGUSR1 (Slurm's `--signal` warning) finish the current
    training batch, save `checkpoints/preempted.ckpt` (the same kind of checkpoint as the step ones,
    with ExactResume's state, found by resume=auto/last), print where it is and exit with 128 + signum.

    The handlers only set a flag; the save happens at the next training batch boundary (a signal that
    arrives during validation is acted on after the next training batch). They replace Lightning's own
    SIGTERM/SIGUSR1 handlers for the duration of fit (Lightning would exit with status 0 and no
    checkpoint, or save Slurm's hpc checkpoint from inside the handler, mid-step); Lightning restores
    the previous handlers at its teardown. With several processes the ranks agree at every batch end
    (one all-reduce of the flag), so all of them stop and save at the same step even when only one
    process was signalled.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
    FILENAME = "preempted.ckpt"

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.received: int = 0  # the signal number, 0 while none arrived

    def _handler(self, signum, frame) -> None:
        self.received = self.received or int(signum)

    def _install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                signal.signal(signum, self._handler)

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._install()  # Lightning registers its handlers right before the sanity check: take them over

    def on_train_start(self, trainer, pl_module) -> None:
        self._install()

    def _agreed_signal(self, trainer) -> int:
        """The signal any rank received (the largest number), the same on every rank."""
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([self.received], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            return int(flag.item())
        return self.received

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signum = self._agreed_signal(trainer)
        if not signum:
            return
        path = self.dirpath / self.FILENAME
        trainer.save_checkpoint(path)  # every rank calls it (a barrier inside); rank 0 writes, atomically
        if trainer.is_global_zero:
            name = signal.Signals(signum).name
            print(
                f"camexp: preempted by {name} at step {trainer.global_step} (epoch {trainer.current_epoch}): "
                f"checkpoint saved to {path}; resume with the same command plus resume=auto "
                f"(exit status {128 + signum})",
                file=sys.stderr,
                flush=True,
            )
        raise Preempted(signum, path, trainer.global_step)
