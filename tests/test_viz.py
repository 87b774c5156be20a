"""viz: the cached JET table gives what OpenCV's applyColorMap gives, pixel for pixel."""

import cv2
import numpy as np

from camexp.viz import heatmap_overlay, jet_rgb


def test_cached_jet_table_equals_apply_color_map():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    noise = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    for gray in (levels, noise, np.ascontiguousarray(noise[::2, 1:])):
        want = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        assert np.array_equal(jet_rgb(gray), want)
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    cam = np.random.default_rng(2).random((37, 53)).astype(np.float32)
    heat = cv2.cvtColor(cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    assert np.array_equal(heatmap_overlay(image, cam), cv2.addWeighted(image, 0.5, heat, 0.5, 0))


# -- legible overlays -------------------------------------------------------------------------------------

from camexp import viz  # noqa: E402


def _blob(h=64, w=64):
    image = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    return image, np.exp(-((xx - 40) ** 2 + (yy - 30) ** 2) / 200.0).astype(np.float32)


def test_long_caption_wraps_between_words_within_the_panel_width():
    caption = "GT Hstripe_Red_Round | pred Checker_Blue_Tri (cls wrong) | IoU 0.31 miss and some more words"
    lines = viz.wrap_text(caption, 150)
    assert len(lines) >= 3
    assert " ".join(lines).split() == caption.split()  # every word, whole and in order
    assert all(viz.text_width(line) <= 150 for line in lines)
    image, cam = _blob()
    panel = viz.overlay_panel(image, cam, caption=caption, min_width=150, max_width=150)
    assert panel.shape[1] == 150
    one_line = viz.overlay_panel(image, cam, caption="GT", min_width=150, max_width=150)
    assert panel.shape[0] > one_line.shape[0]  # the strip grew with the wrapped lines


def test_only_a_word_wider_than_the_panel_is_broken_or_abbreviated():
    lines = viz.wrap_text("GT Black_footed_Albatross_Laysan", 120)  # the name is wider than 120 px
    assert lines[0] == "GT" and "".join(lines[1:]) == "Black_footed_Albatross_Laysan"  # broken after '_' only
    assert all(viz.text_width(line) <= 120 for line in lines) and all(line.endswith("_") for line in lines[1:-1])
    (line,) = viz.wrap_text("Supercalifragilisticexpialidocious", 60)
    assert line.endswith(".") and "Supercalifragilisticexpialidocious".startswith(line[:-1])
    assert viz.text_width(line) <= 60


def test_panel_scales_image_into_width_range_keeping_aspect():
    image, cam = _blob(32, 64)
    panel = viz.overlay_panel(image, cam)  # 64 -> 256: smallest whole factor reaching 224
    assert panel.shape == (128, 256, 3)
    big, big_cam = np.zeros((300, 600, 3), np.uint8), np.zeros((300, 600), np.float32)
    assert viz.overlay_panel(big, big_cam, max_width=448).shape == (224, 448, 3)


def test_predicted_box_stays_visible_on_red_heat():
    image = np.full((64, 64, 3), 128, np.uint8)
    cam = np.ones((64, 64), np.float32)  # all red heat
    box = np.array([[16, 16, 48, 48]])
    plain = viz.overlay_panel(image, cam, min_width=64, max_width=64)
    panel = viz.overlay_panel(image, cam, pred_boxes=box, min_width=64, max_width=64)
    assert np.array_equal(panel[16:18, 20], [viz.PRED_COLOR] * 2)  # the stroke, on the box's own pixels
    heat = plain[32, 32].astype(int)
    outline = panel[15, 20].astype(int)  # just outside the stroke
    assert np.abs(outline - heat).sum() > 150 and outline.max() < 40  # dark, unlike the red heat


def test_whole_image_box_is_drawn_inside_the_panel_edge():
    image, cam = _blob()
    panel = viz.overlay_panel(image, cam, pred_boxes=np.array([[0, 0, 64, 64]]), min_width=64, max_width=64)
    plain = viz.overlay_panel(image, cam, min_width=64, max_width=64)
    for edge in (panel[0], panel[-1], panel[:, 0], panel[:, -1]):
        assert not (edge == viz.PRED_COLOR).all(axis=1).any()  # the outermost pixels are heat, not box
    assert np.array_equal(panel[0], plain[0])
    assert (panel[2, 10:-10] == viz.PRED_COLOR).all() and (panel[10:-10, -3] == viz.PRED_COLOR).all()


def test_box_colours_are_distinct_and_the_boxes_are_drawn_in_them():
    assert len({viz.PRED_COLOR, viz.GT_COLOR, viz.HEURISTIC_COLOR}) == 3
    image, cam = _blob()
    panel = viz.overlay_panel(
        image, cam, gt_boxes=np.array([[4, 4, 30, 30]]), extra_boxes=np.array([[34, 34, 60, 60]]),
        min_width=64, max_width=64,
    )  # fmt: skip
    assert (panel[4, 10] == viz.GT_COLOR).all() and (panel[34, 40] == viz.HEURISTIC_COLOR).all()


def test_grid_pads_unequal_tiles_white_and_puts_the_legend_on_top():
    tall = np.zeros((30, 20, 3), np.uint8)
    wide = np.zeros((10, 40, 3), np.uint8)
    legend = np.full((7, 5, 3), 100, np.uint8)
    picture = viz.grid([tall, wide, wide], columns=2, pad=2, legend=legend)
    assert picture.shape == (7 + 2 * 32 + 2, 2 * 42 + 2, 3)
    assert viz.grid_width([tall, wide, wide], columns=2, pad=2) == picture.shape[1]
    assert (picture[:7, :5] == 100).all() and (picture[:7, 5:] == 255).all()  # legend, padded to the width
    body = picture[7:]
    assert (body[2:32, 2:22] == 0).all() and (body[2:32, 22:42] == 255).all()  # tall tile, white right of it
    assert (body[2:12, 44:84] == 0).all() and (body[12:32, 44:84] == 255).all()  # wide tile, white below it


def test_legend_strip_wraps_onto_more_lines_when_narrow():
    entries = [("ground truth", viz.GT_COLOR), ("prediction (paper rule)", viz.PRED_COLOR)]
    note = "CAM of the ground-truth class; 'cls ok' = class right"
    wide = viz.legend_strip(900, entries, note)
    narrow = viz.legend_strip(220, entries, note)
    assert wide.shape[1] == 900 and narrow.shape[1] == 220
    assert narrow.shape[0] > wide.shape[0]
    assert (wide[:, -1] == 255).all() and (narrow[:, -1] == 255).all()  # nothing drawn past the edge
    assert (np.abs(wide.astype(int) - viz.GT_COLOR).sum(axis=2) == 0).any()  # the swatch, in the box colour


def test_cam_caption_names_the_cam_class_the_verdict_and_the_iou():
    assert viz.cam_caption("Hstripe_Red_Round", "Checker_Blue_Tri", 0.31, 0.5) == [
        "GT Hstripe_Red_Round", "pred Checker_Blue_Tri", "cls wrong, IoU 0.31 miss",
    ]  # fmt: skip
    assert viz.cam_caption("Cat", "Cat", 0.5, 0.5) == ["GT Cat", "cls ok, IoU 0.50 hit"]
    assert viz.cam_caption("Cat", "Cat", 0.7, 0.75) == ["GT Cat", "cls ok, IoU 0.70 miss"]
    assert viz.cam_caption("Cat") == ["GT Cat"]  # no prediction, no boxes
    assert viz.cam_caption("Cat", "Cat", 0.4999, 0.5)[-1] == "cls ok, IoU 0.49 miss"  # never "0.50 miss"
