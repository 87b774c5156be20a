"""The `camexp evaluate` and `camexp evaluate-maps` subcommands (kept here so cli.py stays a short index)."""

from __future__ import annotations

import argparse

from camexp.errors import CamexpError
from camexp.outputs import output_file
from camexp.wsol.protocol import CAM_CURVE_INTERVAL, IOU_THRESHOLDS_V2, V1_IOU, check_settings


def cmd_evaluate_maps(args: argparse.Namespace) -> int:
    from camexp.wsol.evaluate_maps import evaluate_maps

    heldout = None
    if bool(args.heldout_metadata) != bool(args.heldout_maps):
        raise CamexpError(
            "--heldout-metadata and --heldout-maps go together: give both (the held-out split's "
            "metadata folder and its maps folder), or neither."
        )
    check_settings(args.cam_curve_interval, args.iou, "--cam-curve-interval", "--iou")
    if args.json:
        output_file(args.json, "--json")  # before the scoring pass
    if args.heldout_metadata:
        heldout = (args.heldout_metadata, args.heldout_maps)
    _, text = evaluate_maps(
        args.metadata,
        args.maps,
        mask_root=args.mask_root,
        cam_curve_interval=args.cam_curve_interval,
        iou_thresholds=args.iou,
        multi_contour=args.multi_contour,
        heldout=heldout,
        heldout_mask_root=args.heldout_mask_root,
        json_path=args.json,
        progress=not args.no_progress,
    )
    print(text)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from camexp.evaluate import evaluate_checkpoint

    check_settings(args.cam_curve_interval, [V1_IOU], "--cam-curve-interval", "--iou")
    evaluate_checkpoint(
        args.checkpoint,
        args.config,
        split=args.split,
        out_dir=args.out,
        save_maps=args.save_maps,
        cam_curve_interval=args.cam_curve_interval,
    )
    return 0


def add_evaluate_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `evaluate` and `evaluate-maps` on the main parser's subcommands."""
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a split: both protocols, score maps, report (markdown + PNG)",
        description="Evaluate CKPT with the data config of its run (checkpoints/../config.yaml) plus overrides.",
    )
    p.add_argument("checkpoint", help="path/to/run/checkpoints/last.ckpt")
    p.add_argument("config", nargs="*", help="[EXPERIMENT.yaml ...] [key=value ...] (default: the run's config.yaml)")
    p.add_argument("--split", choices=("val", "test"), default="val", help="data.val_split or data.test_split")
    p.add_argument("--out", help="output folder (default: <run dir>/eval_<split>)")
    p.add_argument("--save-maps", action="store_true", help="also save <out>/maps/<image_id>.npy + <out>/metadata/")
    p.add_argument(
        "--cam-curve-interval", type=float, default=CAM_CURVE_INTERVAL, help="wsoleval threshold step (0.001)"
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print the libraries' messages (Lightning's banners, warnings): CAMEXP_VERBOSE=1",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "evaluate-maps",
        help="score saved <image_id>.npy maps against wsolevaluation metadata (MaxBoxAcc, MaxBoxAccV2, PxAP)",
        description="Score maps exactly as github.com/clovaai/wsolevaluation does (see docs/evaluate.md).",
    )
    p.add_argument("--metadata", required=True, help="split folder: image_ids.txt, image_sizes.txt, localization.txt")
    p.add_argument("--maps", required=True, help="folder of <image_id>.npy score maps (subfolders mirrored)")
    p.add_argument("--mask-root", help="folder that mask paths are relative to (default: --metadata)")
    p.add_argument("--protocol", choices=("wsoleval",), default="wsoleval", help="the scoring protocol (wsoleval)")
    p.add_argument("--json", help="write the numbers (and the raw counts) to this file")
    p.add_argument("--cam-curve-interval", type=float, default=CAM_CURVE_INTERVAL, help="threshold step (0.001)")
    p.add_argument("--iou", type=int, nargs="+", default=list(IOU_THRESHOLDS_V2), help="MaxBoxAccV2 IoUs, percent")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument(
        "--multi-contour",
        dest="multi_contour",
        action="store_true",
        default=True,
        help="MaxBoxAccV2 boxes from every contour (the definition; default)",
    )
    rule.add_argument(
        "--largest",
        dest="multi_contour",
        action="store_false",
        help="MaxBoxAccV2 rows from the largest contour only (V1's rule)",
    )
    p.add_argument(
        "--heldout-metadata",
        help="held-out protocol: a second split (e.g. test), scored at the "
        "thresholds chosen on --metadata (e.g. val / train-fullsup)",
    )
    p.add_argument("--heldout-maps", help="the held-out split's maps")
    p.add_argument("--heldout-mask-root", help="mask root of the held-out split (default: --heldout-metadata)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate_maps)
