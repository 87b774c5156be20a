"""What a run shows its user: stdout holds the results table and where the files are, stderr the progress bar
and nothing of the libraries' chatter; the summary says what its time covers and names the head; the docs
name the TensorBoard tags and curve thresholds a run really writes; every flag of every command has a help."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from camexp.cli import build_parser, main
from camexp.metrics import DEFAULT_CURVE_THRESHOLDS
from tests.conftest import REPO, tiny_overrides

DEFAULT = REPO / "experiments" / "synthloc_gap.yaml"

# Lines the libraries print unless camexp silences them (issue 13), as they appear in Lightning 2.6's output.
CHATTER = (
    "GPU available",
    "TPU available",
    "Tip:",
    "litlogger",
    "LeafSpec",
    "deprecated",
    "smaller than the logging interval",
    "of the batches",
    "does not have many workers",
    "Trainable params",
    "| Name",
    "Seed set to",
    "Loading `train_dataloader`",
    "`Trainer.fit` stopped",
    "Initializing distributed",
    "distributed_backend",
    "Warning",
)


def _camexp(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    for name in ("CAMEXP_RUN_DIR", "CAMEXP_RESUME_CKPT", "CAMEXP_VERBOSE"):
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "camexp", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600
    )


def _chatter(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(marker in line for marker in CHATTER)]


@pytest.fixture(scope="module")
def quiet_run(tiny_synthloc, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`python -m camexp train` as a user runs it: progress bar on, a relative logger.save_dir, every step
    logged (the learning-rate tags), stdout and stderr captured apart."""
    cwd = tmp_path_factory.mktemp("quiet")
    extra = {"trainer.enable_progress_bar": "true", "trainer.log_every_n_steps": 1}
    done = _camexp(["train", str(DEFAULT), *tiny_overrides(tiny_synthloc, Path("logs"), **extra)], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, cwd


@pytest.mark.slow
def test_train_prints_the_results_and_paths_on_stdout_and_only_progress_on_stderr(quiet_run):
    done, _ = quiet_run
    assert "\r" not in done.stdout  # the progress bar's frames are on stderr
    assert "| metric |" in done.stdout and "| localization GT-known |" in done.stdout
    assert "run directory : logs/synthloc_gap/version_0" in done.stdout
    assert "TensorBoard   : tensorboard --logdir logs/synthloc_gap" in done.stdout
    assert _chatter(done.stdout) == []
    assert _chatter(done.stderr) == [], done.stderr[-3000:]
    assert "Epoch 0" in done.stderr and "v_num" not in done.stderr  # the progress bar, where it belongs
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_summary_header_says_what_the_time_covers_and_the_checkpoint_sits_with_the_other_paths(quiet_run):
    done, _ = quiet_run
    assert re.search(
        r"^== synthloc_gap: synthnet \(GAP\) on synthloc: trained and validated in \d+ s; validation: 21 images ==$",
        done.stdout,
        re.M,
    ), done.stdout
    # Lightning keeps the checkpoint's resolved absolute path; the summary prints it like the run directory.
    assert "checkpoint    : logs/synthloc_gap/version_0/checkpoints/last.ckpt\n" in done.stdout


@pytest.mark.slow
def test_validate_prints_its_metrics_without_the_libraries_chatter(quiet_run):
    _, cwd = quiet_run
    ckpt = "logs/synthloc_gap/version_0/checkpoints/last.ckpt"
    done = _camexp(["validate", ckpt, "trainer.enable_progress_bar=true"], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stdout and "val/acc_top1" in done.stdout
    assert _chatter(done.stdout) == [] and _chatter(done.stderr) == [], done.stderr[-3000:]


@pytest.mark.slow
def test_verbose_shows_the_libraries_messages_again(tiny_synthloc, tmp_path):
    overrides = tiny_overrides(tiny_synthloc, tmp_path / "logs", **{"trainer.limit_train_batches": 1})
    done = _camexp(["train", "--verbose", str(DEFAULT), *overrides], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Trainable params" in done.stderr  # the model summary
    assert "\r" not in done.stdout


# -- the docs name what a run writes -------------------------------------------------------------------------


def _documented(pattern: str, doc: str = "docs/wandb.md") -> set[str]:
    return set(re.findall(pattern, (REPO / doc).read_text()))


@pytest.mark.slow
def test_documented_learning_rate_tags_are_the_ones_tensorboard_holds(quiet_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, cwd = quiet_run
    events = EventAccumulator(str(cwd / "logs" / "synthloc_gap" / "version_0"), size_guidance={"scalars": 0})
    logged = {tag for tag in events.Reload().Tags()["scalars"] if tag.startswith("train/")}
    assert {"train/lr/pg1", "train/lr/pg2"} <= logged  # synthnet: its layers + its new classifier
    documented = _documented(r"`(train/[\w/]+)`")
    assert logged <= documented, logged - documented
    assert not any(tag.startswith("lr-") for tag in documented | logged)  # Lightning's default names: not ours


def test_documented_threshold_curve_range_is_the_code_s():
    lines = (REPO / "docs" / "wandb.md").read_text().splitlines()
    row = next(line for line in lines if "`val/loc_vs_threshold`" in line)
    low, high = (float(v) for v in re.search(r"(\d\.\d+) to (\d\.\d+)", row).groups())
    assert (low, high) == (min(DEFAULT_CURVE_THRESHOLDS), max(DEFAULT_CURVE_THRESHOLDS))
    for doc in ("README.md", *(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))):
        text = (REPO / doc).read_text()
        assert "0.05 to 0.95" not in text and "0.05-0.95" not in text, doc


# -- an FC network under eval.method=cam is refused; the header names the head ------------------------------


def test_fc_network_under_cam_is_refused_before_training_with_the_fix(tiny_synthloc, tmp_path, capsys):
    overrides = tiny_overrides(tiny_synthloc, tmp_path / "logs", **{"model.name": "alexnet_small"})
    assert main(["train", str(DEFAULT), *overrides]) == 2
    message = capsys.readouterr().err
    assert "model.name=alexnet_small" in message and "eval.method=backprop" in message
    assert "alexnet_small_gap" in message  # the CAM-capable sibling
    assert not (tmp_path / "logs").exists()  # refused before the Trainer made a run directory


@pytest.mark.slow
def test_fc_network_trains_with_backprop_is_named_fc_and_validate_refuses_cam(tiny_synthloc, tmp_path, capsys):
    extra = {"model.name": "alexnet_small", "eval.method": "backprop", "trainer.limit_train_batches": 1}
    assert main(["train", str(DEFAULT), *tiny_overrides(tiny_synthloc, tmp_path / "logs", **extra)]) == 0
    printed = capsys.readouterr().out
    assert "synthloc_gap: alexnet_small (FC) on synthloc" in printed
    ckpt = tmp_path / "logs" / "synthloc_gap" / "version_0" / "checkpoints" / "last.ckpt"
    assert main(["validate", str(ckpt), "eval.method=cam"]) == 2
    message = capsys.readouterr().err
    assert "eval.method=backprop" in message and f"camexp validate {ckpt}" in message


def test_head_name_comes_from_the_built_network(tiny_synthloc, tmp_path):
    from camexp import config
    from camexp.models.camnet import head_name
    from camexp.wiring import build_model

    def head(**overrides):
        cfg = config.load([], tiny_overrides(tiny_synthloc, tmp_path, **overrides))
        return head_name(build_model(cfg, 4, ["a", "b", "c", "d"]))

    assert head() == "GAP"
    assert head(**{"model.pool": "max"}) == "GMP"
    assert head(**{"model.name": "alexnet_small"}) == "FC"


# -- compare and the evaluation report show the paper only where it has a number ------------------------------


def _finished_run(root: Path, name: str, network: str) -> Path:
    run = root / name
    run.mkdir()
    (run / "results.json").write_text('{"val/acc_top1": 0.75, "val/loc_top1": 0.25}')
    (run / "config.yaml").write_text(f"model:\n  name: {network}\n  pool: avg\n")
    return run


def test_compare_prints_no_paper_column_of_dashes_only(tmp_path):
    from camexp.reports import compare_runs

    runs = [_finished_run(tmp_path, "a", "synthnet"), _finished_run(tmp_path, "b", "googlenet_gap")]
    lines = compare_runs(runs, ["SynthNet", "GoogLeNet"]).splitlines()
    assert "paper SynthNet" not in lines[0] and "paper GoogLeNet-GAP err % (ILSVRC)" in lines[0]
    assert lines[2] == "| classification top-1 | 75.00 | 25.00 | 75.00 | 25.00 | 35.00 |"
    for line in lines[2:]:
        assert len(line.split("|")) == len(lines[0].split("|"))


@pytest.mark.parametrize("network, beside", [("synthnet", False), ("googlenet_gap", True)])
def test_report_says_beside_the_paper_only_with_a_paper_column(tmp_path, network, beside):
    from camexp.reports import write_report
    from camexp.wsol.accumulator import WSOLAccumulator, wsoleval_scoremaps

    scorer = WSOLAccumulator(0.1)
    scorer.update(wsoleval_scoremaps(np.random.default_rng(0).random((1, 8, 8))), [np.array([[10, 10, 100, 100]])])
    metrics = {"val/acc_top1": 0.75, "val/loc_top1": 0.25}
    text = write_report(tmp_path, "t", metrics, "val", network, "avg", scorer.compute()).read_text()
    assert ("beside the paper" in text) == beside and ("The paper's column" in text) == beside
    assert ("paper GoogLeNet-GAP error %" in text) == beside


# -- --help: every flag of every command says what it does -------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser):
    yield "camexp", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"camexp {name}", sub


def test_every_argument_of_every_command_has_a_help_text():
    missing = [
        f"{command} {action.option_strings or action.dest}"
        for command, parser in _subparsers(build_parser())
        for action in parser._actions
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert missing == []
