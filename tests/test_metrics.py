"""CAMLocalizationMetrics by hand; per-class counts and the accuracy-versus-threshold curve: right values, and
sums that reduce like DDP."""

import torch

from camexp.localization import best_iou_per_image, box_hits_sweep, boxes_from_cams
from camexp.metrics import (
    DEFAULT_CURVE_THRESHOLDS,
    CAMLocalizationMetrics,
    PerClassLocalization,
    ThresholdCurve,
    localization_counts,
)


def test_counts_by_hand():
    logits = torch.tensor(
        [
            [9.0, 1, 2, 3, 4, 5],  # top1 = 0
            [0.0, 9, 8, 7, 6, 5],  # top1 = 1; class 5 is 5th
            [0.0, 1, 2, 3, 4, 9],  # top1 = 5; class 0 not in top 5
        ]
    )
    labels = torch.tensor([0, 5, 0])
    ious = torch.tensor([0.7, 0.5, 0.9])
    counts = localization_counts(logits, labels, ious, 0.5).tolist()
    # total, top1, top5, boxed, loc_top1, loc_top5, gt_known, heuristic (not given)
    assert counts == [3, 1, 2, 3, 1, 2, 3, 0]


def test_metric_accumulates_and_skips_images_without_boxes():
    metric = CAMLocalizationMetrics(0.5)
    metric.update(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]), torch.tensor([0.6, -1.0]))
    metric.update(torch.tensor([[2.0, 1.0]]), torch.tensor([0]), torch.tensor([0.4]))
    out = metric.compute()
    assert out["acc_top1"].item() == 2 / 3
    assert out["acc_top5"].item() == 1.0  # 2 classes: top-5 is everything
    assert out["loc_gt_known"].item() == 0.5  # 1 hit over the 2 images with boxes
    assert out["loc_top1"].item() == 0.5


def test_boxless_data_reports_classification_only():
    metric = CAMLocalizationMetrics()
    metric.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), None)
    assert set(metric.compute()) == {"acc_top1", "acc_top5", "num_images"}


def _batch(n=12, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    ious = torch.rand(n, generator=g)
    ious[0] = -1.0  # an image without boxes
    return logits, labels, ious


def test_per_class_counts_by_hand():
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    labels = torch.tensor([0, 0, 1, 2])
    ious = torch.tensor([0.9, 0.2, 0.7, -1.0])  # class 2's only image has no box
    metric = PerClassLocalization(num_classes=3)
    metric.update(logits, labels, ious)
    out = {k: v.tolist() for k, v in metric.compute().items()}
    assert out["images"] == [2, 1, 1]
    assert out["acc_top1"] == [1.0, 1.0, 1.0]
    assert out["loc_top1"][:2] == [0.5, 1.0] and out["loc_gt_known"][:2] == [0.5, 1.0]
    assert torch.isnan(torch.tensor(out["loc_top1"][2]))  # undefined, not 0


def test_per_class_counts_add_up_to_the_overall_metrics():
    logits, labels, ious = _batch(n=40)
    per_class, overall = PerClassLocalization(num_classes=4), CAMLocalizationMetrics()
    per_class.update(logits, labels, ious)
    overall.update(logits, labels, ious)
    counts = per_class.counts.sum(0)  # images, top1, boxed, loc_top1, gt_known
    assert counts.tolist() == [overall.total, overall.top1, overall.boxed, overall.loc_top1, overall.gt_known]


def test_two_shards_summed_equal_one_pass():
    """What DDP does with sum states: rank shards of different sizes (odd total) give the one-process counts."""
    logits, labels, ious = _batch(n=21, seed=3)
    whole, rank0, rank1 = (PerClassLocalization(num_classes=4) for _ in range(3))
    whole.update(logits, labels, ious)
    rank0.update(logits[0::2], labels[0::2], ious[0::2])  # ShardSampler: 11 images
    rank1.update(logits[1::2], labels[1::2], ious[1::2])  # 10 images
    assert torch.equal(rank0.counts + rank1.counts, whole.counts)


def _cams_and_boxes(n=6, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    cams = torch.rand(n, size // 4, size // 4, generator=g)
    cams = torch.nn.functional.interpolate(cams[:, None], size=(size, size), mode="bilinear")[:, 0]
    low, high = cams.amin((1, 2), keepdim=True), cams.amax((1, 2), keepdim=True)
    cams = (cams - low) / (high - low)
    boxes = torch.zeros(n, 2, 4)
    boxes[:, 0] = torch.tensor([4.0, 4.0, 20.0, 24.0])
    boxes[:, 1] = torch.tensor([10.0, 8.0, 30.0, 30.0])
    counts = torch.tensor([1, 2, 1, 2, 0, 1])[:n]  # image 4 has no box
    return cams, boxes, counts


def test_curve_at_the_paper_threshold_equals_gt_known_of_the_paper_rule():
    cams, boxes, counts = _cams_and_boxes()
    curve = ThresholdCurve(iou_threshold=0.3)
    curve.update(cams, boxes, counts)
    out = curve.compute()
    assert out["thresholds"].tolist() == list(DEFAULT_CURVE_THRESHOLDS)
    ious = best_iou_per_image(boxes_from_cams(cams, 0.2), boxes, counts)
    expected = (ious >= 0.3).sum() / (counts > 0).sum()
    at = list(DEFAULT_CURVE_THRESHOLDS).index(0.2)
    assert out["loc_gt_known"][at] == expected.double()
    assert curve.boxed == 5
    assert 0 < out["loc_gt_known"].max() <= 1


def test_curve_from_given_hits_equals_its_own_sweep():
    cams, boxes, counts = _cams_and_boxes()
    own, given = ThresholdCurve(iou_threshold=0.3), ThresholdCurve(iou_threshold=0.3)
    own.update(cams, boxes, counts)
    given.update(cams, boxes, counts, hits=box_hits_sweep(cams, boxes, counts, given.thresholds, 0.3))
    assert torch.equal(own.hits, given.hits) and torch.equal(own.boxed, given.boxed)


def test_curve_shards_sum_to_one_pass():
    cams, boxes, counts = _cams_and_boxes()
    whole, a, b = (ThresholdCurve(iou_threshold=0.3) for _ in range(3))
    whole.update(cams, boxes, counts)
    a.update(cams[:4], boxes[:4], counts[:4])
    b.update(cams[4:], boxes[4:], counts[4:])
    assert torch.equal(a.hits + b.hits, whole.hits) and a.boxed + b.boxed == whole.boxed
