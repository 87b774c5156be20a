"""Results tables: our accuracies, the errors as the paper reports them (1 - acc), the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

from camexp.paper_numbers import PAPER_NAMES, paper_errors, paper_key

ROWS = (
    ("acc_top1", "classification top-1"),
    ("acc_top5", "classification top-5"),
    ("loc_top1", "localization top-1"),
    ("loc_top5", "localization top-5"),
    ("loc_top5_heuristic", "localization top-5 (Table 3 heuristic)"),
    ("loc_gt_known", "localization GT-known"),
    ("maxboxacc", "MaxBoxAcc (IoU 0.5)"),
    ("maxboxacc_v2", "MaxBoxAccV2"),
    ("pxap", "PxAP"),
)


# The sanity baselines' columns (camexp.localization.BASELINES; keys <split>/baseline_<name>/<metric>).
BASELINE_COLUMNS = (("center_gaussian", "centre-Gaussian"), ("whole_image", "whole image"))
BASELINE_NOTE = (
    "Sanity baselines, scored by the same code on the same images: centre-Gaussian = a Gaussian map centred "
    "in the image (sigma = 1/4 of each side) in place of the CAM; whole image = the box (0, 0, W, H) at every "
    "threshold. Both ignore the image; their top-1/top-5 localization uses the network's own class predictions."
)


def baseline_columns(metrics: dict[str, float], split: str = "val") -> list[tuple[str, str]]:
    """The (name, label) of each baseline with at least one number for `split` (old runs have none)."""
    return [
        (name, label)
        for name, label in BASELINE_COLUMNS
        if any(key.startswith(f"{split}/baseline_{name}/") for key in metrics)
    ]


def results_table(
    metrics: dict[str, float], split: str = "val", network: str = "", pool: str = "avg", method: str = "cam"
) -> str:
    """Markdown table of one run's metrics (keys like 'val/acc_top1', fractions in [0, 1]): CAM's accuracy
    and error, each sanity baseline's accuracy where the run has them, and the paper's error; then, when
    baselines are shown, a note on what they are."""
    paper = paper_errors(network, pool, method)
    paper_col = PAPER_NAMES.get(paper_key(network, pool, method))
    baselines = baseline_columns(metrics, split)
    ours = "accuracy %" if not baselines else f"{'CAM' if method == 'cam' else method} accuracy %"
    header = f"| metric | {ours} | error % |" + "".join(f" {label} % |" for _, label in baselines)
    header += f" paper {paper_col} error % (ILSVRC) |" if paper_col else ""
    lines = [header, "|---|---:|---:|" + "---:|" * len(baselines) + ("---:|" if paper_col else "")]
    for key, label in ROWS:
        value = metrics.get(f"{split}/{key}")
        if value is None:
            continue
        row = f"| {label} | {100 * value:.2f} | {100 * (1 - value):.2f} |"
        for name, _ in baselines:
            baseline = metrics.get(f"{split}/baseline_{name}/{key}")
            row += " - |" if baseline is None else f" {100 * baseline:.2f} |"
        if paper_col:
            row += f" {paper[key]:.2f} |" if key in paper else " - |"
        lines.append(row)
    if baselines:
        lines += ["", BASELINE_NOTE]
    return "\n".join(lines)


def write_results(run_dir: Path, metrics: dict[str, float]) -> Path:
    path = Path(run_dir) / "results.json"
    path.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    return path


def result_splits(metrics: dict[str, float]) -> list[str]:
    """The splits a results.json holds metrics of ("val", "test"), from keys like 'val/acc_top1'."""
    return sorted({key.split("/", 1)[0] for key in metrics if "/" in key})


def check_split(metrics: dict[str, float], split: str, run_dir: str | Path) -> None:
    """A CamexpError naming the splits the run does have when it has no `split` metrics (not an empty table)."""
    splits = result_splits(metrics)
    if split in splits:
        return
    from camexp.errors import CamexpError

    run_dir = Path(run_dir)
    evaluated = run_dir / f"eval_{split}"
    if (evaluated / "results.json").is_file():
        fix = f"`camexp evaluate --split {split}` wrote them to {evaluated}: camexp report {evaluated} --split {split}."
    else:
        fix = f"Pass --split {' or '.join(splits)}" if splits else "Report a run directory of `camexp train`"
        if split in ("val", "test") and (run_dir / "checkpoints").is_dir():
            fix += f", or compute them: camexp evaluate {run_dir / 'checkpoints' / 'last.ckpt'} --split {split}"
        fix += "."
    raise CamexpError(f"{run_dir / 'results.json'} has no {split} metrics; it has {', '.join(splits) or 'none'}. {fix}")


def read_results(run_dir: str | Path) -> dict[str, float]:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        from camexp.errors import CamexpError

        raise CamexpError(f"No results.json in {run_dir}: is it a finished camexp run directory?")
    return json.loads(path.read_text())
