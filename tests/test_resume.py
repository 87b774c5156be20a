"""Faults: a run killed with SIGKILL mid-epoch and resumed with resume=last ends exactly where an
uninterrupted run ends; damaged checkpoints are named, never silently used."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from camexp import config
from camexp.cli import main
from camexp.data.resumable import ResumableDataLoader, ResumableDistributedSampler
from camexp.errors import CheckpointError
from camexp.runs.checkpoints import (
    AtomicCheckpointIO,
    check_checkpoint,
    newest_valid_checkpoint,
    stale_step_checkpoints,
)
from camexp.runs.resume import logged_after
from tests.conftest import REPO, tiny_overrides

# -- the training loader's position ------------------------------------------------------------------------


def _loader(seed=0):
    data = TensorDataset(torch.arange(20))
    sampler = ResumableDistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=seed)
    return ResumableDataLoader(data, batch_size=4, sampler=sampler, drop_last=True, seed=seed)


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [batch[0].tolist() for batch in loader]


def test_loader_resumes_mid_epoch_with_the_remaining_batches():
    reference = _loader()
    epoch1 = _epoch(reference, 1)
    interrupted = _loader()
    interrupted.sampler.set_epoch(1)
    it = iter(interrupted)
    seen = [next(it)[0].tolist() for _ in range(2)]
    state = interrupted.state_dict()
    assert state["epoch"] == 1 and state["batches_done"] == 2

    resumed = _loader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)  # Lightning sets the same epoch again: the skip must survive it
    rest = [batch[0].tolist() for batch in resumed]
    assert seen + rest == epoch1
    assert _epoch(resumed, 2) == _epoch(reference, 2)  # and the next epoch is whole again


def test_loader_state_after_a_complete_epoch_starts_the_next_one():
    done = _loader()
    _epoch(done, 0)
    resumed = _loader()
    resumed.load_state_dict(done.state_dict())
    assert [b[0].tolist() for b in resumed] == _epoch(_loader(), 1)


# -- damaged checkpoints -----------------------------------------------------------------------------------


def _fake_checkpoint(path: Path, payload: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.full((1000,), float(payload))}}, path)
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_checkpoint_error_names_it_and_the_previous_one(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    older = _fake_checkpoint(ckpts / "step0000002.ckpt", 2)
    time.sleep(0.02)
    newer = _fake_checkpoint(ckpts / "last.ckpt", 4)
    _truncate(newer)
    with pytest.raises(CheckpointError) as err:
        check_checkpoint(newer)
    message = str(err.value)
    assert str(newer) in message and "truncated" in message and str(older) in message
    assert older.is_file() and check_checkpoint(older) == older


def test_resume_last_skips_a_damaged_newest_checkpoint_with_a_warning(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    good = _fake_checkpoint(ckpts / "step0000002.ckpt", 2)
    time.sleep(0.02)
    bad = _fake_checkpoint(ckpts / "last.ckpt", 4)
    _truncate(bad)
    aside = ckpts / "damaged" / "last.ckpt"
    with pytest.warns(UserWarning, match=re.escape("last.ckpt: not a complete checkpoint archive")) as warned:
        assert newest_valid_checkpoint(tmp_path / "run") == good
    assert f"Moved it to {aside}" in str(warned[0].message)
    assert not bad.exists() and aside.is_file()  # out of the way of the next resume and of the run's own saves
    assert newest_valid_checkpoint(tmp_path / "run") == good  # silently now


def test_stale_step_checkpoints_keep_the_two_newest_of_this_timeline():
    names = ["step0000002.ckpt", "step0000004.ckpt", "step0000006.ckpt", "step0000006-v1.ckpt", "step0000010.ckpt"]
    paths = [Path("ckpts") / n for n in [*names, "last.ckpt", "epoch001.ckpt"]]
    stale = [p.name for p in stale_step_checkpoints(paths, current_step=8, keep=2)]
    # step 10 was written by a run killed after it and resumed from an earlier checkpoint: not this run's
    assert stale == ["step0000002.ckpt", "step0000004.ckpt", "step0000010.ckpt"]
    assert stale_step_checkpoints(paths[:2], current_step=4, keep=2) == []


def test_events_logged_after_the_checkpoint_are_the_ones_a_resumed_run_repeats():
    # checkpoint of step 3 saved at t=100 (an epoch end: its validation images were logged at step 3 before it)
    assert not logged_after(step=3, wall_time=99.0, resume_step=3, saved_at=100.0)  # the epoch's images
    assert not logged_after(step=2, wall_time=101.0, resume_step=3, saved_at=100.0)  # the epoch's train averages
    assert logged_after(step=3, wall_time=101.0, resume_step=3, saved_at=100.0)  # the next epoch's first step


def test_an_interrupted_save_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1), "w": torch.ones(1000)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # pickling fails half-way through writing
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1000), "z": lambda: 0}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert list(path.parent.iterdir()) == [path]  # no temporary left behind


def test_checkpoint_with_a_corrupted_member_is_rejected(tmp_path):
    path = _fake_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", 1)
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename) + len(member.extra) + 100
    raw[start : start + 8] = b"\xff" * 8  # same size, wrong bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        check_checkpoint(path)


# -- the real thing: SIGKILL mid-epoch, resume, same result --------------------------------------------------

# Pauses the real `camexp train` right after the step checkpoint of step PAUSE_AT_STEP is written, so the
# test kills it at a known point (mid-epoch) instead of racing a fast CPU run.
PAUSER = textwrap.dedent(
    """
    import os, sys, time
    from pytorch_lightning.callbacks import ModelCheckpoint
    from camexp.cli import main

    pause_at = int(os.environ["PAUSE_AT_STEP"])
    original = ModelCheckpoint.on_train_batch_end

    def on_train_batch_end(self, trainer, *args, **kwargs):
        original(self, trainer, *args, **kwargs)
        if self._every_n_train_steps and trainer.global_step == pause_at:
            print("PAUSED", flush=True)
            time.sleep(600)

    ModelCheckpoint.on_train_batch_end = on_train_batch_end
    sys.exit(main(sys.argv[1:]))
    """
)


def _camexp(args, cwd, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CAMEXP_RUN_DIR", None)
    command = [sys.executable, "-m", "camexp", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, **kw)


def _val_metrics(run_dir: Path) -> dict[str, float]:
    results = json.loads((run_dir / "results.json").read_text())
    return {k: v for k, v in results.items() if k.startswith("val/")}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_last_matches_an_uninterrupted_run(tiny_synthloc, tmp_path, capsys):
    # 48 train images, batch 16: 3 steps per epoch; step checkpoints every 2 steps: step 4 is mid-epoch 1.
    # Exact equality needs deterministic kernels and data.num_workers=0 (with workers, the rest of the
    # interrupted epoch gets other random crops; the data order is still exact).
    common = [
        str(REPO / "experiments" / "synthloc_gap.yaml"),
        *tiny_overrides(
            tiny_synthloc,
            tmp_path / "logs",
            **{"trainer.max_epochs": 3, "trainer.deterministic": "true", "trainer.checkpoint_every_n_steps": 2},
        ),
    ]
    full = _camexp(["train", *common, "name=full"], cwd=tmp_path, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]

    pauser = tmp_path / "pause_train.py"
    pauser.write_text(PAUSER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PAUSE_AT_STEP": "4"}
    log = open(tmp_path / "killed.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, str(pauser), "train", *common, "name=killed"], cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.time() + 300
        while "PAUSED" not in (tmp_path / "killed.log").read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert "PAUSED" in (tmp_path / "killed.log").read_text(), (tmp_path / "killed.log").read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    run_dir = tmp_path / "logs" / "killed" / "version_0"
    ckpts = run_dir / "checkpoints"
    assert not (run_dir / "results.json").exists()
    newest = ckpts / "step0000004.ckpt"
    state = torch.load(newest, map_location="cpu", weights_only=True)
    progress = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert state["epoch"] == 1 and progress["completed"] < progress["ready"] == 1  # killed mid-epoch

    # A truncated checkpoint (here a copy, the newest file) is named; the previous ones are still there.
    damaged = ckpts / "zz_damaged.ckpt"
    damaged.write_bytes(newest.read_bytes()[:5000])
    assert main(["train", *common, "name=killed", f"resume={damaged}"]) == 2  # the CLI, in this process
    refused = capsys.readouterr().err
    assert str(damaged) in refused and "truncated" in refused and str(newest) in refused
    assert newest.is_file() and (ckpts / "step0000002.ckpt").is_file()

    # resume=last skips the damaged newest file (warning naming it) and continues from step 4.
    resumed = _camexp(["train", *common, "name=killed", "resume=last"], cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert "Skipping damaged checkpoint" in output and "zz_damaged.ckpt" in output
    assert f"Restoring states from the checkpoint path at {newest}" in output

    full_dir = tmp_path / "logs" / "full" / "version_0"
    assert _val_metrics(run_dir) == _val_metrics(full_dir)
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for d in (run_dir, full_dir)
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# -- preemption: SIGTERM / SIGUSR1 mid-epoch, checkpoint, non-zero exit, resume=auto, same result ------------

# Like PAUSER, but after the step checkpoint of PAUSE_AT_STEP it waits until the signal the test sends has
# reached camexp's handler, then lets training go on: the run must stop at the next batch boundary.
SIGNAL_WAITER = textwrap.dedent(
    """
    import os, sys, time
    from pytorch_lightning.callbacks import ModelCheckpoint
    from camexp.cli import main
    from camexp.runs.preemption import PreemptionCheckpoint

    pause_at = int(os.environ["PAUSE_AT_STEP"])
    original = ModelCheckpoint.on_train_batch_end

    def on_train_batch_end(self, trainer, *args, **kwargs):
        original(self, trainer, *args, **kwargs)
        if self._every_n_train_steps and trainer.global_step == pause_at:
            preemption = next(c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint))
            print("PAUSED", flush=True)
            deadline = time.time() + 300
            while not preemption.received and time.time() < deadline:
                time.sleep(0.05)

    ModelCheckpoint.on_train_batch_end = on_train_batch_end
    sys.exit(main(sys.argv[1:]))
    """
)


def _preemption_args(tiny_synthloc, logs: Path) -> list[str]:
    return [
        str(REPO / "experiments" / "synthloc_gap.yaml"),
        *tiny_overrides(
            tiny_synthloc,
            logs,
            **{
                "trainer.max_epochs": 3,
                "trainer.deterministic": "true",
                "trainer.checkpoint_every_n_steps": 2,
                "trainer.log_every_n_steps": 1,  # every step in TensorBoard: a resume must not log one twice
            },
        ),
    ]


@pytest.fixture(scope="module")
def uninterrupted_run(tiny_synthloc, tmp_path_factory) -> Path:
    """The run the preempted ones must match: 3 epochs of 3 steps, never interrupted."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    full = _camexp(["train", *_preemption_args(tiny_synthloc, tmp / "logs"), "name=full"], cwd=tmp, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    return tmp / "logs" / "full" / "version_0"


