"""`camexp train | validate | synth | digits | compare | report | probe | text-demo ...` (also `python -m camexp`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from camexp.cli_evaluate import add_evaluate_parsers
from camexp.config import split_words
from camexp.errors import CamexpError, user_message
from camexp.outputs import output_folder

VERBOSE_HELP = "also print the libraries' messages (Lightning's banners, model summary, warnings): CAMEXP_VERBOSE=1"


def cmd_train(args: argparse.Namespace) -> int:
    from camexp import config
    from camexp.train import train

    files, overrides = split_words(args.config)
    cfg = config.load(files, overrides)
    train(cfg, run_dir_file=args.run_dir_file)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from camexp.evaluate import validate

    files, overrides = split_words(args.config)
    validate(args.checkpoint, overrides, files, out=args.out)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from camexp.data.synth import generate_synthloc, read_metadata

    before = read_metadata(args.out)
    out = generate_synthloc(
        args.out,
        seed=args.seed,
        n_train=args.n_train,
        n_val=args.n_val,
        size=args.size,
        num_classes=args.num_classes,
        version=args.version,
        part_dominance=args.part_dominance,
    )
    print(f"SynthLoc {_what_happened(before, read_metadata(out))} {out}")
    return 0


def cmd_digits(args: argparse.Namespace) -> int:
    from camexp.data.digits import generate_cluttered_mnist, read_metadata

    before = read_metadata(args.out)
    out = generate_cluttered_mnist(
        args.out,
        seed=args.seed,
        n_train=args.n_train,
        n_val=args.n_val,
        size=args.size,
        clutter=args.clutter,
        scale_min=args.scale_min,
        scale_max=args.scale_max,
    )
    print(f"Cluttered MNIST {_what_happened(before, read_metadata(out))} {out}")
    return 0


def _what_happened(before: dict | None, after: dict | None) -> str:
    """How a generator met its output folder, from the set's metadata before and after it ran."""
    if before is None:
        return "written to"
    if before == after:
        return "reused (the same parameters) at"
    return "regenerated (the set there had other parameters) at"


def cmd_compare(args: argparse.Namespace) -> int:
    from camexp.reports import compare_runs

    labels = args.labels or [Path(d).parent.name for d in args.run_dirs]
    print(compare_runs([Path(d) for d in args.run_dirs], labels))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from camexp.reports import check_split, read_results, results_table

    results = read_results(args.run_dir)
    check_split(results, args.split, args.run_dir)
    cfg_path = Path(args.run_dir) / "config.yaml"
    run_cfg = OmegaConf.load(cfg_path) if cfg_path.is_file() else OmegaConf.create()
    model = run_cfg.get("model", {"name": "", "pool": "avg"})
    method = run_cfg.get("eval", {}).get("method", "cam")
    print(results_table(results, args.split, model["name"], model["pool"], method))
    return 0


def cmd_cam(args: argparse.Namespace) -> int:
    from camexp.explainer import run_cam_command

    summary = run_cam_command(
        args.paths,
        args.model,
        args.ckpt,
        Path(args.out),
        top_k=args.top_k,
        classes=args.classes,
        threshold=args.threshold,
        batch_size=args.batch_size,
        num_workers=args.workers,
        overlays=not args.no_overlays,
        device=args.device,
    )
    for message in summary["skipped"]:
        print(f"skipped: {message}", file=sys.stderr)
    skipped = f", {len(summary['skipped'])} unreadable file(s) skipped" if summary["skipped"] else ""
    out = summary["out"]
    print(f"CAMs of {summary['images']} image(s) on {summary['device']}{skipped}")
    print(f"results  : {out / 'results.json'}")
    if not args.no_overlays:
        print(f"overlays : {out}/*.png")
    return 0 if summary["images"] else 1


