"""Results tables: our accuracies, the errors as the paper reports them (1 - acc), the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

from camexp.paper import PAPER_NAMES, paper_errors, paper_key

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


def results_table(
    metrics: dict[str, float], split: str = "val", network: str = "", pool: str = "avg", method: str = "cam"
) -> str:
    """Markdown table of one run's metrics (keys like 'val/acc_top1', fractions in [0, 1])."""
    paper = paper_errors(network, pool, method)
    paper_col = PAPER_NAMES.get(paper_key(network, pool, method))
    header = "| metric | accuracy % | error % |" + (f" paper {paper_col} error % (ILSVRC) |" if paper_col else "")
    lines = [header, "|---|---:|---:|" + ("---:|" if paper_col else "")]
    for key, label in ROWS:
        value = metrics.get(f"{split}/{key}")
        if value is None:
            continue
        row = f"| {label} | {100 * value:.2f} | {100 * (1 - value):.2f} |"
        if paper_col:
            row += f" {paper[key]:.2f} |" if key in paper else " - |"
        lines.append(row)
    return "\n".join(lines)


def write_results(run_dir: Path, metrics: dict[str, float]) -> Path:
    path = Path(run_dir) / "results.json"
    path.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    return path


def read_results(run_dir: str | Path) -> dict[str, float]:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        from camexp.errors import CamexpError

        raise CamexpError(f"No results.json in {run_dir}: is it a finished camexp run directory?")
    return json.loads(path.read_text())
