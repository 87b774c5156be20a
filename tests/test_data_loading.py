"""What real image files throw at the loaders (PNG / CMYK / grayscale saved as .JPEG, truncated and
corrupt files), reduced-scale JPEG decoding, and the loader defaults, through real DataLoaders."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camexp import config
from camexp.data import CUBDataModule, build
from camexp.data.image_list import ImageList, ImageListDataset
from camexp.data.images import load_rgb, load_rgb_sized
from camexp.data.transforms import eval_transform
from camexp.errors import CorruptImageError, DatasetError
from tests.conftest import REPO
from tests.datasets_fixtures import write_cub, write_image


def _pattern(w: int = 64, h: int = 48) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (200, 40, 40)
    rgb[:, w // 2 :] = (30, 160, 220)
    return rgb


def test_png_and_palette_png_saved_as_jpeg_load_as_exact_rgb(tmp_path):
    rgb = _pattern()
    Image.fromarray(rgb).save(tmp_path / "a.JPEG", format="PNG")
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "a.JPEG")), rgb)
    Image.fromarray(rgb).quantize(colors=2).save(tmp_path / "p.JPEG", format="PNG")
    loaded = load_rgb(tmp_path / "p.JPEG")
    assert loaded.mode == "RGB" and np.array_equal(np.asarray(loaded), rgb)  # two colours: exact palette


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    Image.fromarray(_pattern()).convert("CMYK").save(tmp_path / "c.JPEG", quality=95)
    assert Image.open(tmp_path / "c.JPEG").mode == "CMYK"
    loaded = np.asarray(load_rgb(tmp_path / "c.JPEG")).astype(int)
    assert loaded.shape == (48, 64, 3)
    assert np.abs(loaded[24, 8] - (200, 40, 40)).max() <= 6 and np.abs(loaded[24, 56] - (30, 160, 220)).max() <= 6


def test_grayscale_jpeg_loads_as_three_equal_channels(tmp_path):
    gray = np.full((48, 64), 90, np.uint8)
    gray[:, 32:] = 200
    Image.fromarray(gray).save(tmp_path / "g.JPEG", quality=95)
    loaded = np.asarray(load_rgb(tmp_path / "g.JPEG")).astype(int)
    assert loaded.shape == (48, 64, 3)
    assert (loaded[..., 0] == loaded[..., 1]).all() and (loaded[..., 1] == loaded[..., 2]).all()
    assert abs(loaded[24, 8, 0] - 90) <= 2 and abs(loaded[24, 56, 0] - 200) <= 2


@pytest.mark.parametrize("mode", ["CMYK", "L"])
def test_cmyk_and_grayscale_jpegs_keep_their_colours_at_reduced_scale(tmp_path, mode):
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, :320], rgb[:, 320:] = (200, 40, 40), (30, 160, 220)
    source = Image.fromarray(rgb).convert(mode)
    source.save(tmp_path / "big.JPEG", quality=95)
    image, original = load_rgb_sized(tmp_path / "big.JPEG", 100)  # 640 x 480 decoded at 1/4
    assert original == (640, 480) and image.size == (160, 120) and image.mode == "RGB"
    expected = np.asarray(source.convert("RGB")).astype(int)
    got = np.asarray(image).astype(int)
    assert np.abs(got[60, 20] - expected[240, 80]).max() <= 6 and np.abs(got[60, 140] - expected[240, 560]).max() <= 6


def test_not_an_image_and_missing_file_name_the_file(tmp_path):
    (tmp_path / "x.JPEG").write_text("not an image")
    with pytest.raises(CorruptImageError, match=str(tmp_path / "x.JPEG")):
        load_rgb(tmp_path / "x.JPEG")
    with pytest.raises(DatasetError, match="missing: .*nope.JPEG"):
        load_rgb(tmp_path / "nope.JPEG")


@pytest.mark.parametrize("size, min_side, reduced", [
    ((1000, 800), 224, (500, 400)),  # min(1000 // 224, 800 // 224) = 3 -> libjpeg scale 1/2
    ((1000, 800), 100, (125, 100)),  # 1/8
    ((600, 520), 256, (300, 260)),  # training: short side stays >= train_resize
    ((400, 350), 224, (400, 350)),  # not twice the need: full decode
])
def test_large_jpegs_decode_at_reduced_scale_above_the_needed_side(tmp_path, size, min_side, reduced):
    path = write_image(tmp_path / "big.jpg", size)
    image, original = load_rgb_sized(path, min_side)
    assert original == size and image.size == reduced and min(image.size) >= min_side


def test_reduced_decoding_keeps_boxes_and_pixels(tmp_path):
    write_image(tmp_path / "big.jpg", (1000, 800))
    images = ImageList.build(tmp_path, ["big.jpg"], [0], boxes=[np.array([[100, 80, 500, 400]], np.float32)])
    transform = eval_transform(224)
    reduced = ImageListDataset(images, transform, True, 224, min_side=224)[0]
    full = ImageListDataset(images, transform, True, 224, min_side=0)[0]
    # boxes follow the ORIGINAL 1000 x 800 size: x * 0.224, y * 0.28
    torch.testing.assert_close(reduced["boxes"], torch.tensor([[22.4, 22.4, 112.0, 112.0]]))
    assert reduced["image"].shape == full["image"].shape == (3, 224, 224)
    assert (reduced["image"] - full["image"]).abs().mean() < 0.02  # normalized units: far below 1 grey level


def _corrupt_cub(tmp_path) -> tuple[Path, Path]:
    root = write_cub(tmp_path / "cub", num_classes=3, per_class=4, masks=False)
    victim = root / "images" / "002.Bird_2" / "Bird_2_0001.jpg"  # a test image
    victim.write_bytes(victim.read_bytes()[:120])  # truncated JPEG
    return root, victim


def test_truncated_image_error_names_the_file_through_worker_processes(tmp_path):
    root, victim = _corrupt_cub(tmp_path)
    dm = CUBDataModule(root, input_size=32, train_resize=32, batch_size=2, num_workers=2, persistent_workers=False)
    dm.setup("validate")
    with pytest.raises(CorruptImageError) as err:
        for _ in dm.val_dataloader():
            pass
    assert str(victim) in str(err.value) and "skip_corrupt" in str(err.value)


def test_skip_corrupt_skips_and_counts_through_worker_processes(tmp_path):
    root, _ = _corrupt_cub(tmp_path)
    dm = CUBDataModule(root, input_size=32, train_resize=32, batch_size=2, num_workers=2, skip_corrupt=True)
    dm.setup("validate")
    loader = dm.val_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers
    indices, skipped = [], 0
    for batch in loader:
        skipped += int(batch["skipped"])
        indices += batch["index"].tolist() if "index" in batch else []
    assert skipped == 1 and sorted(indices) == [0, 1, 3, 4, 5]  # test image 2 of 6 (position 2) skipped


def test_defaults_root_workers_and_pinned_memory():
    cfg = config.load(None, ["data.name=ilsvrc"])
    assert config.data_root(cfg) == Path("data/ilsvrc")
    assert cfg.data.num_workers == 2 and cfg.data.pin_memory and cfg.data.persistent_workers


@pytest.mark.parametrize(
    "overlay, cls, has_boxes",
    [
        ("cub", "CUBDataModule", True),
        ("wsoleval_cub", "WSOLEvalDataModule", True),
        ("wsoleval_ilsvrc", "WSOLEvalDataModule", True),
        ("wsoleval_openimages", "WSOLEvalDataModule", False),
        ("places365", "Places365DataModule", False),
        ("sun397", "FolderSplitsDataModule", False),
        ("indoor67", "FolderSplitsDataModule", False),
    ],
)
def test_dataset_overlays_merge_after_a_network_experiment(tmp_path, overlay, cls, has_boxes):
    files = [REPO / "experiments" / "vgg16_gap.yaml", REPO / "experiments" / "datasets" / f"{overlay}.yaml"]
    cfg = config.load(files)
    assert cfg.data.input_size == 224 and cfg.data.train_resize == 256  # the network's transforms stay
    dm = build(cfg.data, str(tmp_path))
    assert type(dm).__name__ == cls and dm.has_boxes == has_boxes


def test_paper_transforms_crop_mirror_and_normalize():
    from camexp.data.transforms import IMAGENET_MEAN, train_transform

    mean_colour = tuple(round(255 * m) for m in IMAGENET_MEAN)  # (124, 116, 104) -> about 0 after normalizing
    flat = eval_transform(224)(Image.new("RGB", (400, 300), mean_colour))
    assert flat.shape == (3, 224, 224) and flat.abs().max() < 0.01

    ramp = np.tile(np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None], (300, 1, 3))
    image = Image.fromarray(ramp)  # brighter to the right: a mirrored crop is brighter to the left
    torch.manual_seed(0)
    samples = [train_transform(224, 256)(image) for _ in range(20)]
    rising = [bool(t[0, :, -1].mean() > t[0, :, 0].mean()) for t in samples]
    assert 0 < sum(rising) < 20  # random mirroring
    crops = [train_transform(224, 256, hflip=False)(image) for _ in range(5)]
    assert all(t.shape == (3, 224, 224) and t[0, :, -1].mean() > t[0, :, 0].mean() for t in crops)
    # short side 300 -> 256 (400 -> 341): a 224 crop keeps 224/341 of the width, so its left/right
    # columns differ by about 224/341 * 255 grey levels
    spans = [float((t[0, 0, -1] - t[0, 0, 0]) * 0.229 * 255) for t in crops]
    assert all(abs(s - 224 / 341 * 255) < 4 for s in spans)