def _same_weights(a: Path, b: Path) -> bool:
    weights = [torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for p in (a, b)]
    return weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def _train_until_paused_then_signal(
    waiter: Path, common: list[str], tmp_path: Path, signum: int, pause_at: int = 4
) -> tuple[int, Path]:
    """Run `camexp train` through the waiter script until it pauses after step `pause_at` (default 4: mid-epoch 1,
    after the step-4 checkpoint), send `signum`, and return the exit status and the log file."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PAUSE_AT_STEP": str(pause_at)}
    env.pop("CAMEXP_RUN_DIR", None)
    log_path = tmp_path / "preempted.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(waiter), "train", *common, "name=preempted"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.time() + 300
            while "PAUSED" not in log_path.read_text() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert "PAUSED" in log_path.read_text(), log_path.read_text()[-3000:]
            proc.send_signal(signum)
            return proc.wait(timeout=300), log_path
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_preemption_signal_checkpoints_exits_nonzero_and_resume_auto_matches(
    signum, tiny_synthloc, uninterrupted_run, tmp_path
):
    common = _preemption_args(tiny_synthloc, tmp_path / "logs")
    waiter = tmp_path / "wait_for_signal.py"
    waiter.write_text(SIGNAL_WAITER)
    status, log_path = _train_until_paused_then_signal(waiter, common, tmp_path, signum)
    output = log_path.read_text()
    assert status == 128 + signum, output[-3000:]  # not 0: `train && next-step` stops here

    run_dir = tmp_path / "logs" / "preempted" / "version_0"
    ckpt = run_dir / "checkpoints" / "preempted.ckpt"
    assert f"preempted by {signal.Signals(signum).name} at step 5" in output and str(ckpt) in output
    assert "resume=auto" in output
    assert not (run_dir / "results.json").exists()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    progress = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert state["global_step"] == 5 and state["epoch"] == 1 and progress["ready"] == 2  # the next batch, mid-epoch
    assert not list(run_dir.parent.glob("*/checkpoints/.*.tmp"))  # written atomically

    resumed = _camexp(["train", *common, "name=preempted", "resume=auto"], cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {ckpt}" in resumed.stdout + resumed.stderr
    assert _val_metrics(run_dir) == _val_metrics(uninterrupted_run)
    assert _same_weights(run_dir / "checkpoints" / "last.ckpt", uninterrupted_run / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_preemption_with_two_gloo_processes_stops_every_rank_at_the_same_step(tiny_synthloc, tmp_path):
    # Only rank 0 (the process the user started) gets SIGTERM; rank 1 (Lightning's worker) learns it from the
    # per-step all-reduce. batch 8 per rank: 24 images each, 3 steps per epoch, step 5 is mid-epoch 1.
    extra = {"data.batch_size": 8, "trainer.devices": 2, "trainer.strategy": "ddp", "trainer.accelerator": "cpu"}
    common = [
        str(REPO / "experiments" / "synthloc_gap.yaml"),
        *tiny_overrides(
            tiny_synthloc,
            tmp_path / "logs",
            **{"trainer.max_epochs": 3, "trainer.deterministic": "true", "trainer.checkpoint_every_n_steps": 2},
            **extra,
        ),
    ]
    full = _camexp(["train", *common, "name=full"], cwd=tmp_path, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]

    waiter = tmp_path / "wait_for_signal.py"
    # rank 0 waits for the signal; every rank reports the step it stopped at and its exit status
    only_rank0 = "if trainer.is_global_zero and self._every_n_train_steps and"
    report = textwrap.dedent(
        """
        try:
            code = main(sys.argv[1:])
        except SystemExit as stop:
            rank = os.environ.get("LOCAL_RANK", "0")
            print(f"RANK {rank} STOPPED AT {getattr(stop, 'step', None)} CODE {stop.code}", flush=True)
            raise
        sys.exit(code)
        """
    )
    script = SIGNAL_WAITER.replace("if self._every_n_train_steps and", only_rank0)
    waiter.write_text(script.replace("sys.exit(main(sys.argv[1:]))", report))
    status, log_path = _train_until_paused_then_signal(waiter, common, tmp_path, signal.SIGTERM)
    deadline = time.time() + 60
    while "RANK 1 STOPPED" not in log_path.read_text() and time.time() < deadline:
        time.sleep(0.2)
    output = log_path.read_text()
    assert status == 143, output[-3000:]
    assert "RANK 0 STOPPED AT 5 CODE 143" in output and "RANK 1 STOPPED AT 5 CODE 143" in output, output[-3000:]
    run_dir = tmp_path / "logs" / "preempted" / "version_0"
    state = torch.load(run_dir / "checkpoints" / "preempted.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 5 and state["epoch"] == 1

    resumed = _camexp(["train", *common, "name=preempted", "resume=auto"], cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full_dir = tmp_path / "logs" / "full" / "version_0"
    assert _val_metrics(run_dir) == _val_metrics(full_dir)
    assert _same_weights(run_dir / "checkpoints" / "last.ckpt", full_dir / "checkpoints" / "last.ckpt")


# -- a resume keeps the run's settings: a change is refused before anything is written, or recorded -----------


def _finished_tiny_run(tiny_synthloc, tmp_path: Path) -> tuple[list[str], Path]:
    """One short epoch of the default experiment (in this process); the command's words and its run dir."""
    common = [
        str(REPO / "experiments" / "synthloc_gap.yaml"),
        *tiny_overrides(tiny_synthloc, tmp_path / "logs", **{"trainer.checkpoint_every_n_steps": 0}),
        "name=kept",
    ]
    assert main(["train", *common]) == 0
    return common, tmp_path / "logs" / "kept" / "version_0"


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_tiny_run(tiny_synthloc, tmp_path_factory) -> tuple[list[str], Path]:
    return _finished_tiny_run(tiny_synthloc, tmp_path_factory.mktemp("finished"))


