"""Per-image agreement of one checkpoint's localization on two devices (e.g. GPU vs CPU), fp32 on both.

For every validation image: the top-1 class and the paper-rule box of the GT class's CAM (GT-known), its IoU
with the GT boxes and whether it hits (IoU >= 0.5). Images whose hit differs are listed with both IoUs and
how far their CAMs sit from the threshold cut, so a difference can be traced to rounding at a threshold.
Also images/s of the forward pass on each device.

    python benchmarks/device_agreement.py RUN/checkpoints/last.ckpt --devices cuda cpu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from camexp.cam import class_activation_maps, normalize_cams, upsample_cams
from camexp.console import quiet_console
from camexp.evaluate import checkpoint_config
from camexp.explainer import load_explainer
from camexp.localization import best_iou_per_image, boxes_from_cams
from camexp.wiring import build_data


@torch.inference_mode()
def per_image(ckpt: Path, device: str, threshold: float, batches) -> dict[str, torch.Tensor | float]:
    net = load_explainer(ckpt=ckpt, device=device).net
    top1, ious, margins, seconds, count = [], [], [], 0.0, 0
    for batch in batches:
        images = batch["image"].to(device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        features = net.forward_features(images)
        logits = net.forward_head(features)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds += time.perf_counter() - started
        count += len(images)
        cams = class_activation_maps(features, net.classifier.weight, batch["label"].to(device))
        maps = normalize_cams(upsample_cams(cams, images.shape[-2:])).float().cpu()
        boxes = boxes_from_cams(maps, threshold)
        ious.append(best_iou_per_image(boxes, batch["boxes"], batch["box_count"]))
        margins.append((maps - threshold).abs().flatten(1).amin(1))  # the pixel closest to the cut
        top1.append(logits.argmax(1).cpu())
    return {
        "top1": torch.cat(top1),
        "iou": torch.cat(ious),
        "margin": torch.cat(margins),
        "images_per_s": count / seconds,
    }


@quiet_console()  # the libraries' chatter off: the tables alone on stdout
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--devices", nargs=2, default=["cuda", "cpu"])
    parser.add_argument("--out", help="write the comparison as JSON here")
    args = parser.parse_args()
    ckpt = Path(args.checkpoint)
    cfg = checkpoint_config(ckpt, [], ["data.num_workers=0"], "validate")
    datamodule = build_data(cfg, "validate")
    batches = list(datamodule.val_dataloader())  # the same decoded batches for both devices
    threshold, iou_threshold = cfg.eval.cam_threshold, cfg.eval.iou_threshold
    a, b = (per_image(ckpt, device, threshold, batches) for device in args.devices)
    hit_a, hit_b = a["iou"] >= iou_threshold, b["iou"] >= iou_threshold
    differ = torch.nonzero(hit_a != hit_b).flatten().tolist()
    report = {
        "images": len(hit_a),
        "devices": args.devices,
        "loc_gt_known_hits": [int(hit_a.sum()), int(hit_b.sum())],
        "top1_agree": int((a["top1"] == b["top1"]).sum()),
        "images_per_s_forward": [round(a["images_per_s"], 1), round(b["images_per_s"], 1)],
        "max_abs_iou_difference": float((a["iou"] - b["iou"]).abs().max()),
        "differing_images": [
            {
                "index": i,
                "iou": [round(float(a["iou"][i]), 6), round(float(b["iou"][i]), 6)],
                "closest_pixel_to_cut": [float(a["margin"][i]), float(b["margin"][i])],
            }
            for i in differ
        ],
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
