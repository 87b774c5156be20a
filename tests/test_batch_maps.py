"""The per-batch map cache the callbacks share, and the overlay helpers both callbacks draw with."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from camexp.callbacks import batch_maps
from camexp.callbacks.batch_maps import BATCH_MAPS_KEY, BatchMaps
from camexp.callbacks.overlays import display_name, overlay_samples
from camexp.cam import class_activation_maps, normalize_cams, upsample_cams
from camexp.localization import best_iou_per_image, boxes_from_cams


def tiny_batch(n: int = 3, k: int = 4, classes: int = 5, size: int = 32):
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(n, k, 7, 7, generator=generator)
    module = SimpleNamespace(class_weights=torch.randn(classes, k, generator=generator))
    boxes = torch.tensor([[[2.0, 3.0, 20.0, 25.0], [0, 0, 0, 0]]] * n)
    batch = {
        "image": torch.rand(n, 3, size, size, generator=generator),
        "label": torch.tensor([1, 4, 0][:n]),
        "boxes": boxes,
        "box_count": torch.tensor([1, 1, 0][:n]),
        "index": torch.arange(n),
    }
    return module, {"logits": torch.randn(n, classes, generator=generator), "features": features}, batch


def test_the_callbacks_of_a_batch_share_one_batch_maps_computed_once(monkeypatch):
    module, outputs, batch = tiny_batch()
    calls = []

    def counted(*args):
        calls.append(1)
        return class_activation_maps(*args)

    monkeypatch.setattr(batch_maps, "class_activation_maps", counted)
    first = BatchMaps.of(module, outputs, batch, "cam")
    second = BatchMaps.of(module, outputs, batch, "cam")  # the next callback of the same batch
    assert second is first and outputs[BATCH_MAPS_KEY] is first
    assert set(outputs) == {"logits", "features", BATCH_MAPS_KEY}  # one documented key, nothing else
    raw, cams = first.raw, second.cams
    assert len(calls) == 1
    expected_raw = class_activation_maps(outputs["features"], module.class_weights, batch["label"])
    torch.testing.assert_close(raw, expected_raw)
    torch.testing.assert_close(cams, normalize_cams(upsample_cams(expected_raw, (32, 32))))
    assert cams.shape == (3, 32, 32) and float(cams.amin()) == 0.0 and float(cams.amax()) == 1.0


def test_paper_boxes_are_computed_once_per_threshold_or_taken_from_the_callback_that_had_them():
    module, outputs, batch = tiny_batch()
    maps = BatchMaps.of(module, outputs, batch, "cam")
    boxes, ious = maps.paper_boxes(0.2)
    torch.testing.assert_close(boxes, boxes_from_cams(maps.cams, 0.2))
    torch.testing.assert_close(ious, best_iou_per_image(boxes, batch["boxes"], batch["box_count"]))
    assert float(ious[2]) == -1  # no GT box
    assert maps.paper_boxes(0.2)[0] is boxes
    kept = (torch.zeros(3, 4), torch.ones(3))
    maps.keep_paper_boxes(0.5, *kept)  # e.g. CAMCallback's, from its sweep
    assert maps.paper_boxes(0.5) == kept


def test_callbacks_that_disagree_on_the_map_method_are_refused():
    module, outputs, batch = tiny_batch()
    BatchMaps.of(module, outputs, batch, "cam")
    with pytest.raises(ValueError, match="disagree on the map method"):
        BatchMaps.of(module, outputs, batch, "backprop")


def test_display_name_drops_cub_number_prefix_only():
    names = ["001.Black_footed_Albatross", "Checker_Blue_Tri", "v1.5", "12.5"]
    assert [display_name(names, i) for i in range(4)] == ["Black_footed_Albatross", "Checker_Blue_Tri", "v1.5", "12.5"]
    assert display_name(names, 7) == "7"  # unnamed index


def test_overlay_samples_carry_caption_boxes_and_draw_a_panel():
    module, outputs, batch = tiny_batch()
    maps = BatchMaps.of(module, outputs, batch, "cam")
    boxes, ious = maps.paper_boxes(0.2)
    names = ["001.a", "002.b", "003.c", "004.d", "005.e"]
    samples = overlay_samples(
        batch, [0, 2], maps.cams, boxes, [float(ious[0]), None, None], [1, 2, 3], names, (0.5,) * 3, (0.25,) * 3, 0.5
    )
    assert [s.label for s in samples] == [1, 0] and [s.predicted for s in samples] == [1, 3]
    assert samples[0].caption[0] == "GT b" and samples[0].caption[-1].startswith("cls ok, IoU")
    assert samples[1].caption == ["GT a", "pred d", "cls wrong"]  # no GT box: no IoU
    assert samples[1].gt_boxes.shape == (0, 4) and samples[0].gt_boxes.shape == (1, 4)
    np.testing.assert_array_equal(samples[0].pred_box, boxes[0].numpy())
    panel = samples[0].panel()
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[1] >= 224
