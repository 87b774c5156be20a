import torch

from camexp.metrics import CAMLocalizationMetrics, localization_counts


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
