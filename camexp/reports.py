"""Every table, curve and markdown report: our numbers, the paper's errors (1 - acc) beside them.

- results tables (`camexp train`'s summary, `camexp report`, report.md): ``results_table``, ``read_results``;
- side-by-side runs (`camexp compare`, `make ablate-gmp`): ``compare_runs``, over each run's results.json
  (flat {"val/acc_top1": 0.71, ...}, accuracies in [0, 1]) and config.yaml (network + pooling pick the paper's row);
- the `camexp evaluate` report: report.md + curves.png + extremes.png (``write_report``);
- each evaluation pass's dashboards (TensorBoard, W&B): ``per_class_rows``, ``per_class_markdown``,
  ``threshold_curve_figure``.

Markdown so it reads on GitHub and in a terminal; PNGs so curves and failure cases are seen, not guessed.
Every function takes plain values (metrics dicts, results, tiles), never the config tree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import OmegaConf

from camexp.paper_numbers import PAPER_NAMES, paper_errors, paper_key
from camexp.wsol.protocol import V1_IOU

if TYPE_CHECKING:  # the tables (camexp report, compare) start without torch
    from camexp.wsol.accumulator import WSOLResult

# -- results tables --------------------------------------------------------------------------------------

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


# -- comparing runs --------------------------------------------------------------------------------------

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


# -- the evaluate report ---------------------------------------------------------------------------------

def wsoleval_fractions(result: WSOLResult, prefix: str) -> dict[str, float]:
    """The wsoleval numbers as `<prefix>/maxboxacc`, ... fractions in [0, 1], the keys results tables read: the
    reference's percent / 100, the digits `camexp evaluate` has always written to results.json (they can
    differ from hits / images in the last bit)."""
    metrics = result.metrics(percent=True)
    keys = ("maxboxacc", "maxboxacc_v2", "pxap")
    return {f"{prefix}/{key}": metrics[key] / 100.0 for key in keys if metrics.get(key) is not None}


def wsoleval_json(result: WSOLResult) -> dict[str, Any]:
    """wsoleval.json's content: the metrics in percent (the reference's numbers), the settings and the raw counts
    (so a held-out selection can be redone from the file)."""
    counts: dict[str, Any] = {
        "hits_v1": result.hits_v1.astype(int).tolist(),
        "hits_v2": result.hits_v2.astype(int).tolist(),
    }
    if result.fg_hist is not None and result.bg_hist is not None:
        counts.update(fg_hist=result.fg_hist.astype(int).tolist(), bg_hist=result.bg_hist.astype(int).tolist())
    return {
        "protocol": "wsoleval",
        **result.metrics(percent=True),
        "iou_thresholds": list(result.iou_thresholds),
        "multi_contour": result.multi_contour,
        "num_thresholds": int(result.thresholds.size),
        "cam_curve_interval": result.cam_curve_interval,
        "counts": counts,
    }


def format_metrics(metrics: dict[str, Any], iou_thresholds: Sequence[int], multi_contour: bool) -> list[str]:
    """Printed lines of a `WSOLResult.metrics(percent=True)` dict (or a `heldout_metrics` dict), in percent."""
    lines = []
    if "maxboxacc" in metrics:
        at = metrics.get("maxboxacc_threshold")
        lines.append(
            f"  MaxBoxAcc   (IoU 50, largest contour) : {metrics['maxboxacc']:7.3f} %  (CAM threshold {at:.3f})"
        )
        rule = "all contours" if multi_contour else "largest contour"
        ious = "/".join(map(str, iou_thresholds))
        lines.append(f"  MaxBoxAccV2 (IoU {ious}, {rule}) : {metrics['maxboxacc_v2']:7.3f} %")
        chosen = metrics.get("maxboxacc_v2_thresholds", {})
        shared = metrics.get("maxboxacc_v2_threshold")
        for iou, value in metrics["maxboxacc_v2_per_iou"].items():
            threshold = chosen.get(iou, shared)
            lines.append(f"      IoU {iou:>3}: {value:7.3f} %  (CAM threshold {threshold:.3f})")
    if metrics.get("pxap") is not None:
        lines.append(f"  PxAP                                  : {metrics['pxap']:7.3f} %")
    return lines


def format_result(result: WSOLResult) -> list[str]:
    """Printed lines of a split's wsoleval numbers, in percent (``format_metrics``)."""
    return format_metrics(result.metrics(percent=True), result.iou_thresholds, result.multi_contour)