@pytest.mark.parametrize("resume", ["last", "auto", "PATH"])
def test_resume_with_changed_settings_is_refused_before_anything_is_written(
    resume, finished_tiny_run, capsys, monkeypatch
):
    monkeypatch.delenv("CAMEXP_RUN_DIR", raising=False)
    common, run_dir = finished_tiny_run
    before = _files(run_dir)
    target = run_dir / "checkpoints" / "last.ckpt" if resume == "PATH" else resume
    capsys.readouterr()
    assert main(["train", *common, f"resume={target}", "model.pool=max", "optim.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("camexp: error: ") and len(err.strip().splitlines()) == 1
    assert "model.pool: avg -> max" in err and "optim.lr: 0.1 -> 0.5" in err, err
    assert str(run_dir) in err and "resume_changes=allow" in err
    assert _files(run_dir) == before  # config.yaml untouched, nothing new
    assert [p.name for p in run_dir.parent.iterdir()] == ["version_0"]


def test_resume_changing_only_how_it_runs_and_logs_is_not_refused(tiny_synthloc, tmp_path, monkeypatch):
    monkeypatch.delenv("CAMEXP_RUN_DIR", raising=False)
    common, run_dir = _finished_tiny_run(tiny_synthloc, tmp_path)
    results = (run_dir / "results.json").read_text()
    ignored = ["trainer.log_every_n_steps=1", "eval.num_overlays=2", "logger.tensorboard=false", "resume=last"]
    assert main(["train", *common, *ignored]) == 0
    assert not (run_dir / "resume_changes.yaml").exists()
    saved = config.load(run_dir / "config.yaml")
    assert saved.trainer.log_every_n_steps == 1 and saved.resume == "last"
    assert (run_dir / "results.json").read_text() == results


def test_resume_changes_allow_continues_and_records_old_and_new(tiny_synthloc, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CAMEXP_RUN_DIR", raising=False)
    common, run_dir = _finished_tiny_run(tiny_synthloc, tmp_path)
    capsys.readouterr()
    changed = ["trainer.max_epochs=2", "optim.lr=0.5", "resume=last", "resume_changes=allow"]
    assert main(["train", *common, *changed]) == 0
    assert "resuming with changed settings (resume_changes=allow): optim.lr: 0.1 -> 0.5" in capsys.readouterr().err
    record = yaml.safe_load((run_dir / "resume_changes.yaml").read_text())
    assert len(record) == 1 and record[0]["checkpoint"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert record[0]["changes"] == {"optim.lr": {"old": 0.1, "new": 0.5}, "trainer.max_epochs": {"old": 1, "new": 2}}
    saved = config.load(run_dir / "config.yaml")
    assert saved.optim.lr == 0.5 and saved.trainer.max_epochs == 2 and saved.resume_changes == "allow"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1  # trained on


def test_an_allowed_change_the_checkpoint_does_not_fit_leaves_the_run_as_it_was(
    tiny_synthloc, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("CAMEXP_RUN_DIR", raising=False)
    common, run_dir = _finished_tiny_run(tiny_synthloc, tmp_path)
    config_yaml = (run_dir / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", *common, "model.width=16", "resume=last", "resume_changes=allow"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the network" in err and "Traceback" not in err and "size mismatch" in err
    assert (run_dir / "config.yaml").read_text() == config_yaml
    assert not (run_dir / "resume_changes.yaml").exists()


class _Payload:
    """A pickled object: what a booby-trapped checkpoint would carry."""

    def __reduce__(self):
        return (print, ("payload ran",))


def test_resume_reads_the_checkpoint_with_weights_only_and_refuses_a_payload_in_one_line(
    finished_tiny_run, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("CAMEXP_RUN_DIR", raising=False)
    common, run_dir = finished_tiny_run
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)  # our own file: trusted here
    state["callbacks"]["payload"] = _Payload()
    bad = tmp_path / "bad.ckpt"
    torch.save(state, bad)
    before = _files(run_dir)
    capsys.readouterr()
    assert main(["train", *common, f"resume={bad}"]) == 2
    captured = capsys.readouterr()
    assert "payload ran" not in captured.out + captured.err  # never unpickled, whatever torch's default
    assert "weights_only=True" in captured.err and str(bad) in captured.err
    assert "Traceback" not in captured.err
    assert _files(run_dir) == before

# -- after a kill and a resume: the two newest step checkpoints, the damaged file set aside, one event stream ----

# SIGNAL_WAITER, and before it pauses it flushes the TensorBoard writer, as its 120-second timer does in a
# longer run: what was logged after the newest checkpoint is on disk when the kill comes.
FLUSHING_WAITER = SIGNAL_WAITER.replace(
    '        print("PAUSED", flush=True)',
    '        trainer.logger.experiment.flush()\n        print("PAUSED", flush=True)',
)


def _logged(run_dir: Path) -> Counter:
    """(tag, step) of every summary value in the run's event files, all files together, as TensorBoard reads
    them; per-step scalars with their values."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader  # keeps simple_value

    found: Counter = Counter()
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                number = value.simple_value if value.tag.startswith(("train/lr", "train/loss_step")) else None
                found[(value.tag, event.step, number)] += 1
    return found


@pytest.mark.slow
def test_sigkill_then_resume_keeps_two_step_checkpoints_sets_the_damaged_aside_and_logs_each_step_once(
    tiny_synthloc, uninterrupted_run, tmp_path
):
    common = _preemption_args(tiny_synthloc, tmp_path / "logs")
    waiter = tmp_path / "flush_then_wait.py"
    assert "flush()" in FLUSHING_WAITER
    waiter.write_text(FLUSHING_WAITER)
    # killed after step 5: the newest checkpoint is step 4's, and step 4's learning rate and loss are logged
    status, log_path = _train_until_paused_then_signal(waiter, common, tmp_path, signal.SIGKILL, pause_at=5)
    assert status == -signal.SIGKILL, log_path.read_text()[-3000:]
    run_dir = tmp_path / "logs" / "preempted" / "version_0"
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step*.ckpt")) == ["step0000002.ckpt", "step0000004.ckpt"]
    damaged = ckpts / "zz_damaged.ckpt"  # the newest file, cut short
    damaged.write_bytes((ckpts / "step0000004.ckpt").read_bytes()[:5000])

    resumed = _camexp(["train", *common, "name=preempted", "resume=auto"], cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    aside = ckpts / "damaged" / "zz_damaged.ckpt"
    assert f"Skipping damaged checkpoint {damaged}" in resumed.stderr and f"Moved it to {aside}" in resumed.stderr
    assert not damaged.exists() and aside.is_file()
    assert f"Restoring states from the checkpoint path at {ckpts / 'step0000004.ckpt'}" in resumed.stderr

    # Lightning keeps the file a run resumed from (step 4); the rule is the uninterrupted run's two newest
    expected = sorted(p.name for p in (uninterrupted_run / "checkpoints").glob("step*.ckpt"))
    assert expected == ["step0000006.ckpt", "step0000008.ckpt"]
    assert sorted(p.name for p in ckpts.glob("step*.ckpt")) == expected

    # TensorBoard: the killed run's files and the resumed run's hold every step once, as the uninterrupted run
    logged, reference = _logged(run_dir), _logged(uninterrupted_run)
    assert ("train/lr/pg1", 4) in {(tag, step) for tag, step, _ in logged}
    assert logged == reference, (logged - reference, reference - logged)
    assert _val_metrics(run_dir) == _val_metrics(uninterrupted_run)