def cmd_photos(args: argparse.Namespace) -> int:
    from camexp.data.photos import copy_photos

    files = copy_photos(output_folder(args.out, "--out"))
    print("\n".join(map(str, files)))
    print(f"{len(files)} packaged photos in {args.out}; try: camexp cam {args.out}", file=sys.stderr)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from camexp.reproduce import reproduce

    files, overrides = split_words(args.overrides)
    if files:
        raise CamexpError(
            f"camexp reproduce takes benchmarks with --benchmarks, not as positional words ({', '.join(files)}): "
            f"camexp reproduce --benchmarks {' '.join(files)} [key=value ...]."
        )
    report = reproduce(output_folder(args.out, "--out"), args.benchmarks, args.seeds, args.networks, overrides)
    print(report.read_text())
    print(f"report  : {report}\nfigure  : {report.parent / 'reproduce.png'}", file=sys.stderr)
    return 0


def _data_words(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """--data EXPERIMENT.yaml [MORE.yaml] [key=value ...] plus key=value words given after the backbone."""
    files, overrides = split_words([*(args.data or []), *args.overrides])
    return files, overrides


def cmd_finegrained(args: argparse.Namespace) -> int:
    from camexp.features.finegrained import finegrained_command

    files, overrides = _data_words(args)
    table, report = finegrained_command(
        args.backbone,
        files,
        overrides,
        args.out,
        split=args.split,
        cache_dir=None if args.no_cache else args.cache,
        input_size=args.input_size,
        threshold=args.threshold,
        batch_size=args.batch_size,
        device=args.device,
        overlays=args.overlays,
    )
    print(table)
    print(f"report  : {report}\nresults : {report.parent / 'results.json'}", file=sys.stderr)
    return 0


def cmd_units(args: argparse.Namespace) -> int:
    from camexp.features.units import units_command

    files, overrides = _data_words(args)
    table, report = units_command(
        args.backbone,
        files,
        overrides,
        args.out,
        classes=args.classes,
        top=args.top,
        images=args.images,
        patch=args.patch,
        use_svm=args.svm,
        svm_rank=args.svm_rank,
        split=args.split,
        ks=args.ks,
        within_class=args.within_class,
        cache_dir=None if args.no_cache else args.cache,
        input_size=args.input_size,
        threshold=args.threshold,
        batch_size=args.batch_size,
        device=args.device,
        wandb=args.wandb,
        wandb_project=args.wandb_project,
    )
    print(table)
    print(f"report  : {report}\ngrids   : {report.parent}/units_*.png", file=sys.stderr)
    return 0


def _add_backbone_options(p: argparse.ArgumentParser, out: str) -> None:
    """What `finegrained` and `units` share: the backbone, the data, the cache, where the results go."""
    from camexp.features.extract import FEATURE_CACHE

    p.add_argument("backbone", help="a `camexp train` checkpoint (.ckpt) or a registered network with packaged "
                   "weights (e.g. efficientnet_lite0)")  # fmt: skip
    p.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. data.root=/path)")
    p.add_argument("--data", nargs="+", required=True, metavar="EXPERIMENT.yaml",
                   help="experiment YAML(s) whose dataset to use, then any key=value overrides")  # fmt: skip
    p.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    p.add_argument("--split", default="val", choices=["val", "test"], help="evaluation split (default: val)")
    p.add_argument("--cache", default=FEATURE_CACHE, help="feature cache folder (default: %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="compute every feature again, write no cache")
    p.add_argument("--input-size", type=int, help="input side in pixels (default: the backbone's own)")
    p.add_argument("--threshold", type=float, default=0.2, help="paper rule: keep pixels >= this x max (0.2)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (32)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda when available)")


def cmd_probe(args: argparse.Namespace) -> int:
    """Linear probes on --data, or a concept detector on --positives/--negatives (camexp/features/)."""
    files, overrides = split_words([*(args.data or []), *args.overrides])
    cache = None if args.no_cache else args.cache
    if args.positives or args.negatives:
        from camexp.features.concepts import run_concept_probe

        if files or overrides:
            raise CamexpError(
                f"camexp probe takes either --data (linear probes on a dataset) or --positives/--negatives (a "
                f"concept detector), not both; drop {' '.join([*files, *overrides])} or the folders."
            )
        result = run_concept_probe(
            args.features, args.positives, args.negatives, args.out or "lightning_logs/concept_probe",
            boxes=args.boxes, rounds=args.rounds, cache_dir=cache, input_size=args.input_size,
            batch_size=args.batch_size, device=args.device, seed=args.seed,
        )  # fmt: skip
    else:
        from camexp.features.probes import run_probe

        result = run_probe(
            args.features, files, overrides, args.out or "lightning_logs/probe", split=args.split, cache_dir=cache,
            input_size=args.input_size, batch_size=args.batch_size, device=args.device,
        )  # fmt: skip
    print(result.table)
    print(f"report  : {result.report}\nresults : {result.out / 'results.json'}", file=sys.stderr)
    return 0


def cmd_text_demo(args: argparse.Namespace) -> int:
    from camexp.features.concepts import run_text_demo

    result = run_text_demo(
        args.out, features=args.features, n=args.n, size=args.size, seed=args.seed, rounds=args.rounds,
        cache_dir=None if args.no_cache else args.cache, input_size=args.input_size, device=args.device,
    )  # fmt: skip
    print(result.table)
    print(f"report  : {result.report}\nresults : {result.out / 'results.json'}", file=sys.stderr)
    return 0


def _add_probe_options(p: argparse.ArgumentParser) -> None:
    """The backbone and feature-cache options that `probe` and `text-demo` share."""
    from camexp.features.extract import FEATURE_CACHE

    p.add_argument("--cache", default=FEATURE_CACHE, help="feature cache folder (default: %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="compute every feature again, write no cache")
    p.add_argument("--input-size", type=int, help="input side in pixels (default: the backbone's own)")
    p.add_argument("--rounds", type=int, default=3, help="concept detector: hard-negative mining rounds (3)")
    p.add_argument("--seed", type=int, default=0, help="concept detector: held-out split and first negatives (0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda when available)")


def _add_run_parsers(sub: argparse._SubParsersAction) -> None:
    """`train` and `validate`: a run and its checkpoints."""
    p = sub.add_parser("train", help="train and evaluate an experiment")
    p.add_argument("config", nargs="+", help="experiments/NAME.yaml [MORE.yaml ...] [key=value ...]")
    p.add_argument("--run-dir-file", help="write the run directory path into this file when done")
    p.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("validate", help="evaluate a checkpoint on the validation split (1..N processes)")
    p.add_argument("checkpoint", help="a .ckpt file written by `camexp train`")
    p.add_argument("config", nargs="*", help="[experiments/NAME.yaml] [key=value ...] (default: the run's config.yaml)")
    p.add_argument("--out", help="also write the metrics as JSON into this file")
    p.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(func=cmd_validate)


def _add_benchmark_parsers(sub: argparse._SubParsersAction) -> None:
    """`synth` and `digits`: the embedded benchmarks, written in the CUB-200-2011 layout."""
    p = sub.add_parser("synth", help="generate the SynthLoc benchmark in the CUB-200-2011 layout")
    p.add_argument("--out", required=True, help="destination folder (written atomically, CUB layout)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same bytes (0)")
    p.add_argument("--n-train", type=int, default=2000, help="training images (2000)")
    p.add_argument("--n-val", type=int, default=500, help="validation images (500)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (128)")
    p.add_argument("--num-classes", type=int, default=10, help="object classes (10)")
    p.add_argument("--version", type=int, default=2, help="2 (default) or 1 (the head alone identifies the class)")
    p.add_argument("--part-dominance", type=float, default=0.5, help="version 2 dial: 0 body .. 1 head")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("digits", help="generate the cluttered MNIST benchmark in the CUB-200-2011 layout")
    p.add_argument("--out", required=True, help="destination folder (written atomically, CUB layout)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same bytes (0)")
    p.add_argument("--n-train", type=int, default=3000, help="training images (3000)")
    p.add_argument("--n-val", type=int, default=1000, help="validation images (1000)")
    p.add_argument("--size", type=int, default=96, help="canvas side in pixels (96)")
    p.add_argument("--clutter", type=int, default=4, help="fragments of other digits per image")
    p.add_argument("--scale-min", type=float, default=0.25, help="smallest digit side / canvas side")
    p.add_argument("--scale-max", type=float, default=0.6, help="largest digit side / canvas side")
    p.set_defaults(func=cmd_digits)


def _add_table_parsers(sub: argparse._SubParsersAction) -> None:
    """`compare` and `report`: tables of finished runs."""
    p = sub.add_parser("compare", help="side-by-side table of finished runs")
    p.add_argument("run_dirs", nargs="+", help="run directories (each with results.json and config.yaml)")
    p.add_argument("--labels", nargs="+", help="one column label per run (default: each run's experiment name)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="print a finished run's results table")
    p.add_argument("run_dir", help="a run directory written by `camexp train` (holds results.json)")
    p.add_argument("--split", default="val", help="which split's metrics: val (default) or test")
    p.set_defaults(func=cmd_report)


def _add_image_parsers(sub: argparse._SubParsersAction) -> None:
    """`cam` and `photos`: CAMs of any image, and the real photos that packages ship."""
    p = sub.add_parser(
        "cam",
        help="CAMs, boxes and overlays for any images or folders",
        description="Class activation maps of the top-k classes (or --classes) for every image: the paper's box "
        "and Table 3's tight/loose boxes in original-image pixels, one overlay PNG per image, and results.json.",
    )
    p.add_argument("paths", nargs="+", help="image files and folders (searched recursively)")
    p.add_argument("--model", help="a registered network with packaged ImageNet weights (default: efficientnet_lite0)")
    p.add_argument("--ckpt", help="a checkpoint written by `camexp train` (class names and input size from its run)")
    p.add_argument("--top-k", type=int, default=5, help="CAMs of the k most probable classes (default 5)")
    p.add_argument("--classes", type=int, nargs="+", help="CAMs of these class ids instead of the top-k")
    p.add_argument("--threshold", type=float, default=0.2, help="paper rule: keep pixels >= this x max (0.2)")
    p.add_argument("--out", default="cam_out", help="output folder (default: cam_out)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (16)")
    p.add_argument("--workers", type=int, default=2, help="image decoding processes (2)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda when available)")
    p.add_argument("--no-overlays", action="store_true", help="write results.json only")
    p.set_defaults(func=cmd_cam)

    p = sub.add_parser("photos", help="copy the real photos that installed packages ship into a folder")
    p.add_argument("--out", default="photos", help="destination folder (default: photos)")
    p.set_defaults(func=cmd_photos)


def _add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    """`reproduce`: the paper's comparisons over seeds."""
    from camexp.reproduce import ARMS, DEFAULT_BENCHMARKS, DEFAULT_SEEDS

    p = sub.add_parser(
        "reproduce",
        help="the paper's comparisons (GAP/GMP, GAP/FC, CAM/Backprop, Table 3) on the embedded benchmarks, over seeds",
        description="Trains CPU-sized AlexNet-family networks (GAP, GMP, FC) on each benchmark for each seed, then "
        "writes report.md (mean ± std, the paper's numbers and orderings beside ours), reproduce.png and overlays "
        "into --out. Finished runs with the same settings are reused.",
    )
    p.add_argument("overrides", nargs="*", help="key=value settings applied to every run (after the network's)")
    p.add_argument("--out", default="lightning_logs/reproduce", help="report folder (default: %(default)s)")
    p.add_argument("--benchmarks", nargs="+", default=list(DEFAULT_BENCHMARKS), help="experiment YAMLs (default: both)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), help="training seeds (default: 0 1 2)")
    p.add_argument("--networks", nargs="+", choices=list(ARMS), default=list(ARMS), help="arms (default: gap gmp fc)")
    p.set_defaults(func=cmd_reproduce)


def _add_feature_parsers(sub: argparse._SubParsersAction) -> None:
    """`finegrained`, `units`, `probe`, `text-demo`: the paper's section 4."""
    p = sub.add_parser(
        "finegrained",
        help="fine-grained recognition with CAM crops: linear SVMs on full images, CAM-box and GT-box crops",
        description="The paper's CUB experiment on any dataset: a linear SVM on the backbone's pooled features of the "
        "full images; crops by the CAM box of the class that SVM predicts (train and evaluation images); crops by the "
        "GT box. One table beside the paper's 63.0 / 67.8 / 70.5 / 41.0; report.md, results.json and an overlay PNG.",
    )
    _add_backbone_options(p, "lightning_logs/finegrained")
    p.add_argument("--overlays", type=int, default=6, help="images in finegrained_overlays.png (0: none; default 6)")
    p.set_defaults(func=cmd_finegrained)

    p = sub.add_parser(
        "units",
        help="class-specific units: top units per class by w_k^c, their top images and peak patches, top-k CAMs",
        description="For each class, the last-conv units ranked by the classifier weight w_k^c (or, with --svm, a "
        "linear SVM's raw-space weights fitted on the train split): a grid of each top unit's maps on the images "
        "where it fires most and the patches under its peaks; and the CAM rebuilt from the top-k units against the "
        "full CAM. report.md, results.json, units_<class>.png (and a W&B run with --wandb).",
    )
    _add_backbone_options(p, "lightning_logs/units")
    p.add_argument("--classes", type=int, nargs="+", help="class ids (default: all when <= 20, else the 10 most "
                   "often predicted)")  # fmt: skip
    p.add_argument("--top", type=int, default=3, help="units per class (default 3)")
    p.add_argument("--images", type=int, default=4, help="top images per unit (default 4)")
    p.add_argument("--patch", type=int, help="peak patch side in input pixels (default: a quarter of the input)")
    p.add_argument("--svm", action="store_true", help="rank by a linear SVM fitted on the train split")
    p.add_argument(
        "--svm-rank",
        choices=["raw", "standardized"],
        default="raw",
        help="with --svm: rank by the raw-space weight (default) or by the SVM's coefficient on standardized "
        "features (w_k x std_k; raw-space weights favour units that hardly vary)",
    )
    p.add_argument("--ks", type=int, nargs="+", help="units kept in the combination table (default 1 3 10 30 100 "
                   "and all)")  # fmt: skip
    p.add_argument("--within-class", action="store_true", help="top images among the class's own images only")
    p.add_argument("--wandb", action="store_true", help="also log the tables and grids to W&B (WANDB_MODE=offline "
                   "works)")  # fmt: skip
    p.add_argument("--wandb-project", default="camexp-units", help="W&B project (default: %(default)s)")
    p.set_defaults(func=cmd_units)

    p = sub.add_parser(
        "probe",
        help="linear SVMs on a backbone's pooled features, and the CAMs of their weights (paper section 4)",
        description="With --data: one-vs-rest linear SVMs on the pooled last-conv features of the dataset's train "
        "split (features cached), classification accuracy, and the CAM of each class from the SVM weights scored "
        "as `camexp train` validates (paper box rule, top-1 / GT-known localization, MaxBoxAccV2 where boxes exist, "
        "centre-Gaussian baseline, overlays). With --positives/--negatives: one linear concept detector trained "
        "with hard-negative mining, its CAM localizing the concept. report.md, results.json and overlays in --out.",
    )
    p.add_argument("overrides", nargs="*", help="key=value config overrides of the --data experiment")
    p.add_argument("--features", required=True, metavar="CKPT_OR_MODEL",
                   help="a `camexp train` checkpoint (.ckpt) of a GAP network or a registered network with "
                   "packaged weights (e.g. efficientnet_lite0)")  # fmt: skip
    p.add_argument("--data", nargs="+", metavar="EXPERIMENT.yaml", help="experiment YAML(s) whose dataset to "
                   "probe, then any key=value overrides")  # fmt: skip
    p.add_argument("--split", default="val", choices=["val", "test"], help="evaluation split (default: val)")
    p.add_argument("--positives", help="concept detector: folder of images showing the concept")
    p.add_argument("--negatives", help="concept detector: folder of images without it")
    p.add_argument("--boxes", help="concept detector: '<file under --positives> x0 y0 x1 y1' per line (optional)")
    p.add_argument("--out", help="output folder (default: lightning_logs/probe or lightning_logs/concept_probe)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (32)")
    _add_probe_options(p)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser(
        "text-demo",
        help="the paper's weakly supervised text detector on generated text images",
        description="Renders text (OpenCV fonts, random places, sizes and angles) onto crops of packaged photos, "
        "the same backgrounds without text as negatives, with exact text boxes; trains a concept detector with "
        "hard-negative mining on a backbone's features and reports how often its CAM box hits the text box "
        "(IoU >= 0.5) beside the centre-Gaussian baseline.",
    )
    p.add_argument("--out", default="lightning_logs/text_demo", help="output folder (default: %(default)s)")
    p.add_argument("--features", default="efficientnet_lite0", metavar="CKPT_OR_MODEL",
                   help="backbone (default: %(default)s)")  # fmt: skip
    p.add_argument("--n", type=int, default=100, help="backgrounds: n positives and n negatives (default 100)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    _add_probe_options(p)
    p.set_defaults(func=cmd_text_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camexp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, help="the command (camexp COMMAND --help)")

    _add_run_parsers(sub)
    _add_benchmark_parsers(sub)
    _add_table_parsers(sub)
    _add_image_parsers(sub)
    _add_reproduce_parser(sub)
    _add_feature_parsers(sub)
    add_evaluate_parsers(sub)  # `evaluate`, `evaluate-maps` (camexp/cli_evaluate.py)
    parser.subcommands = sub.choices  # {name: its parser}, for parse_args
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Like parser.parse_args, but a subcommand's words may follow its options
    (`camexp train x.yaml --run-dir-file f trainer.max_epochs=1`): argparse stops a positional list at
    the first option, and parse_intermixed_args, which does not, cannot take subcommands, so the
    subcommand's own parser reparses its words when the first pass left some over."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        words = list(sys.argv[1:] if argv is None else argv)
        rest = words[words.index(args.command) + 1 :]
        args = parser.subcommands[args.command].parse_intermixed_args(rest, argparse.Namespace(command=args.command))
    return args


def _verbose(args: argparse.Namespace):
    """CAMEXP_VERBOSE=1 while the command runs when it was given --verbose."""
    if not getattr(args, "verbose", False):
        return contextlib.nullcontext()
    from camexp.console import verbose_console

    return verbose_console()


def main(argv: list[str] | None = None) -> int:
    """Run one command: its status; 2 with one `camexp: error:` line for a CamexpError; 141 (128 + SIGPIPE,
    as a shell tool killed by it) and no traceback when the reader of stdout went away (`camexp report | head`)."""
    args = parse_args(build_parser(), argv)
    try:
        with _verbose(args):
            status = args.func(args)
            sys.stdout.flush()  # inside the try: output still buffered would meet a closed pipe at exit
            return status
    except BrokenPipeError:
        return _reader_gone()
    except CamexpError as err:
        print(f"camexp: error: {user_message(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if "Original Traceback" in str(err) and "camexp.errors" in str(err):
            print(f"camexp: error: {user_message(err)}", file=sys.stderr)
            return 2
        raise


def _reader_gone() -> int:
    """stdout's reader closed the pipe: point stdout at /dev/null so the interpreter's last flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file descriptor
        pass
    return 128 + signal.SIGPIPE
