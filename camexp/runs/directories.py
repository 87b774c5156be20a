"""Where a run writes: <save_dir>/<name>/version_N (or slurm_<job>, torchrun_<id> for external launches), and
which checkpoint it resumes from. DDP worker processes take what rank 0 chose (RUN_DIR_ENV, RESUME_ENV,
set by `camexp.runs.ddp.shared_with_workers`)."""

from __future__ import annotations

import os
from pathlib import Path

from camexp.errors import CamexpError
from camexp.runs.checkpoints import check_checkpoint, newest_valid_checkpoint, run_checkpoints

RUN_DIR_ENV = "CAMEXP_RUN_DIR"  # the run directory: set by rank 0 for the DDP workers it starts, or by a launch script


RESUME_ENV = "CAMEXP_RESUME_CKPT"  # the checkpoint rank 0 resumes from ("" for none), for its DDP workers


def _versions(experiment_dir: Path) -> list[int]:
    found = [p.name.split("_", 1)[1] for p in experiment_dir.glob("version_*") if p.is_dir()]
    return sorted(int(v) for v in found if v.isdigit())


def external_launch_name() -> str | None:
    """A run name that every process of an externally launched job (srun, torchrun) computes alike.

    Those processes start together and cannot ask rank 0 which version_N it picked, so the name comes
    from the job: slurm_<job id> or torchrun_<run id>. None when Lightning starts the processes itself.
    """
    tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    if tasks > 1 and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive") and "SLURM_JOB_ID" in os.environ:
        return f"slurm_{os.environ['SLURM_JOB_ID']}"
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "TORCHELASTIC_RUN_ID" in os.environ:
        run_id = os.environ["TORCHELASTIC_RUN_ID"]
        if run_id in ("", "none"):
            raise CamexpError(
                "torchrun started this run without a run id, so its processes cannot agree on a run directory. "
                "Pass --standalone (one node) or --rdzv-id=<unique id> (several nodes), "
                f"or export {RUN_DIR_ENV}=<run dir> for every process."
            )
        return f"torchrun_{run_id}"
    return None


def newest_run_with_checkpoint(experiment_dir: Path) -> Path | None:
    """The run directory under `experiment_dir` whose newest checkpoint is the most recent."""
    best: tuple[int, Path] | None = None
    for run_dir in (p for p in Path(experiment_dir).glob("*") if p.is_dir()):
        files = run_checkpoints(run_dir)
        if files and (best is None or files[0].stat().st_mtime_ns > best[0]):
            best = (files[0].stat().st_mtime_ns, run_dir)
    return best[1] if best else None


def resolve_run_dir(save_dir: str | Path, name: str, resume: str | None) -> tuple[Path, str | None]:
    """The run directory (save_dir/name/version_N) and the checkpoint to resume from, if any.

    resume=last continues from the newest checkpoint of this experiment (last.ckpt or a step
    checkpoint; a damaged newest file is skipped with a warning naming it); resume=auto does the
    same, or starts afresh when there is none (for requeued jobs); resume=PATH resumes that file in
    its own run directory, and fails with a message naming it if it is damaged. DDP worker processes
    started by Lightning take what rank 0 chose (RUN_DIR_ENV, RESUME_ENV).
    """
    experiment_dir = Path(save_dir) / name
    fixed = os.environ.get(RUN_DIR_ENV)
    if fixed and RESUME_ENV in os.environ:  # a worker process: rank 0 already decided
        return Path(fixed), os.environ[RESUME_ENV] or None
    if resume in ("last", "auto"):
        run_dir = Path(fixed) if fixed else newest_run_with_checkpoint(experiment_dir)
        ckpt = newest_valid_checkpoint(run_dir) if run_dir else None
        if ckpt is not None:
            return run_dir, str(ckpt)
        if resume == "last":
            where = run_dir / "checkpoints" if run_dir else experiment_dir / "*" / "checkpoints"
            raise CamexpError(
                f"resume=last but no valid checkpoint was found in {where}. "
                f"Start the run without resume (or with resume=auto), or pass resume=PATH/TO.ckpt."
            )
    elif resume:
        ckpt = check_checkpoint(resume)
        return (Path(fixed) if fixed else ckpt.parent.parent), str(ckpt)
    if fixed:
        return Path(fixed), None
    launch = external_launch_name()
    if launch:
        return experiment_dir / launch, None
    versions = _versions(experiment_dir)
    return experiment_dir / f"version_{versions[-1] + 1 if versions else 0}", None


def write_run_dir_file(path: str | Path, run_dir: Path) -> None:
    """--run-dir-file: the run directory, one line, for the scripts that chain commands after `camexp train`."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(str(run_dir) + "\n")
