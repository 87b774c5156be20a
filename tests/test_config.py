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
    assert OmegaConf.to_container(again) == config.absolute_data_root(OmegaConf.to_container(cfg))


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


@pytest.mark.parametrize(
    "text, held", [("- a.yaml\n- b.yaml\n", "a list"), ("hello\n", "the single value 'hello'"), ("42\n", "'42'")]
)
def test_experiment_file_without_a_mapping_at_top_level_names_file_and_fix(tmp_path, text, held):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(bad)
    message = str(err.value)
    assert str(bad) in message and held in message and "camexp train a.yaml b.yaml" in message


@pytest.mark.parametrize(
    "value, expected",
    [
        ("${oc.env:CAMEXP_TEST_NOT_SET}", "environment variable CAMEXP_TEST_NOT_SET is not set"),
        ("${nope.key}", "refers to a key that does not exist"),
        ("${nosuchresolver:x}", "Unsupported interpolation type nosuchresolver"),
    ],
)
def test_unresolvable_interpolation_names_key_and_fix(monkeypatch, tmp_path, value, expected):
    monkeypatch.delenv("CAMEXP_TEST_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match=r"'data\.root' in the command-line overrides") as err:
        config.load(DEFAULT, [f"data.root={value}"])
    assert expected in str(err.value) and value in str(err.value)
    in_file = tmp_path / "exp.yaml"
    in_file.write_text(f"data:\n  root: '{value}'\n")
    with pytest.raises(ConfigError, match=rf"'data\.root' in {in_file}"):
        config.load(in_file)


def test_environment_value_of_the_wrong_type_names_key(monkeypatch):
    monkeypatch.setenv("CAMEXP_TEST_BATCH", "many")
    with pytest.raises(ConfigError, match=r"Wrong type for config key 'data\.batch_size'"):
        config.load(None, ["data.batch_size=${oc.env:CAMEXP_TEST_BATCH}"])


@pytest.mark.parametrize("override", ["logger.wandb.tags=[a,${oc.env:T}]", "data.root=${oc.env:T", "data.root=${}"])
def test_override_that_cannot_be_parsed_is_named_with_the_fix(override):
    with pytest.raises(ConfigError) as err:
        config.load(None, ["trainer.max_epochs=1", override])
    assert f"Cannot parse the override {override!r}" in str(err.value) and "quote" in str(err.value)


def test_environment_values_are_saved_as_written_and_load_again(monkeypatch, tmp_path):
    # A real environment variable; `name` takes it through another key, `data.val_split` an ordinary interpolation.
    monkeypatch.setenv("CAMEXP_TEST_SECRET", "s3cr3t-token")
    overrides = ["data.root=/data/${oc.env:CAMEXP_TEST_SECRET}", "name=${data.root}"]
    overrides.append("data.val_split=${data.train_split}")
    cfg = config.load(DEFAULT, overrides)
    assert cfg.data.root == cfg.name == "/data/s3cr3t-token"  # the config itself is resolved
    path = config.save(cfg, tmp_path / "run" / "config.yaml")
    text = path.read_text()
    assert "s3cr3t-token" not in text
    assert "root: /data/${oc.env:CAMEXP_TEST_SECRET}" in text and "name: ${data.root}" in text
    assert "val_split: train" in text  # everything else is written resolved
    assert config.as_written(cfg)["data"]["root"] == "/data/${oc.env:CAMEXP_TEST_SECRET}"

    again = config.load(path)  # what `camexp validate CKPT` reads
    assert again.data.root == "/data/s3cr3t-token" and again.data.val_split == "train"
    assert config.resume_changes(config.as_written(cfg), config.load_written(path)) == {}
    monkeypatch.setenv("CAMEXP_TEST_SECRET", "other")  # the run's setting is the variable, not its value
    assert config.resume_changes(config.as_written(config.load(DEFAULT, overrides)), config.load_written(path)) == {}

    # a config.yaml written before environment values were kept as written holds them resolved
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    monkeypatch.setenv("CAMEXP_TEST_SECRET", "s3cr3t-token")
    written, resolved = config.as_written(cfg), OmegaConf.to_container(cfg, resolve=True)
    assert config.resume_changes(written, config.load_written(path), resolved) == {}
    assert list(config.resume_changes(written, config.load_written(path))) == ["data.root", "name"]


def test_resume_changes_leave_out_how_a_run_is_executed_and_logged(tmp_path):
    old = config.load(DEFAULT, ["trainer.max_epochs=3"])
    saved = config.save(old, tmp_path / "config.yaml")
    new = config.load(
        DEFAULT,
        [
            "trainer.max_epochs=3",
            "resume=last",
            "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1",
            "trainer.accelerator=cpu",
            "data.num_workers=0",
            "eval.num_overlays=2",
            "logger.save_dir=elsewhere",
            "logger.wandb.enabled=true",
        ],
    )
    assert config.resume_changes(config.as_written(new), config.load_written(saved)) == {}
    changed = config.load(DEFAULT, ["trainer.max_epochs=4", "model.pool=max", "optim.lr=0.5", "trainer.devices=2"])
    assert config.resume_changes(config.as_written(changed), config.load_written(saved)) == {
        "model.pool": ("avg", "max"),
        "optim.lr": (0.1, 0.5),  # experiments/synthloc_gap.yaml's
        "trainer.devices": (1, 2),  # data.batch_size is per process: another global batch and data split
        "trainer.max_epochs": (3, 4),  # the learning-rate schedule spans the planned steps
    }


def test_a_config_yaml_older_than_a_schema_key_has_no_changes(tmp_path):
    cfg = config.load(DEFAULT)
    saved = config.save(cfg, tmp_path / "config.yaml")
    saved.write_text(saved.read_text().replace("resume_changes: refuse\n", ""))  # written before the key existed
    assert "resume_changes" not in saved.read_text()
    assert config.resume_changes(config.as_written(cfg), config.load_written(saved)) == {}


def test_cli_takes_overrides_after_an_option(tmp_path, capsys):
    from camexp.cli import build_parser, main, parse_args

    args = parse_args(build_parser(), ["train", str(DEFAULT), "--run-dir-file", "f", "trainer.max_epochs=1"])
    assert args.config == [str(DEFAULT), "trainer.max_epochs=1"] and args.run_dir_file == "f"
    args = parse_args(build_parser(), ["validate", "x.ckpt", "--out", "m.json", "data.batch_size=8"])
    assert (args.checkpoint, args.config, args.out) == ("x.ckpt", ["data.batch_size=8"], "m.json")
    # the override after the option reaches the config: its typo is reported, not argparse's "unrecognized"
    assert main(["train", str(DEFAULT), "--run-dir-file", str(tmp_path / "f"), "optim.lrr=0.1"]) == 2
    assert "Unknown config key 'optim.lrr'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an unknown option is still refused
        parse_args(build_parser(), ["train", str(DEFAULT), "--nope", "trainer.max_epochs=1"])
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def test_a_bad_choice_is_blamed_on_where_it_was_given(tmp_path):
    with pytest.raises(ConfigError, match=r"'model.pool' in the command-line overrides is 'mean'"):
        config.load(DEFAULT, ["model.pool=mean"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {pool: mean}\n")
    with pytest.raises(ConfigError, match="'model.pool' in .*bad.yaml is 'mean'") as refused:
        config.load([DEFAULT, bad])
    assert "command-line" not in str(refused.value)


def test_command_words_split_into_experiment_files_and_overrides():
    files, overrides = config.split_words(["a.yaml", "model.pool=max", "b.yml", "name=x.yaml", "c.yaml"])
    assert files == ["a.yaml", "b.yml", "c.yaml"]  # in order: later files override earlier ones
    assert overrides == ["model.pool=max", "name=x.yaml"]  # a value that ends in .yaml is still an override


def test_camnet_defaults_are_the_schemas():
    """One home for defaults: CAMNet's are ModelConfig's (network and class count have none: the config always
    gives them), and an optimizer setting that `optim` leaves out is OptimConfig's (it was lr 0.01, no schedule)."""
    import inspect
    from dataclasses import asdict

    from camexp.models import CAMNet

    params = inspect.signature(CAMNet).parameters
    assert params["network"].default is params["num_classes"].default is inspect.Parameter.empty
    for name in ("pool", "width", "dropout", "pretrained", "weights_path"):
        assert params[name].default == getattr(config.ModelConfig(), name), name
    assert params["normalize"].default == config.DataConfig().normalize
    model = CAMNet("synthnet", num_classes=3, width=4, optim={"lr": 0.5, "scheduler": "none"})
    assert model.optim == {**asdict(config.OptimConfig()), "lr": 0.5, "scheduler": "none"}
    assert CAMNet("synthnet", num_classes=3, width=4).optim == asdict(config.OptimConfig())
    assert model.hparams.optim == {"lr": 0.5, "scheduler": "none"}  # the checkpoint keeps what it was given
