"""Dashboards: a real short run with the real wandb library offline and TensorBoard, read back from disk."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from camexp.metrics import DEFAULT_CURVE_THRESHOLDS
from tests.conftest import REPO, TINY_SYNTH, tiny_overrides


def test_wandb_is_not_imported_unless_enabled(tmp_path):
    code = (
        "import sys; from camexp import config; from camexp.train import train; "
        "from camexp.wiring import wandb_settings; from camexp.evaluate import validate; "
        "from camexp.loggers import build_loggers; "
        "import camexp.callbacks.dashboards, camexp.callbacks.cam_metrics, camexp.callbacks.score_maps; "
        f"cfg = config.load(None, ['logger.save_dir={tmp_path}']); "
        f"loggers = build_loggers(__import__('pathlib').Path('{tmp_path}/run'), True, wandb_settings(cfg)); "
        "assert [type(lg).__name__ for lg in loggers] == ['TensorBoardLogger'], loggers; "
        "assert 'wandb' not in sys.modules, 'wandb imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def read_wandb_records(path: Path) -> list:
    """Records of an offline run file (run-*.wandb): W&B's LevelDB-style log of protobuf `Record`s.

    wandb >= 0.2x writes it from its Go core and no longer ships a Python reader; the format is 7-byte
    file header, then 32 KiB blocks of chunks (crc32 of type+data, length, type: full/first/middle/last).
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    block, header = 32768, 7
    pos, records, pending = 7, [], b""
    while pos + header <= len(data):
        left = block - pos % block
        if left < header:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + header : pos + header + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == crc, f"bad chunk at {pos}"
        pos += header + length
        if kind in (1, 2):
            pending = chunk
        else:
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.slow
def test_wandb_offline_and_tensorboard_get_metrics_overlays_tables_and_curve(tiny_synthloc, tmp_path):
    save_dir = tmp_path / "logs"
    overrides = tiny_overrides(
        tiny_synthloc,
        save_dir,
        **{
            "trainer.max_epochs": 2,
            "trainer.log_every_n_steps": 1,
            "eval.num_overlays": 4,
            "logger.wandb.enabled": "true",
            "logger.wandb.project": "camexp-test",
            "logger.wandb.tags": "[tiny,offline]",
        },
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_dir")}
    env.pop("CAMEXP_RUN_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "camexp", "train", str(REPO / "experiments" / "synthloc_gap.yaml"), *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    run_dir = save_dir / "synthloc_gap" / "version_0"
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list(run_dir.rglob("*"))  # under the run dir, not the repo or WANDB_DIR
    assert f"W&B run       : {offline[0]} (offline; upload with: wandb sync {offline[0]})" in proc.stdout

    # -- what the run file holds: the resolved config and every metric under stable keys
    records = read_wandb_records(next(offline[0].glob("run-*.wandb")))
    config = {}
    history = []
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update if item.key})
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
        elif kind == "run":
            assert record.run.project == "camexp-test" and list(record.run.tags) == ["tiny", "offline"]
    assert config["model"]["pool"] == "avg" and config["data"]["synth"]["n_val"] == TINY_SYNTH["n_val"]
    keys = set().union(*history)
    expected = {"train/loss_step", "train/loss_epoch", "val/loss", "val/acc_top1", "val/acc_top5",
                "val/loc_top1", "val/loc_gt_known", "val/num_images", "trainer/global_step"}  # fmt: skip
    assert expected <= keys, expected - keys
    assert any(key.startswith("train/lr") for key in keys), keys  # train/lr or train/lr/pg1, /pg2 (10x group)
    assert {"val/cam_overlays/_type", "val/per_class/_type", "val/loc_vs_threshold_table/_type"} <= keys
    validations = [h for h in history if "val/per_class/path" in h]
    assert len(validations) == 2  # one table per validation pass
    final = next(h for h in reversed(history) if "val/loc_gt_known" in h)

    # -- media files: overlays with box layers carrying class names, the per-class table, the curve
    files = offline[0] / "files"
    overlays = sorted(files.glob("media/images/val/cam_overlays_*.png"))
    assert len(overlays) == 2 * 4
    boxes = json.loads(next(files.glob("media/metadata/boxes2D/val/cam_overlays_*.boxes2D.json")).read_text())
    class_names = list(boxes["class_labels"].values())
    assert len(class_names) == TINY_SYNTH["num_classes"] and all("_" in name for name in class_names)
    box = boxes["box_data"][0]
    assert box["domain"] == "pixel" and set(box["position"]) == {"minX", "minY", "maxX", "maxY"}
    all_boxes = [json.loads(h["val/cam_overlays/all_boxes"]) for h in history if "val/cam_overlays/all_boxes" in h]
    assert {"predictions", "ground_truth"} <= set(all_boxes[-1][0])  # both layers on every overlay

    table_path = files / json.loads(validations[-1]["val/per_class/path"])
    table = json.loads(table_path.read_text())
    assert table["columns"] == ["class", "images", "acc_top1", "loc_top1", "loc_gt_known"]
    assert [row[0] for row in table["data"]] == class_names
    assert sum(row[1] for row in table["data"]) == TINY_SYNTH["n_val"] == json.loads(final["val/num_images"])
    curve = json.loads(sorted(files.glob("media/table/val/loc_vs_threshold_table_*.table.json"))[-1].read_text())
    expected_thresholds = sorted(set(DEFAULT_CURVE_THRESHOLDS) | {0.2})  # the grid plus eval.cam_threshold
    assert curve["columns"] == ["cam_threshold", "loc_gt_known"]
    assert [row[0] for row in curve["data"]] == pytest.approx(expected_thresholds)
    at_paper_threshold = dict(map(tuple, curve["data"]))[0.2]
    assert at_paper_threshold == pytest.approx(json.loads(final["val/loc_gt_known"]), abs=1e-6)

    # -- TensorBoard (default logger): the same scalars and overlays, plus the curve figure and the table
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0}).Reload()
    tags = events.Tags()
    assert expected - {"trainer/global_step"} <= set(tags["scalars"])
    assert {"val/cam_overlays", "val/loc_vs_threshold"} <= set(tags["images"])
    assert len(events.Images("val/loc_vs_threshold")) == 2
    overlay = events.Images("val/cam_overlays")[-1]  # the saved PNG itself, encoded once
    assert overlay.encoded_image_string == (run_dir / "overlays" / "val_epoch001.png").read_bytes()
    assert "val/per_class/text_summary" in tags["tensors"]
    assert (run_dir / "wandb_run_id").read_text().strip() in offline[0].name


