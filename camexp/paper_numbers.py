"""The paper's published numbers (Zhou et al., CVPR 2016), as data, so reports print them beside ours.

Errors in %, ILSVRC val (classification: Table 1; localization: Table 2).
"""

from __future__ import annotations

# network name (camexp registry) -> (top-1 error, top-5 error)
CLASSIFICATION_ERROR: dict[str, tuple[float, float]] = {
    "vgg16_gap": (33.4, 12.2),
    "googlenet_gap": (35.0, 13.2),
    "alexnet_star_gap": (44.9, 20.9),
    "alexnet_gap": (51.1, 26.3),
    "googlenet": (31.9, 11.3),
    "vgg16": (31.2, 11.4),
    "alexnet": (42.6, 19.5),
    "nin": (41.9, 19.6),
    "googlenet_gmp": (35.6, 13.9),
}

LOCALIZATION_ERROR: dict[str, tuple[float, float]] = {
    "googlenet_gap": (56.40, 43.00),
    "vgg16_gap": (57.20, 45.14),
    "googlenet": (60.09, 49.34),
    "alexnet_star_gap": (63.75, 49.53),
    "alexnet_gap": (67.19, 52.16),
    "nin": (65.47, 54.19),
    "backprop_googlenet": (61.31, 50.55),
    "backprop_vgg16": (61.12, 51.46),
    "backprop_alexnet": (65.17, 52.64),
    "googlenet_gmp": (57.78, 45.26),
}

# Table 3: top-5 localization error on the ILSVRC *test* set, GoogLeNet-GAP with and without the heuristic boxes.
TOP5_LOC_ERROR_TEST = {"heuristic": 37.1, "plain": 42.9}

PAPER_NAMES = {
    "vgg16_gap": "VGGnet-GAP",
    "googlenet_gap": "GoogLeNet-GAP",
    "alexnet_star_gap": "AlexNet*-GAP",
    "alexnet_gap": "AlexNet-GAP",
    "googlenet": "GoogLeNet",
    "vgg16": "VGGnet",
    "alexnet": "AlexNet",
    "nin": "NIN",
    "googlenet_gmp": "GoogLeNet-GMP",
    "backprop_alexnet": "Backprop on AlexNet",
    "backprop_vgg16": "Backprop on VGGnet",
    "backprop_googlenet": "Backprop on GoogLeNet",
}


def paper_key(network: str, pool: str = "avg", method: str = "cam") -> str:
    """Registry name -> paper table key (googlenet_gap with pool=max is the paper's GoogLeNet-GMP;
    eval.method=backprop on alexnet / vgg16 / googlenet is the "Backprop on ..." row)."""
    if method == "backprop":
        return f"backprop_{network}"
    if network == "googlenet_gap" and pool == "max":
        return "googlenet_gmp"
    return network


def paper_errors(network: str, pool: str = "avg", method: str = "cam") -> dict[str, float]:
    """{metric: paper error %} for a network, in the keys our logs use (empty if the paper has no row)."""
    key = paper_key(network, pool, method)
    out: dict[str, float] = {}
    if key in CLASSIFICATION_ERROR:
        out["acc_top1"], out["acc_top5"] = CLASSIFICATION_ERROR[key]
    if key in LOCALIZATION_ERROR:
        out["loc_top1"], out["loc_top5"] = LOCALIZATION_ERROR[key]
    return out


# Section 4 (fine-grained recognition), CUB-200-2011 (5,994 train / 5,794 test), accuracy % of a linear SVM on
# GoogLeNet-GAP features: full image, CAM-box crops (train and test), GT-box crops; and the share of test images
# whose CAM box has IoU > 0.5 with the GT box.
FINEGRAINED_CUB = {"full_image": 63.0, "cam_crop": 67.8, "gt_crop": 70.5, "cam_box_iou50": 41.0}
