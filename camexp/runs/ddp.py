"""Several processes, one run: the DDP workers that Lightning starts learn rank 0's run directory and
checkpoint, and one failing process stops the others quietly."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from camexp.errors import CamexpError
from camexp.runs.directories import RESUME_ENV, RUN_DIR_ENV


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


class PeerStoppedError(CamexpError):
    """Another process of a distributed run stopped (it printed its own error), so this one stops too."""


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