@pytest.mark.slow
def test_environment_values_reach_config_yaml_and_wandb_as_written(tiny_synthloc, tmp_path, monkeypatch, capsys):
    # The data root stands for a secret: it comes from a real environment variable and must not be written out.
    secret = str(tiny_synthloc)
    save_dir = tmp_path / "logs"
    overrides = tiny_overrides(
        tiny_synthloc, save_dir, **{"data.root": "${oc.env:CAMEXP_TEST_ROOT}", "logger.wandb.enabled": "true"}
    )
    experiment = str(REPO / "experiments" / "synthloc_gap.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "CAMEXP_TEST_ROOT": secret}
    env.pop("CAMEXP_RUN_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "camexp", "train", experiment, *overrides], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    run_dir = save_dir / "synthloc_gap" / "version_0"

    saved = (run_dir / "config.yaml").read_text()
    assert "root: ${oc.env:CAMEXP_TEST_ROOT}" in saved and secret not in saved
    offline = next((run_dir / "wandb").glob("offline-run-*"))
    wandb_config = {}
    for record in read_wandb_records(next(offline.glob("run-*.wandb"))):
        if record.WhichOneof("record_type") == "config":
            wandb_config.update({item.key: json.loads(item.value_json) for item in record.config.update if item.key})
    assert wandb_config["data"]["root"] == "${oc.env:CAMEXP_TEST_ROOT}"
    assert wandb_config["data"]["synth"]["n_val"] == TINY_SYNTH["n_val"]  # the rest is there, resolved
    leaked = [p for p in offline.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked, leaked

    # the run's config.yaml still loads (validate reads it), and a resume does not count the variable as a change
    from camexp import config
    from camexp.cli import main
    from camexp.runs.resume import check_resume_changes

    monkeypatch.setenv("CAMEXP_TEST_ROOT", secret)
    monkeypatch.delenv("CAMEXP_RUN_DIR", raising=False)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert main(["validate", str(ckpt), "data.num_workers=0", "trainer.enable_progress_bar=false"]) == 0
    assert "val/acc_top1" in capsys.readouterr().out
    resumed = config.load(experiment, [*overrides, "resume=last"])
    assert check_resume_changes(resumed, run_dir, str(ckpt)) == {}
