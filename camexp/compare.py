"""Side-by-side table of finished runs (e.g. `make ablate-gmp`): accuracies, errors and the paper's errors.

Each run directory holds `results.json` (flat {"val/acc_top1": 0.71, ...}, accuracies in [0, 1]) and
`config.yaml` (its network and pooling pick the paper's row: googlenet_gap + pool=max is GoogLeNet-GMP).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from camexp.paper_numbers import PAPER_NAMES, paper_errors, paper_key
from camexp.report import BASELINE_NOTE, baseline_columns, read_results

METRICS = (
    ("acc_top1", "classification top-1"),
    ("acc_top5", "classification top-5"),
    ("loc_top1", "localization top-1"),
    ("loc_top5", "localization top-5"),
    ("loc_gt_known", "localization GT-known"),
    ("maxboxacc_v2", "MaxBoxAccV2"),
)


def _network(run_dir: Path) -> tuple[str, str]:
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return "", "avg"
    model = OmegaConf.load(cfg_path).get("model", {})
    return str(model.get("name", "")), str(model.get("pool", "avg"))


def compare_runs(run_dirs: list[Path], labels: list[str], split: str = "val") -> str:
    """Markdown table: one row per metric; per run its accuracy %, error % (100 - acc), each sanity baseline's
    accuracy % when the run has them (report.BASELINE_COLUMNS), and the paper's error % when the paper has a
    number for one of the rows (a column of dashes only is left out)."""
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} run directories")
    results = [read_results(d) for d in run_dirs]
    papers = []
    for run_dir in run_dirs:
        network, pool = _network(Path(run_dir))
        papers.append((PAPER_NAMES.get(paper_key(network, pool), ""), paper_errors(network, pool)))
    baselines = [baseline_columns(r, split) for r in results]
    shown = [(key, name) for key, name in METRICS if any(r.get(f"{split}/{key}") is not None for r in results)]
    with_paper = [any(key in paper for key, _ in shown) for _, paper in papers]
    header = ["metric"]
    for label, (paper_name, _), columns, paper_column in zip(labels, papers, baselines, with_paper, strict=True):
        header += [f"{label} acc %", f"{label} err %"]
        header += [f"{label} {name} %" for _, name in columns]
        if paper_column:
            header.append(f"paper {paper_name or label} err % (ILSVRC)")
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for key, name in shown:
        values = [r.get(f"{split}/{key}") for r in results]
        cells = [name]
        for value, (_, paper), result, columns, paper_column in zip(
            values, papers, results, baselines, with_paper, strict=True
        ):
            cells += ["-", "-"] if value is None else [f"{100 * value:.2f}", f"{100 * (1 - value):.2f}"]
            for baseline, _ in columns:
                number = result.get(f"{split}/baseline_{baseline}/{key}")
                cells.append("-" if number is None else f"{100 * number:.2f}")
            if paper_column:
                cells.append(f"{paper[key]:.2f}" if key in paper else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if any(baselines):
        lines += ["", BASELINE_NOTE]
    return "\n".join(lines)
