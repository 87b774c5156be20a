"""`camexp reproduce`: the CPU-sized AlexNet family, the comparison verdicts, and a tiny reproduction end to end
(real `camexp train` processes on both embedded benchmarks, reuse of finished runs, refusal of stale ones)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from camexp.errors import CamexpError
from camexp.models import build_network
from camexp.reproduce import (
    COMPARISONS,
    comparison_rows,
    mean_std,
    plan_runs,
    reproduce,
    verdict,
)
from tests.conftest import REPO, TINY_SYNTH


@pytest.mark.parametrize("size, cam", [(128, 7), (112, 6), (224, 13)])
def test_small_alexnet_gap_keeps_alexnets_cam_geometry(size, cam):
    net = build_network("alexnet_small_gap", num_classes=5, width=16)
    features = net.forward_features(torch.zeros(2, 3, size, size))
    assert features.shape == (2, 256, cam, cam)  # 16 x width units in the added conv, AlexNet's stride
    assert net.forward_head(features).shape == (2, 5) and net.cam_capable


def test_small_alexnet_fc_head_and_refusals():
    net = build_network("alexnet_small", num_classes=5, width=16, dropout=0.5)
    assert not net.cam_capable and net(torch.zeros(2, 3, 128, 128)).shape == (2, 5)
    assert net.fc[1].out_features == 1024  # fc6: 64 x width units (AlexNet: 4096 at width 64)
    with pytest.raises(CamexpError, match="no pretrained weights"):
        build_network("alexnet_small_gap", num_classes=5, pretrained=True)
    with pytest.raises(CamexpError, match="model.width=2 is out of range"):
        build_network("alexnet_small_gap", num_classes=5, width=2)
    with pytest.raises(CamexpError, match="alexnet_small_gap"):  # GMP is the GAP network's pool, not the FC's
        build_network("alexnet_small", num_classes=5, pool="max")


def test_verdicts_pair_seeds_and_say_when_the_order_is_reversed():
    assert verdict(np.array([60.0, 62, 61]), np.array([50.0, 55, 60]), "a>b") == "yes, every seed"
    assert verdict(np.array([60.0, 50, 61]), np.array([50.0, 55, 60]), "a>b") == "on average only"
    assert verdict(np.array([50.0, 50]), np.array([55.0, 51]), "a>b") == "no (reversed)"
    assert verdict(np.array([50.0, 52]), np.array([52.0, 50]), "a>b") == "no (tied)"
    assert verdict(np.array([90.0, 92]), np.array([91.0, 93.5]), "close") == "yes"
    assert verdict(np.array([90.0, 92]), np.array([95.0, 93.5]), "close") == "no"
    assert verdict(np.array([np.nan]), np.array([1.0]), "a>b") == "no numbers"
    assert mean_std(np.array([1.0, 2.0, 3.0])) == (2.0, 1.0)  # sample std (ddof=1)
    assert mean_std(np.array([4.0, np.nan])) == (4.0, 0.0)


def test_comparisons_read_the_right_metrics_and_skip_missing_arms():
    results = {
        ("gap", 0): {"val/acc_top1": 0.90, "val/loc_top1": 0.50, "val/loc_top5": 0.55, "val/loc_top5_heuristic": 0.7},
        ("gmp", 0): {"val/acc_top1": 0.91, "val/loc_top1": 0.40},
    }
    rows = {(r[0], r[1]): r for r in comparison_rows(results, [0])}
    assert set(rows) == {
        ("GAP vs GMP", "classification top-1"),
        ("GAP vs GMP", "localization top-1"),
        ("Table 3 heuristic vs plain top-5 (GAP)", "localization top-5"),
    }  # no FC run, no wsoleval metrics: those comparisons are left out, not printed as dashes
    assert rows[("GAP vs GMP", "localization top-1")][2:5] == ["GAP 50.0 ± 0.0", "GMP 40.0 ± 0.0", "10.0 ± 0.0"]
    assert rows[("GAP vs GMP", "localization top-1")][5] == "GoogLeNet-GAP 43.6 vs GoogLeNet-GMP 42.2"
    assert rows[("Table 3 heuristic vs plain top-5 (GAP)", "localization top-5")][-1] == "yes, every seed"
    assert {c.title for c in COMPARISONS} >= {"GAP vs GMP", "CAM (GAP) vs Backprop (FC)"}


def test_changed_keys_lists_nested_keys():
    from camexp.config import changed_keys

    a = {"model": {"pool": "avg", "width": 16}, "seed": 0}
    b = {"model": {"pool": "max", "width": 16}, "seed": 0, "extra": 1}
    assert changed_keys(a, b) == ["extra", "model.pool"]


def test_a_bad_override_fails_before_any_run(tmp_path):
    with pytest.raises(CamexpError, match="optim.lrr"):
        plan_runs([REPO / "experiments" / "synthloc_gap.yaml"], [0], ["gap"], tmp_path, ["optim.lrr=0.1"])
    assert not (tmp_path / "runs").exists()


def test_a_finished_run_is_found_whether_its_config_recorded_data_root_absolute_or_as_written(tmp_path, monkeypatch):
    """config.yaml records data.root absolute (config.save); the plan leaves it unset (data/<name>), and runs saved
    before record it as written. All three are the same setting: the finished run is reused, not refused."""
    from omegaconf import OmegaConf

    from camexp import config
    from camexp.reproduce import finished_run

    monkeypatch.chdir(tmp_path)
    (run,) = plan_runs([REPO / "experiments" / "synthloc_gap.yaml"], [0], ["gap"], tmp_path)
    run_dir = tmp_path / "runs" / run.name / "version_0"
    cfg = config.load(list(run.files), run.overrides)
    config.save(cfg, run_dir / "config.yaml")
    (run_dir / "results.json").write_text("{}")
    assert config.load(run_dir / "config.yaml").data.root == str(tmp_path / "data" / "synthloc")
    assert finished_run(run, tmp_path) == run_dir
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))  # as older camexp saved it
    assert finished_run(run, tmp_path) == run_dir
    config.save(config.load(list(run.files), [*run.overrides, "data.root=elsewhere"]), run_dir / "config.yaml")
    with pytest.raises(CamexpError, match="data.root"):
        finished_run(run, tmp_path)


def _tiny_benchmarks(tmp_path: Path, synth_root: Path) -> list[Path]:
    """Both embedded benchmarks, shrunk: their own YAMLs with a tiny data set and a short epoch."""
    common = {"trainer": {"max_epochs": 1}, "data": {"batch_size": 16, "num_workers": 0, "input_size": 64,
              "train_resize": 72}, "optim": {"warmup_steps": 0}, "eval": {"num_overlays": 2}}  # fmt: skip
    synth = {**common, "data": {**common["data"], "root": str(synth_root), "synth": TINY_SYNTH}}
    digits_data = {"root": str(tmp_path / "digits"), "digits": {"n_train": 32, "n_val": 16, "size": 64}}
    digits = {**common, "data": {**common["data"], **digits_data}}
    paths = []
    for name, base, extra in (("synth", "synthloc_gap", synth), ("digits", "cluttered_mnist_gap", digits)):
        merged = yaml.safe_load((REPO / "experiments" / f"{base}.yaml").read_text())
        for key, value in extra.items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(merged))
    return paths


def test_tiny_reproduction_end_to_end(tiny_synthloc, tmp_path, capsys):
    benchmarks = _tiny_benchmarks(tmp_path, tiny_synthloc)
    out = tmp_path / "reproduce"
    report = reproduce(out, benchmarks, seeds=[0, 1], overrides=["model.width=8"])
    text = report.read_text()
    numbers = json.loads((out / "results.json").read_text())
    assert len(numbers) == 2 * 3 * 2  # benchmarks x networks x seeds, each a real run directory
    for name, run in numbers.items():
        recorded = yaml.safe_load((Path(run["run_dir"]) / "config.yaml").read_text())
        arm, seed = name.split("_")[-2], int(name.rsplit("seed", 1)[1])
        assert recorded["seed"] == seed and recorded["model"]["width"] == 8  # the user's override won
        assert recorded["model"]["name"] == ("alexnet_small" if arm == "fc" else "alexnet_small_gap")
        assert recorded["model"]["pool"] == ("max" if arm == "gmp" else "avg")
        assert recorded["trainer"]["check_val_every_n_epoch"] == 1 and "val/maxboxacc_v2" in run
    for benchmark in ("synthloc", "cluttered_mnist"):
        assert f"## {benchmark}" in text
    assert text.count("| GAP vs GMP | localization top-1 |") == 2
    assert text.count("| CAM (GAP) vs Backprop (FC) | PxAP |") == 2
    assert (out / "reproduce.png").stat().st_size > 10_000
    assert len(list((out / "overlays").glob("*_seed0.png"))) == 6
    # The values in the report are the runs' own numbers.
    gap = [100 * numbers[f"synthloc_gap_seed{s}"]["val/acc_top1"] for s in (0, 1)]
    assert f"GAP {np.mean(gap):.1f} ± {np.std(gap, ddof=1):.1f}" in text

    # A second call reuses every finished run (no training) and writes the same report.
    capsys.readouterr()
    reproduce(out, benchmarks, seeds=[0, 1], overrides=["model.width=8"])
    assert capsys.readouterr().err.count("reused") == 12
    # Other settings over the same runs are refused before any work, naming the changed key.
    with pytest.raises(CamexpError, match="optim.lr"):
        reproduce(out, benchmarks, seeds=[0, 1], overrides=["model.width=8", "optim.lr=0.5"])
