"""Experiment configuration: a typed schema merged with an experiment YAML and `key=value` overrides.

Only the wiring code (the commands and `camexp.wiring`) reads this tree; everything else takes plain arguments.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    InterpolationKeyError,
    InterpolationResolutionError,
    OmegaConfBaseException,
    ValidationError,
)

from camexp.errors import ConfigError

__all__ = ["ConfigError", "ExperimentConfig", "load", "save", "as_written", "load_written", "data_root"]


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
    # refuse | allow: what a resume does with settings that differ from the run's config.yaml (RESUME_IGNORED aside).
    # refuse: stop before any work, listing them; allow: continue with the new values, append them (key: old -> new)
    # to <run dir>/resume_changes.yaml and rewrite config.yaml.
    resume_changes: str = "refuse"
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


def _read_yaml(path: Path) -> DictConfig:
    """One experiment file (or a run's config.yaml): a mapping of config keys at its top level."""
    if not path.is_file():
        raise ConfigError(
            f"Experiment file not found: {path}. Pass one of the YAML files in experiments/ "
            f"(e.g. experiments/synthloc_gap.yaml)."
        )
    try:
        top = yaml.safe_load(path.read_text())
        file_cfg = OmegaConf.load(path) if isinstance(top, dict) else OmegaConf.create()
    except Exception as err:  # yaml.YAMLError and friends, an unclosed ${...}
        reason = " ".join(line.strip() for line in str(err).splitlines())  # one paragraph, with line and column
        raise ConfigError(f"Cannot parse {path}: {reason}. Fix the YAML syntax.") from err
    if top is not None and not isinstance(top, dict):
        held = "a list" if isinstance(top, list) else f"the single value {str(top)[:40]!r}"
        raise ConfigError(
            f"{path} holds {held} at its top level, but an experiment file is a mapping of config keys "
            f"(e.g. `trainer: {{max_epochs: 3}}`, one key per line). Write the settings as key: value lines; "
            f"to merge several experiment files, pass them all on the command line (camexp train a.yaml b.yaml)."
        )
    return file_cfg


def split_words(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """A command's positional words: YAML files (merged in order) and key=value overrides."""
    files = [w for w in words if w.endswith((".yaml", ".yml")) and "=" not in w]
    return files, [w for w in words if w not in files]


def load(
    paths: str | Path | Sequence[str | Path] | None = None, overrides: Sequence[str] = ()
) -> DictConfig:
    """Schema <- experiment YAML(s), merged in order <- `key=value` overrides; resolved and read-only.

    Values that come from the environment (`${oc.env:...}`) are remembered as written, for `as_written`."""
    cfg = OmegaConf.structured(ExperimentConfig)
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    for path in map(Path, paths):
        file_cfg = _read_yaml(path)
        try:
            cfg = OmegaConf.merge(cfg, file_cfg)
        except OmegaConfBaseException as err:
            raise _explain(err, str(path)) from err
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"Overrides must look like key=value (e.g. trainer.max_epochs=3); got {bad}.")
    for override in overrides:
        try:
            OmegaConf.from_dotlist([override])
        except (yaml.YAMLError, OmegaConfBaseException) as err:  # e.g. an unquoted ${...} inside [...]; `${x`
            raise ConfigError(
                f"Cannot parse the override {override!r}: {str(err).splitlines()[0]}. Fix its syntax: quote the "
                f"parts of a value that hold YAML syntax (e.g. 'logger.wandb.tags=[a,\"${{oc.env:TAG}}\"]'), "
                f"and close every interpolation (${{other.key}}, ${{oc.env:VAR}})."
            ) from err
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise _explain(err, "the command-line overrides") from err
    source = " + ".join(map(str, paths)) or "the config"
    overridden = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    _check_interpolations(cfg, source, overridden)
    _check_choices(cfg, source, overridden)
    _check_ranges(cfg, source, overridden)
    _check_input_normalization(cfg, source)
    written = OmegaConf.to_container(cfg, resolve=False)
    OmegaConf.resolve(cfg)
    OmegaConf.set_readonly(cfg, True)
    cfg.__dict__[_FROM_ENV] = _from_env(written)  # on the root node: the config tree itself stays resolved
    return cfg


def _path(key: str) -> list[str | int]:
    """'logger.wandb.tags[0]' -> ['logger', 'wandb', 'tags', 0]."""
    return [int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", key)]


def _get(tree: Any, path: Sequence[str | int], default: Any = None) -> Any:
    for part in path:
        if isinstance(tree, dict) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and isinstance(part, int) and part < len(tree):
            tree = tree[part]
        else:
            return default
    return tree


def _leaves(tree: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _leaves(value, (*path, i))
    else:
        yield path, tree


def _check_interpolations(cfg: DictConfig, source: str, overridden: set[str]) -> None:
    """An unresolvable `${...}` (an unset environment variable, a key that does not exist) fails here, naming
    the key, instead of as a traceback wherever the value is first read."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as err:
        key = _full_key(err)
        where = "the command-line overrides" if key.split("[")[0] in overridden else source
        if isinstance(err, ValidationError):  # resolved, but to a value of the wrong type
            raise _explain(err, where) from err
        written = _get(OmegaConf.to_container(cfg, resolve=False), _path(key))
        reason = str(err).splitlines()[0]
        env = re.search(r"Environment variable '([^']+)' not found", reason)
        if env:
            var = env.group(1)
            raise ConfigError(
                f"Config key '{key}' in {where} is {written!r}, but the environment variable {var} is not set. "
                f"Export it (export {var}=...), or give a default: ${{oc.env:{var},default}}."
            ) from err
        if isinstance(err, InterpolationKeyError):
            raise ConfigError(
                f"Config key '{key}' in {where} is {written!r}, which refers to a key that does not exist "
                f"({reason}). Point it at an existing key (e.g. ${{data.root}}) or write the value itself."
            ) from err
        raise ConfigError(
            f"Cannot resolve config key '{key}' in {where} ({written!r}): {reason}. Fix the interpolation "
            f"(e.g. ${{other.key}}, ${{oc.env:VAR}}, ${{oc.env:VAR,default}}) or write the value itself."
        ) from err
    except OmegaConfBaseException as err:  # e.g. an environment variable's value of the wrong type
        raise _explain(err, source) from err


# Which values come from the environment: resolve the config as written with `oc.env` swapped for a resolver that
# returns a marker; a value holding the marker came from an environment variable, directly or through other keys.
_FROM_ENV = "_camexp_from_env"  # attribute of a loaded config's root node: {path: value as written}
_ENV_MARK = "camexp-value-from-the-environment"
_OC_ENV = re.compile(r"\boc\.env\s*:")


def _from_env(written: dict) -> dict[tuple, str]:
    """{path: value as written} for every value of a config tree (unresolved) that comes from `${oc.env:...}`."""
    interpolated = {path: v for path, v in _leaves(written) if isinstance(v, str) and "${" in v}
    if not any(_OC_ENV.search(v) for v in interpolated.values()):
        return {}
    if not OmegaConf.has_resolver("camexp.env_mark"):
        with warnings.catch_warnings():  # the name of omegaconf 2.3, deprecated (not removed) in 2.4
            warnings.simplefilter("ignore", UserWarning)
            OmegaConf.register_new_resolver("camexp.env_mark", lambda *args: _ENV_MARK)
    marked = copy.deepcopy(written)
    for path, value in interpolated.items():
        _get(marked, path[:-1])[path[-1]] = _OC_ENV.sub("camexp.env_mark:", value)
    try:
        resolved = OmegaConf.to_container(OmegaConf.create(marked), resolve=True)
    except OmegaConfBaseException:  # cannot tell: keep every interpolation as written rather than leak one
        return interpolated
    return {path: v for path, v in interpolated.items() if _ENV_MARK in str(_get(resolved, path))}


def as_written(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a plain tree, except that values from environment variables (`${oc.env:...}`,
    also through other keys) stay as the user wrote them: what config.yaml and W&B receive, so a secret
    passed through the environment is never written out. Loading config.yaml resolves them again."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for path, value in vars(cfg).get(_FROM_ENV, {}).items():
        parent = _get(tree, path[:-1])
        if parent is not None:
            parent[path[-1]] = value
    return tree


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


def _check_choices(cfg: DictConfig, source: str, overridden: set[str] = frozenset()) -> None:
    """A value outside its choices, blamed on where it came from (the command line or the YAML files)."""
    for key, allowed in _CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            where = "the command-line overrides" if key in overridden else source
            raise ConfigError(f"Config key '{key}' in {where} is '{value}'; allowed: {', '.join(allowed)}.")


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
    """Write the config (`as_written`: environment values unresolved) next to a run's logs, so the run can be
    reproduced; data.root is written absolute (unless it came from the environment), so evaluating the run from
    another folder reads the same data. Written to a temporary file and renamed: a reader (another DDP rank)
    never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = absolute_data_root(as_written(cfg))
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(OmegaConf.to_yaml(OmegaConf.create(tree)))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def load_written(path: str | Path) -> dict[str, Any]:
    """A run's config.yaml as written (environment values unresolved) over the schema's defaults, so keys that
    the schema gained since the run was made do not count as changes."""
    path = Path(path)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), _read_yaml(path))
    except OmegaConfBaseException as err:
        raise _explain(err, str(path)) from err
    return OmegaConf.to_container(cfg, resolve=False)


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


# Settings that change how a run is executed, shown or logged, not what it computes: a resume may change them
# freely (resume_changes). The number of processes (trainer.devices, trainer.num_nodes) is NOT among them:
# data.batch_size is per process, so it sets the global batch and each rank's share of the data order.
# Evaluation is exact on any number of processes, training is not.
RESUME_IGNORED = (
    "resume",
    "resume_changes",  # how this run was (re)started
    "logger",  # where and how it is logged: save_dir, TensorBoard, W&B
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "trainer.checkpoint_every_n_steps",  # how often a kill-safe checkpoint is written
    "trainer.accelerator",  # the hardware (the same experiment, equal up to float rounding)
    "trainer.strategy",  # how the processes are started and synchronised
    "data.num_workers",  # loader mechanics; with workers the random crops differ on any resume
    "data.pin_memory",
    "data.persistent_workers",
    "eval.num_overlays",  # how many CAM overlays are drawn, not what is measured
)


def _resume_ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUME_IGNORED)


