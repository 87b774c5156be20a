"""Experiment configuration: a typed schema merged with an experiment YAML and `key=value` overrides.

Only the wiring code (`cli`, `train`) reads this tree; everything else takes plain arguments.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from camexp.errors import ConfigError

__all__ = ["ConfigError", "ExperimentConfig", "load", "save", "data_root"]


@dataclass
class SynthConfig:
    """Parameters of the embedded SynthLoc benchmark (generated under `data.root` when absent)."""

    seed: int = 0
    n_train: int = 2000
    n_val: int = 500
    size: int = 128
    num_classes: int = 10
    version: int = 2  # 1: the v1 set, where the head alone identifies the class (experiments/synthloc_v1_part.yaml)
    part_dominance: float = 0.5  # version 2: 0 = class evidence over the whole body .. 1 = in the head alone


@dataclass
class DigitsConfig:
    """Parameters of the cluttered MNIST benchmark (`data.name=cluttered_mnist`, generated under `data.root`
    when absent or generated with other parameters; camexp/data/digits.py)."""

    seed: int = 0
    n_train: int = 3000  # images; train digits come from 400 sources per class (reused past 4,000 images)
    n_val: int = 1000  # images; val digits come from the other 100 sources per class
    size: int = 96  # canvas side in pixels
    clutter: int = 4  # fragments of other digits per image
    scale_min: float = 0.25  # the digit's longer side, as a fraction of the canvas side
    scale_max: float = 0.6


@dataclass
class DataConfig:
    # synthloc | cluttered_mnist | cub | ilsvrc | wsoleval | places365 | sun397 | indoor67 | scenes
    name: str = "synthloc"
    root: str | None = None  # default: data/<name>
    input_size: int = 128  # S: network input; evaluation resizes the whole image to S x S (no crop)
    train_resize: int = 146  # training: resize the short side to this, then random S x S crop (paper: 256 -> 224)
    hflip: bool = True
    normalize: str = "imagenet"  # imagenet | none
    batch_size: int = 64
    eval_batch_size: int | None = None  # default: batch_size
    num_workers: int = 2
    pin_memory: bool = True
    persistent_workers: bool = True
    skip_corrupt: bool = False  # true: corrupt images are skipped, counted and reported instead of failing
    train_split: str = "train"
    val_split: str = "val"
    test_split: str | None = None
    synth: SynthConfig = field(default_factory=SynthConfig)
    digits: DigitsConfig = field(default_factory=DigitsConfig)
    extra: dict[str, Any] = field(default_factory=dict)  # dataset-specific options, documented per dataset


@dataclass
class ModelConfig:
    name: str = "synthnet"  # see `camexp.models.available_networks()`
    pool: str = "avg"  # avg (GAP) | max (GMP)
    num_classes: int | None = None  # default: the dataset's class count
    pretrained: bool = False  # torchvision ImageNet weights for the kept layers (needs internet or a cache)
    weights_path: str | None = None  # local state dict (offline), loaded with weights_only=True
    width: int = 32  # channel width of the small CPU network (synthnet)
    dropout: float = 0.0


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    scheduler: str = "cosine"  # cosine | step | none
    step_size: int = 40000  # step scheduler: decay every step_size optimizer steps
    gamma: float = 0.1
    warmup_steps: int = 0
    new_layers_lr_mult: float = 1.0  # learning-rate multiplier for layers added by the surgery


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: int = -1
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    deterministic: bool = False
    log_every_n_steps: int = 10
    limit_train_batches: Any = 1.0  # float: fraction of the epoch; int: number of batches
    limit_val_batches: Any = 1.0
    check_val_every_n_epoch: int = 1
    num_sanity_val_steps: int = 0
    gradient_clip_val: float | None = None
    enable_progress_bar: bool = True
    checkpoint_every_n_steps: int = 500  # also checkpoint every N optimizer steps (two newest kept; 0: off)


@dataclass
class EvalConfig:
    protocol: str = "paper"  # paper | wsoleval
    method: str = "cam"  # cam | backprop (the paper's gradient-saliency baseline, for the FC networks)
    heuristic_top5: bool = False  # also score Table 3's five heuristic boxes (~10 ms/image on CPU; loc_top5_heuristic)
    cam_threshold: float = 0.2  # paper rule: keep pixels >= this fraction of the CAM's max
    iou_threshold: float = 0.5
    num_overlays: int = 16  # CAM overlays logged per validation
    box_thresholds: int = 100  # threshold grid size for MaxBoxAcc during training-time validation
    # protocol=wsoleval: MaxBoxAcc/PxAP in a wsoleval_size^2 frame (reference: 224), raw CAM resized bicubically;
    # training-time validation uses the box_thresholds grid, `validate`/`test` the reference 1000-threshold grid.
    wsoleval_size: int = 224


@dataclass
class WandbConfig:
    enabled: bool = False
    project: str = "camexp"
    entity: str | None = None
    log_model: bool = False
    tags: list[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    save_dir: str = "lightning_logs"
    tensorboard: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class ExperimentConfig:
    name: str = "synthloc_gap"
    seed: int = 0
    resume: str | None = None  # "last" (newest checkpoint of this experiment), "auto" (last, or a fresh start), a path
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def _full_key(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    return str(key) if key else "?"


def _explain(err: OmegaConfBaseException, source: str) -> ConfigError:
    key = _full_key(err)
    if isinstance(err, ConfigKeyError):
        parent = key.rsplit(".", 1)[0] if "." in key else None
        schema = OmegaConf.structured(ExperimentConfig)
        node = OmegaConf.select(schema, parent) if parent else schema
        names = sorted(node.keys()) if isinstance(node, DictConfig) else []
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], names, n=1)
        hint = f" Did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""
        return ConfigError(
            f"Unknown config key '{key}' in {source}.{hint} Known keys here: {', '.join(names)}. "
            f"Fix the spelling or remove the key (schema: camexp/config.py)."
        )
    if isinstance(err, ValidationError):
        return ConfigError(
            f"Wrong type for config key '{key}' in {source}: {str(err.msg).splitlines()[0]}. "
            f"Give a value of the type declared in camexp/config.py."
        )
    return ConfigError(f"Invalid config in {source} (key '{key}'): {err}")


def load(
    paths: str | Path | Sequence[str | Path] | None = None, overrides: Sequence[str] = ()
) -> DictConfig:
    """Schema <- experiment YAML(s), merged in order <- `key=value` overrides; resolved and read-only."""
    cfg = OmegaConf.structured(ExperimentConfig)
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    for path in map(Path, paths):
        if not path.is_file():
            raise ConfigError(
                f"Experiment file not found: {path}. Pass one of the YAML files in experiments/ "
                f"(e.g. experiments/synthloc_gap.yaml)."
            )
        try:
            file_cfg = OmegaConf.load(path)
        except Exception as err:  # yaml.YAMLError and friends
            raise ConfigError(f"Cannot parse {path}: {err}. Fix the YAML syntax.") from err
        try:
            cfg = OmegaConf.merge(cfg, file_cfg)
        except OmegaConfBaseException as err:
            raise _explain(err, str(path)) from err
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"Overrides must look like key=value (e.g. trainer.max_epochs=3); got {bad}.")
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise _explain(err, "the command-line overrides") from err
    source = " + ".join(map(str, paths)) or "the config"
    _check_choices(cfg, source)
    _check_ranges(cfg, source, {o.split("=", 1)[0].lstrip("+~") for o in overrides})
    _check_input_normalization(cfg, source)
    OmegaConf.resolve(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


_CHOICES = {
    "model.pool": ("avg", "max"),
    "optim.name": ("sgd", "adamw"),
    "optim.scheduler": ("cosine", "step", "none"),
    "eval.protocol": ("paper", "wsoleval"),
    "eval.method": ("cam", "backprop"),
    "data.normalize": ("imagenet", "none"),
}


# key: (low, high, low_inclusive, high_inclusive); None = unbounded. Checked at load, before any work.
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "data.input_size": (1, None, True, False),
    "data.train_resize": (1, None, True, False),
    "data.batch_size": (1, None, True, False),
    "data.eval_batch_size": (1, None, True, False),
    "data.num_workers": (0, None, True, False),
    "data.synth.n_train": (1, None, True, False),
    "data.synth.n_val": (1, None, True, False),
    "data.synth.size": (32, None, True, False),
    "data.synth.num_classes": (2, None, True, False),
    "data.synth.part_dominance": (0, 1, True, True),
    "model.num_classes": (1, None, True, False),
    "model.width": (1, None, True, False),
    "model.dropout": (0, 1, True, False),
    "optim.lr": (0, None, False, False),
    "optim.momentum": (0, 1, True, False),
    "optim.weight_decay": (0, None, True, False),
    "optim.gamma": (0, None, False, False),
    "optim.step_size": (1, None, True, False),
    "optim.warmup_steps": (0, None, True, False),
    "optim.new_layers_lr_mult": (0, None, True, False),
    "trainer.num_nodes": (1, None, True, False),
    "trainer.log_every_n_steps": (1, None, True, False),
    "trainer.check_val_every_n_epoch": (1, None, True, False),
    "trainer.checkpoint_every_n_steps": (0, None, True, False),
    "eval.cam_threshold": (0, 1, True, False),
    "eval.iou_threshold": (0, 1, False, True),
    "eval.num_overlays": (0, None, True, False),
    "eval.box_thresholds": (2, None, True, False),
    "eval.wsoleval_size": (1, None, True, False),
}


def _range_text(low, high, low_in, high_in) -> str:
    if high is None:
        return f"{'>=' if low_in else '>'} {low}"
    return f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def _check_ranges(cfg: DictConfig, source: str, overridden: set[str]) -> None:
    """Out-of-range numbers (a threshold of 1.5, a batch of 0, a negative learning rate) give meaningless runs
    or crash deep inside: refuse them at load, naming the key and its range."""
    for key, (low, high, low_in, high_in) in _RANGES.items():
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        if value is None or isinstance(value, str):  # unset optional; interpolations are resolved later
            continue
        below = value < low if low_in else value <= low
        above = high is not None and (value > high if high_in else value >= high)
        if below or above:
            where = "the command-line overrides" if key in overridden else source
            raise ConfigError(
                f"Config key '{key}' in {where} is {value}, outside its range "
                f"{_range_text(low, high, low_in, high_in)}. Give a value in that range (schema: camexp/config.py)."
            )


def _check_choices(cfg: DictConfig, source: str) -> None:
    for key, allowed in _CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"Config key '{key}' in {source} is '{value}'; allowed: {', '.join(allowed)}.")


def _check_input_normalization(cfg: DictConfig, source: str) -> None:
    """Pretrained ImageNet weights need ImageNet-normalized input; each network converts it to what its weights
    were trained on (GoogLeNet: [-1, 1]; EfficientNet-Lite: (x - 127) / 128). Any other input loses ~15 points."""
    if cfg.model.pretrained and cfg.data.normalize != "imagenet":
        raise ConfigError(
            f"model.pretrained=true with data.normalize={cfg.data.normalize} in {source}: the pretrained weights of "
            f"{cfg.model.name} expect ImageNet-normalized input (the network converts it to what its weights were "
            f"trained on), and any other input silently costs accuracy. Remove data.normalize (default: imagenet) "
            f"or set model.pretrained=false."
        )


def save(cfg: DictConfig, path: str | Path) -> Path:
    """Write the resolved config next to a run's logs so the run can be reproduced; data.root is written
    absolute (`with_absolute_data_root`), so evaluating the run from another folder reads the same data."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(with_absolute_data_root(cfg), resolve=True))
    return path


