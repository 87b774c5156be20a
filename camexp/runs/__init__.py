"""A training run's life outside the training loop: where it writes, how it survives a kill, how its processes agree.

    directories.py   the run directory (version_N, slurm_<job>, torchrun_<id>) and the checkpoint to resume from
    checkpoints.py   atomic saves, damaged-file checks, the run's checkpoint callbacks (best, last, step files)
    resume.py        resuming exactly: settings kept (RunRecord), random state (ExactResume), one stream of logs
    ddp.py           DDP hand-off to the worker processes; one failing process stops the others
    preemption.py    SIGTERM / SIGUSR1: checkpoint, then exit with 128 + the signal number

Four Lightning callbacks live here rather than in camexp/callbacks/, since they are about the run, not about
what it measures: StepCheckpoints (checkpoints.py), RunRecord and ExactResume (resume.py), PreemptionCheckpoint
(preemption.py). Import from the submodules; this package re-exports nothing.
"""
