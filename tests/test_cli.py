"""The command line around the commands: `camexp report` on a split the run lacks, and output piped into a reader
that stops early (`camexp report RUN | head -1`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from camexp.cli import main
from tests.conftest import REPO

VAL_RESULTS = {"val/acc_top1": 0.5, "val/loc_gt_known": 0.25, "val/num_images": 21, "wall_time_s": 3.0}


def finished_run(folder, results=VAL_RESULTS):
    """A run directory as `camexp train` leaves it, as far as `camexp report` reads it."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "config.yaml").write_text("model:\n  name: synthnet\n  pool: avg\n")
    return folder


def test_report_of_a_split_the_run_lacks_names_the_splits_it_has(tmp_path, capsys):
    """It used to print an empty table with status 0."""
    run = finished_run(tmp_path / "run")
    assert main(["report", str(run), "--split", "test"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"camexp: error: {run / 'results.json'} has no test metrics; it has val.")
    assert "Pass --split val" in captured.err
    assert f"camexp evaluate {run / 'checkpoints' / 'last.ckpt'} --split test" in captured.err

    (run / "eval_test").mkdir()  # where `camexp evaluate --split test` writes them
    (run / "eval_test" / "results.json").write_text(json.dumps({"test/acc_top1": 0.5}))
    assert main(["report", str(run), "--split", "test"]) == 2
    assert f"camexp report {run / 'eval_test'} --split test" in capsys.readouterr().err
    assert main(["report", str(run / "eval_test"), "--split", "test"]) == 0
    assert "| classification top-1 | 50.00 |" in capsys.readouterr().out


@pytest.mark.parametrize("words", [["report", "{run}"], ["compare", "{run}", "{run}"]])
def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path, words):
    """`camexp report RUN | head -1` used to end in a BrokenPipeError traceback. The pipe's reading end is closed
    before the command writes, as `head` closes it after its line."""
    run = finished_run(tmp_path / "run")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "camexp", *(w.format(run=run) for w in words)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 141  # 128 + SIGPIPE, as for a tool the signal ends


@pytest.mark.parametrize(
    "words, option",
    [
        (["evaluate-maps", "--metadata", "{tmp}/meta", "--maps", "{tmp}/maps", "--json", "{blocker}/n.json"], "--json"),
        (["photos", "--out", "{blocker}"], "--out"),
        (["reproduce", "optim.lrr=0.1", "--out", "{blocker}/r", "--seeds", "0", "--networks", "gap"], "--out"),
        (["train", str(REPO / "experiments" / "synthloc_gap.yaml"), "data.name=cub", "data.root={tmp}/no_data",
          "--run-dir-file", "{blocker}/run.txt"], "--run-dir-file"),  # fmt: skip
    ],
)
def test_an_output_under_a_file_is_refused_before_the_work(tmp_path, capsys, words, option):
    """Each used to find out at the end (a traceback after the scoring, the photos, the trainings): now the
    option and the path are named before anything else runs (here: before the missing data is even noticed)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("taken\n")
    assert main([w.format(tmp=tmp_path, blocker=blocker) for w in words]) == 2
    err = capsys.readouterr().err
    assert err.startswith("camexp: error: ") and option in err and f"{blocker} is a" in err, err
    assert not (tmp_path / "no_data").exists()


INTERNAL_MAKE_TARGETS = {"check-dataset", "fg-check-data", "ablate-gmp-embedded", "ablate-gmp-googlenet"}


def test_make_help_lists_every_target_a_user_runs():
    """Every target in Makefile and mk/*.mk is in `make help` (with its description) unless it is a named helper."""
    import re
    import shutil
    import subprocess

    from tests.conftest import REPO

    assert shutil.which("make"), "make is needed to run this project's entry points"
    texts = [(REPO / "Makefile").read_text(), *(p.read_text() for p in sorted((REPO / "mk").glob("*.mk")))]
    targets = {m for text in texts for m in re.findall(r"^([a-z0-9-]+):(?!=)", text, flags=re.M)}
    shown = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    listed = set(re.findall(r"^  make ([a-z0-9-]+)\s+\S", shown, flags=re.M))
    assert targets - INTERNAL_MAKE_TARGETS == listed
    assert {"train", "test", "reproduce", "probe", "finegrained", "units"} <= listed
