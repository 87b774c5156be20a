"""A short real Trainer run on a tiny SynthLoc writes metrics, an overlay image and the config."""

import json

import cv2
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from camexp import config
from camexp.models import CAMNet
from camexp.train import train
from tests.conftest import REPO, tiny_overrides

pytestmark = pytest.mark.slow
DEFAULT = REPO / "experiments" / "synthloc_gap.yaml"
METRICS = ("acc_top1", "acc_top5", "loc_top1", "loc_top5", "loc_gt_known")


def test_short_run_writes_metrics_overlays_and_config(tiny_synthloc, tmp_path):
    cfg = config.load(DEFAULT, tiny_overrides(tiny_synthloc, tmp_path / "logs"))
    results = train(cfg)
    run_dir = tmp_path / "logs" / "synthloc_gap" / "version_0"

    saved = json.loads((run_dir / "results.json").read_text())
    for name in METRICS:
        assert 0.0 <= saved[f"val/{name}"] <= 1.0
    assert saved["val/num_images"] == 21  # every validation image counted once
    assert saved["val/loc_top1"] <= saved["val/loc_gt_known"]  # top-1 also needs the class right
    assert saved["val/loc_top1"] <= saved["val/acc_top1"]
    assert results["val/acc_top1"] == saved["val/acc_top1"]

    overlay = cv2.imread(str(run_dir / "overlays" / "val_epoch000.png"))
    assert overlay is not None and overlay.shape[0] > 64 and overlay.shape[1] >= 4 * 64

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for name in METRICS:
        assert f"val/{name}" in tags["scalars"]
    assert "val/cam_overlays" in tags["images"]

    assert config.load(run_dir / "config.yaml").data.root == str(tiny_synthloc)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "localization top-1" in (run_dir / "report.md").read_text()


def test_validation_uses_the_step_features_no_second_forward(tiny_synthloc, tmp_path, monkeypatch):
    calls = {"features": 0, "batches": 0}
    original = CAMNet.validation_step

    def counting_step(self, batch, batch_idx):
        calls["batches"] += 1
        return original(self, batch, batch_idx)

    monkeypatch.setattr(CAMNet, "validation_step", counting_step)
    from camexp.models.heads import GlobalPoolNet

    forward_features = GlobalPoolNet.forward_features

    def counting_features(self, x):
        calls["features"] += 1
        return forward_features(self, x)

    monkeypatch.setattr(GlobalPoolNet, "forward_features", counting_features)
    cfg = config.load(DEFAULT, tiny_overrides(tiny_synthloc, tmp_path / "logs", **{"trainer.limit_train_batches": 1}))
    train(cfg)
    # limit_train_batches=1 (an int: one batch) made 1 forward; every validation batch exactly one more
    assert calls["batches"] == 2  # 21 images, batch 16
    assert calls["features"] == 1 + calls["batches"]  # the callback made none


def test_fitting_and_evaluation_trainers_share_the_configured_settings(tmp_path):
    """One list of the shared Trainer settings (`wiring.trainer_arguments`): a single-process evaluation keeps the
    precision and batch limits of training but not its multi-process strategy."""
    from camexp.evaluate import evaluation_trainer
    from camexp.wiring import trainer_arguments

    overrides = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.precision=64-true",
                 "trainer.limit_val_batches=3", "eval.method=backprop"]
    cfg = config.load(DEFAULT, overrides)
    fitting = trainer_arguments(cfg, tmp_path)
    assert (fitting["devices"], fitting["strategy"], fitting["num_nodes"]) == (2, "ddp", 1)
    assert fitting["precision"] == "64-true" and fitting["limit_val_batches"] == 3
    assert fitting["inference_mode"] is False  # gradient saliency needs autograd
    single = trainer_arguments(cfg, tmp_path, devices=1)
    assert (single["devices"], single["strategy"]) == (1, "auto")
    assert {k: v for k, v in single.items() if k not in ("devices", "strategy")} == {
        k: v for k, v in fitting.items() if k not in ("devices", "strategy")
    }
    trainer = evaluation_trainer(cfg, [], tmp_path, devices=1)
    assert trainer.world_size == 1 and trainer.limit_test_batches == 3 and trainer.logger is None