def changed_keys(new: dict, old: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two plain config trees (a key missing on one side counts)."""
    changed = []
    for key in sorted(set(new) | set(old)):
        a, b = new.get(key, "<missing>"), old.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def data_root(cfg: DictConfig) -> Path:
    """`data.root`, defaulting to data/<name>."""
    return Path(cfg.data.root) if cfg.data.root else Path("data") / cfg.data.name


def with_absolute_data_root(cfg: DictConfig) -> DictConfig:
    """A copy of `cfg` whose data.root is `data_root(cfg)` made absolute against the current folder (the
    default data/<name> too): what a run's config.yaml records."""
    out = copy.deepcopy(cfg)
    read_only = OmegaConf.is_readonly(out)
    OmegaConf.set_readonly(out, False)
    out.data.root = os.path.abspath(data_root(cfg))
    OmegaConf.set_readonly(out, read_only)
    return out


def check_recorded_data_root(cfg: DictConfig, run_config: Path) -> None:
    """Refuse a relative data.root read from a run's config.yaml (runs saved before camexp recorded absolute
    roots) when it does not exist from the current folder: it was relative to the folder the run was made
    from, and reading or generating data here would evaluate something else. Names both paths and the fix."""
    root = data_root(cfg)
    if root.is_absolute() or root.exists():
        return
    here = Path.cwd()
    made_in = _folder_run_was_made_in(cfg, run_config.parent)
    hint = ""
    if made_in is not None and (made_in / root).exists():
        hint = f" It exists under {made_in}, where the run was made: pass data.root={made_in / root}."
    raise ConfigError(
        f"data.root {root} in {run_config} is relative to the folder the run was made from, and "
        f"{here / root} does not exist from the current folder {here}; camexp will not read or generate data "
        f"there.{hint} Run the command from the folder the run was made in, or pass data.root=/absolute/path "
        f"(runs saved by this camexp record the absolute path)."
    )


def _folder_run_was_made_in(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The folder above <logger.save_dir>/<name>/<version> when the run directory lies where a relative
    save_dir put it; None otherwise."""
    save_dir = Path(str(cfg.logger.save_dir))
    parts = (*save_dir.parts, str(cfg.name))
    run_dir = Path(os.path.abspath(run_dir))
    if save_dir.is_absolute() or tuple(run_dir.parent.parts[-len(parts) :]) != parts:
        return None
    return run_dir.parents[len(parts)]