def resume_changes(new: dict, old: dict, new_resolved: dict | None = None) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (old value, new value)} for the settings that differ between a run's config.yaml (`old`,
    from load_written) and the config it is resumed with (`new`, from as_written), RESUME_IGNORED left out.
    A value equal to its resolved new value (`new_resolved`) is no change: config.yaml files written before
    environment values were kept as written hold them resolved."""
    missing = "<missing>"
    changes = {}
    # data.root compared as config.yaml records it (absolute), whether either side wrote it relative or not
    new, old = absolute_data_root(copy.deepcopy(new)), absolute_data_root(copy.deepcopy(old))
    for key in changed_keys(new, old):
        path = key.split(".")
        before = _get(old, path, missing)
        if _resume_ignored(key) or (new_resolved is not None and before == _get(new_resolved, path, missing)):
            continue
        changes[key] = (before, _get(new, path, missing))
    return changes


def data_root(cfg: DictConfig) -> Path:
    """`data.root`, defaulting to data/<name>."""
    return Path(cfg.data.root) if cfg.data.root else Path("data") / cfg.data.name


def absolute_data_root(tree: dict[str, Any]) -> dict[str, Any]:
    """A plain config tree whose data.root is made absolute against the current folder (the default data/<name>
    too; an `${...}` value stays as written): what a run's config.yaml records, so the run is evaluated alike
    from any folder."""
    data = tree.get("data", {})
    root = data.get("root")
    if isinstance(root, str) and "${" in root:
        return tree
    data["root"] = os.path.abspath(root or Path("data") / str(data.get("name")))
    return tree


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
