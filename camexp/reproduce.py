"""`camexp reproduce` (`make reproduce`): the paper's comparisons on the embedded benchmarks, over seeds.

A benchmark is an experiment YAML (its data and training recipe: SynthLoc, cluttered digits). On each, three
CPU-sized networks of the AlexNet family (models/alexnet.py) train from scratch with every setting shared
except their own:

    gap   AlexNet-GAP (small), scored by CAM; Table 3's heuristic top-5 is scored too
    gmp   the same network with global max pooling (the paper's GMP ablation)
    fc    AlexNet (small) with its FC head, scored by Backprop (the paper's gradient-saliency baseline)

Each (benchmark, network, seed) is one real `camexp train` run in its own process (its log beside its run
directory). A finished run is reused when its recorded settings are the planned ones, so an interrupted
reproduction continues where it stopped; a run that was killed continues from its newest checkpoint
(resume=auto). The report compares the arms over seeds (mean +- sample std, paired by seed) beside the
paper's ILSVRC numbers, says which of the paper's orderings ours shows, and never tunes anything per
comparison: every arm trains with the benchmark's own recipe.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from camexp import config
from camexp.errors import CamexpError
from camexp.paper_numbers import CLASSIFICATION_ERROR, LOCALIZATION_ERROR, PAPER_NAMES, TOP5_LOC_ERROR_TEST
from camexp.reports import BASELINE_NOTE, ROWS

DEFAULT_BENCHMARKS = ("experiments/synthloc_gap.yaml", "experiments/cluttered_mnist_gap.yaml")
DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Arm:
    key: str
    label: str  # how the report names it
    overrides: tuple[str, ...]


# Shared by every arm: the CPU-sized AlexNet family at 128 px (7x7 CAM, AlexNet-GAP's 13x13 at 224), the
# wsoleval metrics beside the paper's, and one validation at the end (the numbers the report reads).
NETWORK_OVERRIDES = ("model.width=16", "data.input_size=128", "data.train_resize=146", "eval.protocol=wsoleval")
_CAM_NET = ("model.name=alexnet_small_gap", "eval.heuristic_top5=true")
ARMS = {
    "gap": Arm("gap", "AlexNet-GAP small, CAM", (*_CAM_NET, "model.pool=avg")),
    "gmp": Arm("gmp", "AlexNet-GMP small, CAM", (*_CAM_NET, "model.pool=max")),
    "fc": Arm(
        "fc", "AlexNet small (FC), Backprop", ("model.name=alexnet_small", "model.dropout=0.5", "eval.method=backprop")
    ),
}


@dataclass(frozen=True)
class PlannedRun:
    benchmark: str  # the data name (synthloc, cluttered_mnist)
    arm: str
    seed: int
    files: tuple[str, ...]
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.benchmark}_{self.arm}_seed{self.seed}"


def plan_runs(
    benchmarks: Sequence[str | Path],
    seeds: Sequence[int],
    arms: Sequence[str],
    out: Path,
    overrides: Sequence[str] = (),
) -> list[PlannedRun]:
    """Every run of the reproduction, its config loaded (so a bad key or file fails here, before any training).

    The user's overrides apply to every run after the arm's; seed, name and the output folder are the plan's."""
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise CamexpError(f"Unknown network arm(s) {unknown} for camexp reproduce; known: {', '.join(ARMS)}.")
    if not seeds:
        raise CamexpError("camexp reproduce needs at least one seed (--seeds 0 1 2).")
    runs = []
    for path in map(Path, benchmarks):
        for arm in arms:
            base = (*NETWORK_OVERRIDES, *ARMS[arm].overrides, *overrides)
            cfg = config.load([path], base)  # the error names the file or key, before any work
            once = (f"trainer.check_val_every_n_epoch={cfg.trainer.max_epochs}",) if cfg.trainer.max_epochs > 0 else ()
            for seed in seeds:
                fixed = (f"seed={seed}", f"logger.save_dir={out / 'runs'}", "trainer.enable_progress_bar=false")
                run = PlannedRun(str(cfg.data.name), arm, int(seed), (str(path),), (*base, *once, *fixed))
                runs.append(PlannedRun(run.benchmark, arm, int(seed), run.files, (*run.overrides, f"name={run.name}")))
    names = [r.name for r in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CamexpError(f"Two benchmarks have the same data name, so their runs would share directories: {twice}. "
                          f"Pass each dataset once to --benchmarks.")  # fmt: skip
    return runs


IGNORED_SETTINGS = ("resume",)  # how a run was (re)started, not what it computes


def finished_run(run: PlannedRun, out: Path) -> Path | None:
    """The run's directory if it finished with exactly the planned settings; refuses a stale one."""
    experiment = out / "runs" / run.name
    planned = config.absolute_data_root(config.as_written(config.load(list(run.files), run.overrides)))
    for run_dir in sorted(experiment.glob("version_*")):
        recorded_path = run_dir / "config.yaml"
        if not recorded_path.is_file():
            continue
        # data.root as config.save records it (absolute); older runs recorded it as written
        recorded = config.absolute_data_root(config.load_written(recorded_path))
        changed = [k for k in config.changed_keys(planned, recorded) if k not in IGNORED_SETTINGS]
        if changed:
            raise CamexpError(
                f"{run_dir} was made with other settings than this reproduction plans ({', '.join(changed[:8])}"
                f"{' ...' if len(changed) > 8 else ''}). Its numbers would be mixed into the report: pass another "
                f"--out, or delete {out / 'runs'} to start afresh."
            )
        if (run_dir / "results.json").is_file():
            return run_dir
    return None


def train_in_subprocess(run: PlannedRun, out: Path) -> Path:
    """One `camexp train` process (resume=auto: a killed run continues); its console goes to a log file."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log, run_dir_file = logs / f"{run.name}.log", logs / f"{run.name}.run"
    command = [sys.executable, "-m", "camexp", "train", "--run-dir-file", str(run_dir_file), *run.files,
               *run.overrides, "resume=auto"]  # fmt: skip
    with log.open("w") as stream:
        code = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise CamexpError(
            f"Run {run.name} failed (exit {code}); its whole log is {log}. Last lines:\n{tail}\n"
            f"Fix the cause and run the same command again: finished runs are reused."
        )
    return Path(run_dir_file.read_text().strip())


def run_all(runs: Sequence[PlannedRun], out: Path) -> dict[str, Path]:
    """Train what is not finished yet, with a progress bar over runs and one line per run."""
    from tqdm import tqdm

    done: dict[str, Path] = {}
    with tqdm(total=len(runs), desc="reproduce", unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
        for run in runs:
            bar.set_postfix_str(run.name)
            run_dir = finished_run(run, out)
            started = time.time()
            status = "reused"
            if run_dir is None:
                run_dir = train_in_subprocess(run, out)
                status = f"{time.time() - started:.0f} s"
            results = json.loads((run_dir / "results.json").read_text())
            bar.write(
                f"{run.name:<32} {status:>7}  top-1 {100 * results.get('val/acc_top1', float('nan')):5.1f}  "
                f"GT-known {100 * results.get('val/loc_gt_known', float('nan')):5.1f}  "
                f"MaxBoxAccV2 {100 * results.get('val/maxboxacc_v2', float('nan')):5.1f}",
                file=sys.stderr,
            )
            done[run.name] = run_dir
            bar.update()
    return done


# -- the comparisons -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    label: str
    arm: str
    metric: str  # results key without the split


@dataclass(frozen=True)
class Comparison:
    """Side a's metric against side b's; `expect` is the paper's ordering: "a>b", or "close" (within CLOSE points)."""

    title: str
    metric: str
    a: Side
    b: Side
    expect: str
    paper: tuple[str, float, str, float] | None  # (row a, accuracy %, row b, accuracy %), ILSVRC


CLOSE = 2.0  # points: "classification close" (the paper's GAP - GMP difference is 0.6)
TIE = 0.05  # points: a mean difference that prints as 0.0 is no ordering either way


def _paper(table: dict[str, tuple[float, float]], a: str, b: str, top: int = 1) -> tuple[str, float, str, float]:
    """Two paper rows as accuracies (100 - error), top-1 or top-5."""
    column = 0 if top == 1 else 1
    return PAPER_NAMES[a], round(100 - table[a][column], 2), PAPER_NAMES[b], round(100 - table[b][column], 2)


def _sides(a: tuple[str, str], b: tuple[str, str], metric: str) -> tuple[Side, Side]:
    return Side(a[0], a[1], metric), Side(b[0], b[1], metric)


_GAP, _GMP, _FC = ("GAP", "gap"), ("GMP", "gmp"), ("FC", "fc")
_CAM, _BACKPROP = ("CAM", "gap"), ("Backprop", "fc")
_LOCALIZATION = (("localization GT-known", "loc_gt_known"), ("MaxBoxAccV2", "maxboxacc_v2"), ("PxAP", "pxap"))

COMPARISONS = (
    Comparison("GAP vs GMP", "classification top-1", *_sides(_GAP, _GMP, "acc_top1"), "close",
               _paper(CLASSIFICATION_ERROR, "googlenet_gap", "googlenet_gmp")),
    Comparison("GAP vs GMP", "localization top-1", *_sides(_GAP, _GMP, "loc_top1"), "a>b",
               _paper(LOCALIZATION_ERROR, "googlenet_gap", "googlenet_gmp")),
    *(Comparison("GAP vs GMP", name, *_sides(_GAP, _GMP, key), "a>b", None) for name, key in _LOCALIZATION),
    Comparison("FC vs GAP (the cost of dropping FC)", "classification top-1", *_sides(_FC, _GAP, "acc_top1"), "a>b",
               _paper(CLASSIFICATION_ERROR, "alexnet", "alexnet_gap")),
    Comparison("CAM (GAP) vs Backprop (FC)", "localization top-1", *_sides(_CAM, _BACKPROP, "loc_top1"), "a>b",
               _paper(LOCALIZATION_ERROR, "alexnet_gap", "backprop_alexnet")),
    Comparison("CAM (GAP) vs Backprop (FC)", "localization top-5", *_sides(_CAM, _BACKPROP, "loc_top5"), "a>b",
               _paper(LOCALIZATION_ERROR, "alexnet_gap", "backprop_alexnet", top=5)),
    *(Comparison("CAM (GAP) vs Backprop (FC)", name, *_sides(_CAM, _BACKPROP, key), "a>b", None)
      for name, key in _LOCALIZATION),
    Comparison("Table 3 heuristic vs plain top-5 (GAP)", "localization top-5",
               Side("heuristic", "gap", "loc_top5_heuristic"), Side("plain", "gap", "loc_top5"), "a>b",
               ("GoogLeNet-GAP heuristic", round(100 - TOP5_LOC_ERROR_TEST["heuristic"], 2),
                "GoogLeNet-GAP plain", round(100 - TOP5_LOC_ERROR_TEST["plain"], 2))),
)  # fmt: skip

PAPER_NOTE = (
    "Paper columns: ILSVRC val (Tables 1-2; Table 3's top-5 is on the test set), as accuracy = 100 - the paper's "
    "error. GAP vs GMP uses the paper's GoogLeNet rows (its only GMP network); the other comparisons its AlexNet "
    "rows, the family of our CPU-sized networks. The paper's own AlexNet rows do not show CAM > Backprop "
    "(AlexNet-GAP 32.81 vs Backprop on AlexNet 34.83 top-1); its GoogLeNet rows do (43.60 vs 38.69), and so does "
    'AlexNet*-GAP (36.25). "yes, every seed": the paired difference (same seed, data and recipe) has the paper\'s '
    f'sign for every seed; "close": the mean difference is within {CLOSE:g} points (the paper\'s is 0.6).'
)

Results = dict[tuple[str, int], dict[str, float]]  # (arm, seed) -> a run's results.json


def seed_values(results: Results, arm: str, metric: str, seeds: Sequence[int]) -> np.ndarray:
    """One metric of one arm over seeds, in % (NaN where a run lacks it)."""
    return np.array([100 * results.get((arm, s), {}).get(f"val/{metric}", np.nan) for s in seeds], dtype=float)


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of the finite values."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def verdict(a: np.ndarray, b: np.ndarray, expect: str) -> str:
    """Does ours show the paper's ordering? a and b are paired by seed."""
    diff = (a - b)[np.isfinite(a - b)]
    if diff.size == 0:
        return "no numbers"
    if expect == "close":
        return "yes" if abs(diff.mean()) <= CLOSE else "no"
    if abs(diff.mean()) < TIE:
        return "no (tied)"
    if diff.mean() < 0:
        return "no (reversed)"
    return "yes, every seed" if (diff > 0).all() else "on average only"


def plus_minus(values: np.ndarray) -> str:
    mean, std = mean_std(values)
    return "-" if not np.isfinite(mean) else f"{mean:.1f} ± {std:.1f}"


COMPARISON_HEADER = ["comparison", "metric", "ours A", "ours B", "A - B", "paper A vs B (ILSVRC)",
                     "paper's ordering", "ours shows it"]  # fmt: skip


def comparison_rows(results: Results, seeds: Sequence[int]) -> list[list[str]]:
    """One row per comparison whose two sides were run and measured (mean ± std over seeds, in %)."""
    rows = []
    for c in COMPARISONS:
        a, b = seed_values(results, c.a.arm, c.a.metric, seeds), seed_values(results, c.b.arm, c.b.metric, seeds)
        if not np.isfinite(a).any() or not np.isfinite(b).any():
            continue  # an arm not run, or a metric this benchmark lacks
        paper = "-" if c.paper is None else f"{c.paper[0]} {c.paper[1]:.1f} vs {c.paper[2]} {c.paper[3]:.1f}"
        expect = "close" if c.expect == "close" else f"{c.a.label} > {c.b.label}"
        rows.append([c.title, c.metric, f"{c.a.label} {plus_minus(a)}", f"{c.b.label} {plus_minus(b)}",
                     plus_minus(a - b), paper, expect, verdict(a, b, c.expect)])  # fmt: skip
    return rows


# Every metric of every arm beside the sanity baselines (theirs come from the GAP runs: their boxes ignore the
# image; their top-1/top-5 localization uses that network's class predictions).
COLUMNS = (
    ("GAP, CAM", "gap", ""),
    ("GMP, CAM", "gmp", ""),
    ("FC, Backprop", "fc", ""),
    ("centre-Gaussian", "gap", "baseline_center_gaussian/"),
    ("whole image", "gap", "baseline_whole_image/"),
)


def metric_rows(results: Results, seeds: Sequence[int]) -> list[list[str]]:
    rows = []
    for key, name in ROWS:
        cells = [plus_minus(seed_values(results, arm, prefix + key, seeds)) for _, arm, prefix in COLUMNS]
        if any(cell != "-" for cell in cells[:3]):
            rows.append([name, *cells])
    return rows


# -- the report ------------------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


PLOTTED = (("acc_top1", "top-1"), ("loc_top1", "loc top-1"), ("loc_gt_known", "GT-known"),
           ("maxboxacc_v2", "MaxBoxAccV2"), ("pxap", "PxAP"))  # fmt: skip


def plot_benchmarks(per_benchmark: dict[str, Results], seeds: Sequence[int], path: Path) -> Path:
    """One panel per benchmark: grouped bars (mean, sample-std error bars) of each column in COLUMNS."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6 * len(per_benchmark)), layout="constrained")
    axes = fig.subplots(len(per_benchmark), 1, squeeze=False)[:, 0]
    width = 0.8 / len(COLUMNS)
    for ax, (benchmark, results) in zip(axes, per_benchmark.items(), strict=True):
        x = np.arange(len(PLOTTED))
        for i, (label, arm, prefix) in enumerate(COLUMNS):
            stats = [mean_std(seed_values(results, arm, prefix + key, seeds)) for key, _ in PLOTTED]
            means = [m if np.isfinite(m) else 0.0 for m, _ in stats]
            stds = [s if np.isfinite(s) else 0.0 for _, s in stats]
            hatch = "//" if prefix else None
            ax.bar(x + (i - (len(COLUMNS) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=label,
                   hatch=hatch, alpha=0.6 if prefix else 1.0)  # fmt: skip
        ax.set_xticks(x, [name for _, name in PLOTTED])
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"{benchmark}: mean ± std over {len(seeds)} seed(s)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncols=len(COLUMNS), loc="upper center", fontsize="small", bbox_to_anchor=(0.5, -0.12))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def newest_overlay(run_dir: Path) -> Path | None:
    pictures = sorted((run_dir / "overlays").glob("val_epoch*.png"))
    return pictures[-1] if pictures else None


def write_report(
    out: Path, runs: Sequence[PlannedRun], run_dirs: dict[str, Path], seeds: Sequence[int], wall_s: float
) -> Path:
    """report.md, reproduce.png, seed-0 overlays and results.json (every run's numbers), all in `out`."""
    per_benchmark: dict[str, Results] = {}
    for run in runs:
        results = json.loads((run_dirs[run.name] / "results.json").read_text())
        per_benchmark.setdefault(run.benchmark, {})[(run.arm, run.seed)] = results
    picture = plot_benchmarks(per_benchmark, seeds, out / "reproduce.png")
    train_s = sum(r.get("wall_time_s", 0.0) for b in per_benchmark.values() for r in b.values())
    lines = [
        "# The paper's comparisons on the embedded benchmarks (`make reproduce`)",
        "",
        f"{len(runs)} runs: {len(per_benchmark)} benchmark(s) x {len({r.arm for r in runs})} network(s) x "
        f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}); numbers in %, mean ± sample std over seeds, "
        f"validation split. This command took {wall_s / 60:.1f} min (the runs' own wall times add up to "
        f"{train_s / 60:.1f} min; reused runs cost nothing).",
        "",
        "Networks (CPU-sized, trained from scratch, models/alexnet.py): **AlexNet-GAP small** = AlexNet's five conv "
        "layers at 1/4 width with batch norm + conv 3x3 256 + GAP + linear, at 128 px (7x7 CAM); **AlexNet-GMP "
        "small** = the same with global max pooling; **AlexNet small (FC)** = the same conv layers + pool5 + "
        "fc6/fc7 (1024 units, dropout 0.5) + fc8, localized by Backprop. Every run of a benchmark uses the "
        "benchmark's own recipe (its experiment YAML); nothing is tuned per comparison.",
        "",
        f"![bars]({picture.name})",
    ]
    for benchmark, results in per_benchmark.items():
        files = next(r.files for r in runs if r.benchmark == benchmark)
        lines += ["", f"## {benchmark} ({', '.join(files)})", "", "### The paper's orderings", ""]
        lines.append(markdown_table(COMPARISON_HEADER, comparison_rows(results, seeds)))
        lines += ["", "### Every metric, with the sanity baselines", ""]
        lines.append(markdown_table(["metric", *(label for label, _, _ in COLUMNS)], metric_rows(results, seeds)))
        lines += ["", "### CAMs (first seed; green = ground truth, red = the paper's box)", ""]
        for arm in dict.fromkeys(r.arm for r in runs):
            run = next(r for r in runs if r.benchmark == benchmark and r.arm == arm and r.seed == seeds[0])
            overlay = newest_overlay(run_dirs[run.name])
            if overlay is not None:
                target = out / "overlays" / f"{run.name}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(overlay, target)
                lines += [
                    f"**{ARMS[arm].label}** ({run_dirs[run.name]})",
                    "",
                    f"![{run.name}](overlays/{target.name})",
                    "",
                ]
    lines += ["", PAPER_NOTE, "", BASELINE_NOTE, ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    numbers = {run.name: {"run_dir": str(run_dirs[run.name]), **per_benchmark[run.benchmark][(run.arm, run.seed)]}
               for run in runs}  # fmt: skip
    (out / "results.json").write_text(json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    return report


def reproduce(
    out: str | Path = "lightning_logs/reproduce",
    benchmarks: Sequence[str | Path] = DEFAULT_BENCHMARKS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    arms: Sequence[str] = tuple(ARMS),
    overrides: Sequence[str] = (),
) -> Path:
    """Plan (every config checked first), train what is missing, write the report; returns report.md's path."""
    started = time.time()
    out = Path(out)
    runs = plan_runs(benchmarks, seeds, arms, out, overrides)
    for run in runs:
        finished_run(run, out)  # a stale run directory is refused before any training
    run_dirs = run_all(runs, out)
    return write_report(out, runs, run_dirs, list(seeds), time.time() - started)