def wsoleval_table(result: WSOLResult, baselines: dict[str, WSOLResult] | None = None) -> str:
    """Markdown rows: MaxBoxAcc, MaxBoxAccV2 and each of its IoU rows with their best CAM thresholds, PxAP;
    plus a column per sanity baseline scored on the same images (`baselines`: name -> its result)."""
    metrics = result.metrics(percent=True)
    labels = dict(BASELINE_COLUMNS)
    scored = [(name, b) for name, b in (baselines or {}).items() if b.num_images]
    columns = [(labels.get(name, name), b.metrics(percent=True)) for name, b in scored]
    header = "| metric | accuracy % | best CAM threshold |" + "".join(f" {label} % |" for label, _ in columns)
    lines = [header, "|---|---:|---:|" + "---:|" * len(columns)]

    def cells(pick) -> str:
        values = [pick(m) for _, m in columns]
        return "".join(" - |" if v is None else f" {v:.2f} |" for v in values)

    if "maxboxacc" in metrics:
        lines.append(
            f"| MaxBoxAcc (IoU {V1_IOU}, largest contour) | {metrics['maxboxacc']:.2f} | "
            f"{metrics['maxboxacc_threshold']:.3f} |" + cells(lambda m: m.get("maxboxacc"))
        )
        rule = "all contours" if result.multi_contour else "largest contour"
        ious = "/".join(map(str, result.iou_thresholds))
        lines.append(
            f"| MaxBoxAccV2 (mean of IoU {ious}, {rule}) | {metrics['maxboxacc_v2']:.2f} | - |"
            + cells(lambda m: m.get("maxboxacc_v2"))
        )
        for iou, value in metrics["maxboxacc_v2_per_iou"].items():
            lines.append(
                f"| &nbsp;&nbsp; IoU {iou} | {value:.2f} | {metrics['maxboxacc_v2_thresholds'][iou]:.3f} |"
                + cells(lambda m, iou=iou: m.get("maxboxacc_v2_per_iou", {}).get(iou))
            )
    if metrics.get("pxap") is not None:
        lines.append(
            f"| PxAP ({result.num_mask_images} images with masks) | {metrics['pxap']:.2f} | - |"
            + cells(lambda m: m.get("pxap"))
        )
    return "\n".join(lines) if len(lines) > 2 else "(no boxes or masks in this split: nothing to score)"


def plot_curves(
    result: WSOLResult, path: str | Path, cam_threshold: float | None = None, title: str = ""
) -> Path | None:
    """Box accuracy (%) against the CAM threshold at each IoU (V2 rows solid, V1 dashed); best points marked."""
    if not result.num_images:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    x = result.thresholds
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.add_subplot()
    rule = "all contours" if result.multi_contour else "largest contour"
    for row, iou in enumerate(result.iou_thresholds):
        curve = result.hits_v2[row] * 100.0 / result.num_images
        best = int(curve.argmax())
        (line,) = ax.plot(x, curve, lw=1.5, label=f"IoU {iou} ({rule}): max {curve[best]:.1f}% at {x[best]:.3f}")
        ax.plot([x[best]], [curve[best]], "o", color=line.get_color(), ms=5)
    v1 = result.hits_v1 * 100.0 / result.num_images
    best = int(v1.argmax())
    ax.plot(
        x, v1, "k--", lw=1.2, label=f"MaxBoxAcc: IoU {V1_IOU} (largest contour): max {v1[best]:.1f}% at {x[best]:.3f}"
    )
    ax.plot([x[best]], [v1[best]], "ko", ms=5)
    if cam_threshold is not None:
        ax.axvline(cam_threshold, color="grey", ls=":", lw=1, label=f"paper rule's threshold ({cam_threshold:g})")
    ax.set_xlabel("CAM threshold tau (foreground: map > tau * max, after min-max normalization)")
    ax.set_ylabel("box accuracy %")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title or f"Box accuracy vs CAM threshold ({result.num_images} images)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def extremes_picture(
    best: Sequence[np.ndarray],
    worst: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    cam_threshold: float = 0.2,
    method: str = "cam",
) -> np.ndarray | None:
    from camexp import viz  # pictures need torch; the tables (camexp report, compare) start without it

    """The CAM legend, then two labelled rows of overlay panels: the best images (highest IoU), then the worst."""
    if not best and not worst:
        return None
    columns = max(len(best), len(worst))
    rows = []
    for label, tiles in (
        (f"Best {len(best)}: highest IoU of the predicted box with a GT box", best),
        (f"Worst {len(worst)}: lowest IoU", worst),
    ):
        if tiles:
            picture = viz.grid(list(tiles), columns=columns)
            rows += [viz.text_strip(picture.shape[1], label, bold=True), picture]
    legend = viz.cam_legend(max(r.shape[1] for r in rows), iou_threshold, cam_threshold, method)
    return viz.stack([legend, *rows])


PAPER_COLUMN_NOTE = " The paper's column is ILSVRC val, Tables 1-2 (other datasets: compare shape, not digits)."


