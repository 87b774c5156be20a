import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from camexp import config
from camexp.errors import ConfigError
from tests.conftest import REPO

DEFAULT = REPO / "experiments" / "synthloc_gap.yaml"


def test_yaml_then_overrides_and_read_only():
    cfg = config.load(DEFAULT, ["trainer.max_epochs=3", "data.batch_size=32", "model.pool=max"])
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.model.pool) == (3, 32, "max")
    assert cfg.model.name == "synthnet"  # from the YAML
    with pytest.raises(ReadonlyConfigError):
        cfg.trainer.max_epochs = 4


def test_later_yaml_files_override_earlier(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("data:\n  input_size: 96\n")
    cfg = config.load([DEFAULT, overlay])
    assert cfg.data.input_size == 96 and cfg.data.batch_size == 64


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(ConfigError) as err:
        config.load(bad)
    message = str(err.value)
    assert "trainer.max_epoch" in message and str(bad) in message and "trainer.max_epochs" in message


def test_wrong_type_override_names_key():
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs.*command-line overrides"):
        config.load(DEFAULT, ["trainer.max_epochs=many"])


def test_bad_choice_and_bad_override_syntax():
    with pytest.raises(ConfigError, match="model.pool"):
        config.load(DEFAULT, ["model.pool=mean"])
    with pytest.raises(ConfigError, match="key=value"):
        config.load(DEFAULT, ["trainer.max_epochs"])


def test_saved_config_round_trips(tmp_path):
    cfg = config.load(DEFAULT, ["seed=7"])
    path = config.save(cfg, tmp_path / "run" / "config.yaml")
    again = config.load(path)
    # data.root is recorded absolute (the default data/<name> too), so the run evaluates alike from any folder
    assert again.data.root == str(config.data_root(cfg).absolute())
    assert OmegaConf.to_container(again) == OmegaConf.to_container(config.with_absolute_data_root(cfg))


def test_cli_prints_one_paragraph_for_a_typo(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "camexp", "train", str(DEFAULT), "optim.lrr=0.1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Unknown config key 'optim.lrr'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "override, key",
    [
        ("eval.cam_threshold=1.5", "eval.cam_threshold"),
        ("eval.cam_threshold=-0.5", "eval.cam_threshold"),
        ("optim.lr=-0.1", "optim.lr"),
        ("optim.lr=0", "optim.lr"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.input_size=0", "data.input_size"),
        ("eval.iou_threshold=0", "eval.iou_threshold"),
        ("data.synth.part_dominance=1.5", "data.synth.part_dominance"),
    ],
)
def test_out_of_range_numbers_are_refused_naming_key_and_range(override, key):
    with pytest.raises(ConfigError, match=rf"'{key}' in the command-line overrides is .*outside its range"):
        config.load(None, [override])


def test_range_edges_that_are_valid_load():
    cfg = config.load(None, ["eval.cam_threshold=0", "eval.iou_threshold=1", "data.num_workers=0", "optim.lr=1e-6"])
    assert cfg.eval.cam_threshold == 0 and cfg.eval.iou_threshold == 1
