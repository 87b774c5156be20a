"""SIGTERM / SIGUSR1 (preemption, Slurm's time-limit warning): save a resumable checkpoint at the next training
batch boundary and exit with 128 + the signal number."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback


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