def write_report(
    out_dir: str | Path,
    title: str,
    metrics: dict[str, float],
    prefix: str,
    network: str,
    pool: str,
    wsol: WSOLResult,
    best_tiles: Sequence[np.ndarray] = (),
    worst_tiles: Sequence[np.ndarray] = (),
    cam_threshold: float = 0.2,
    notes: Sequence[str] = (),
    method: str = "cam",
    iou_threshold: float = 0.5,
    baselines: dict[str, WSOLResult] | None = None,
) -> Path:
    """Write report.md, curves.png and extremes.png into `out_dir`; returns the markdown path."""
    from camexp import viz

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = plot_curves(wsol, out_dir / "curves.png", cam_threshold, title=f"{title}: box accuracy vs CAM threshold")
    picture = extremes_picture(best_tiles, worst_tiles, iou_threshold, cam_threshold, method)
    extremes = viz.save_png(picture, out_dir / "extremes.png") if picture is not None else None
    lines = [f"# {title}", ""]
    lines += [f"- {note}" for note in notes]
    paper = bool(PAPER_NAMES.get(paper_key(network, pool, method)))  # the table has a paper column
    lines += [
        "",
        "## All metrics, beside the paper" if paper else "## All metrics",
        "",
        results_table(metrics, prefix, network, pool, method),
        "",
        "Paper protocol (Zhou et al., CVPR 2016): the CAM upsampled to the input, pixels >= "
        f"{cam_threshold:g} x max, box of the largest connected component, IoU >= 0.5 with any GT box; "
        "error = 100 - accuracy."
        + (PAPER_COLUMN_NOTE if paper else ""),
        "",
        "## wsoleval protocol (Choe et al., CVPR 2020)",
        "",
        wsoleval_table(wsol, baselines),
        "",
        "Raw GT-class maps resized bicubically to 224 x 224 (float64), min-max normalized; thresholds "
        f"np.arange(0, 1, {wsol.cam_curve_interval:g}); "
        "boxes from OpenCV contours; numbers identical to github.com/clovaai/wsolevaluation on the same maps.",
        "",
    ]
    if baselines:
        lines += [
            "Sanity baselines on the same images: centre-Gaussian = a Gaussian map centred in the 224 x 224 frame "
            "(sigma = 56 px, a quarter of each side) scored as a score map by the same code; whole image = the box "
            "(0, 0, 223, 223) at every threshold (no map, so no PxAP).",
            "",
        ]
    if curves is not None:
        lines += ["## Accuracy versus CAM threshold", "", f"![accuracy vs threshold]({curves.name})", ""]
    if extremes is not None:
        lines += ["## Best and worst localizations", "", f"![best and worst]({extremes.name})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


# -- dashboards: each evaluation pass's per-class table and threshold curve (TensorBoard, W&B) ---------

PER_CLASS_COLUMNS = ("class", "images", "acc_top1", "loc_top1", "loc_gt_known")


def per_class_rows(class_names: Sequence[str], per_class: dict[str, list[float]]) -> list[list]:
    """One row per class in PER_CLASS_COLUMNS order (accuracies are None where undefined); `per_class` holds
    images, acc_top1, loc_top1, loc_gt_known: one value per class (an EvaluationSummary's)."""

    def value(key: str, i: int) -> float | None:
        v = per_class[key][i]
        return None if math.isnan(v) else round(v, 6)

    return [
        [name, int(per_class["images"][i]), value("acc_top1", i), value("loc_top1", i), value("loc_gt_known", i)]
        for i, name in enumerate(class_names)
    ]


def per_class_markdown(class_names: Sequence[str], per_class: dict[str, list[float]]) -> str:
    """The per-class rows as a markdown table, accuracies in percent."""
    lines = ["| " + " | ".join(PER_CLASS_COLUMNS) + " |", "|---|---:|---:|---:|---:|"]
    for name, images, *accs in per_class_rows(class_names, per_class):
        cells = ["-" if a is None else f"{100 * a:.1f}" for a in accs]
        lines.append(f"| {name} | {images} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def threshold_curve_figure(
    curve: dict[str, list[float]], split: str, epoch: int, cam_threshold: float | None = None
):
    """Matplotlib figure: GT-known localization accuracy (`curve["loc_gt_known"]`, fractions) against the CAM
    threshold (`curve["thresholds"]`) of one pass; a dashed line marks the paper rule's threshold."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.plot(curve["thresholds"], [100 * a for a in curve["loc_gt_known"]], marker="o", ms=3)
    if cam_threshold is not None:
        ax.axvline(cam_threshold, color="grey", ls="--", lw=1, label=f"paper rule ({cam_threshold:g})")
        ax.legend(loc="lower center", fontsize=8)
    ax.set_xlabel("CAM threshold (fraction of the map's max)")
    ax.set_ylabel("GT-known loc. accuracy %")
    ax.set_title(f"{split}: localization vs threshold (epoch {epoch})", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
