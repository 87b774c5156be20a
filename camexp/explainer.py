"""CAM on any image or folder: `camexp cam`, and `camexp.explain(...)` for notebooks.

For each image the network sees the WHOLE image resized to its input size (no centre crop, so a box can
cover the whole object); the CAM of each chosen class (the top-k, or given ids) is upsampled to the image's
original resolution, min-max normalized, and boxed by the paper's rule (pixels >= threshold x max, box of the
largest 8-connected component) and by Table 3's tight/loose heuristic (the release's `dt_box`). Boxes are
inclusive pixel coordinates [x0, y0, x1, y1] of the original image.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from camexp.cam import class_activation_maps, normalize_cams, upsample_cams
from camexp.data.images import load_rgb_sized
from camexp.data.transforms import eval_transform
from camexp.errors import CamexpError, CorruptImageError, DatasetError
from camexp.localization import boxes_from_cams, loose_and_tight_boxes
from camexp.outputs import output_folder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_MODEL = "efficientnet_lite0"
ImageInput = str | Path | Image.Image | Tensor | np.ndarray


@dataclass
class Explainer:
    """A CAM network ready for new images: the network, its class names and how its inputs are prepared."""

    net: nn.Module
    name: str
    class_names: list[str]
    input_size: int
    normalize: str = "imagenet"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def transform(self):
        return eval_transform(self.input_size, self.normalize)


def load_explainer(
    model: str | None = None, ckpt: str | Path | None = None, input_size: int | None = None, device: str = "auto"
) -> Explainer:
    """The packaged ImageNet network `model` (default EfficientNet-Lite0, real weights, offline) or a
    `camexp train` checkpoint (its class names and input preparation come from the checkpoint)."""
    if model and ckpt:
        raise CamexpError(f"Give either --model {model} or --ckpt {ckpt}, not both.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        target = torch.device(device)
    except RuntimeError as err:
        raise CamexpError(f"--device {device}: {err}. Give cpu, cuda, cuda:1, ... or auto.") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise CamexpError(f"--device {device} but no CUDA GPU is usable here. Use --device auto or --device cpu.")
    if ckpt:
        net, name, names, size, normalize = _from_checkpoint(Path(ckpt))
    else:
        from camexp.models import build_network
        from camexp.models.weights import imagenet_class_names

        name = model or DEFAULT_MODEL
        net = build_network(name, num_classes=1000, pretrained=True)
        names, size, normalize = imagenet_class_names(), 224, "imagenet"
    if not getattr(net, "cam_capable", False):
        raise CamexpError(
            f"{name} has no CAM: its classifier is not one linear layer over globally pooled conv maps (an FC "
            f"baseline). Use a GAP network (e.g. --model {DEFAULT_MODEL}, or a checkpoint of a *_gap network)."
        )
    return Explainer(net.eval().to(target), name, names, input_size or size, normalize, target)


def _from_checkpoint(path: Path) -> tuple[nn.Module, str, list[str], int, str]:
    """A CAMNet checkpoint (weights_only=True): its network, class names and how its inputs were prepared."""
    from camexp.models import CAMNet
    from camexp.runs.checkpoints import check_checkpoint

    path = check_checkpoint(path, "cam")
    model = CAMNet.from_checkpoint(path)
    size = model.hparams.get("input_size") or _run_config_input_size(path) or 224
    return model.net, str(path), model.class_names, int(size), model.hparams.get("normalize", "imagenet")


def _run_config_input_size(ckpt: Path) -> int | None:
    """data.input_size from the run's config.yaml (checkpoints written before camexp recorded it)."""
    from omegaconf import OmegaConf

    run_config = ckpt.parent.parent / "config.yaml"
    return OmegaConf.load(run_config).data.input_size if run_config.is_file() else None


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files given, plus the image files under each folder given (recursively, sorted). A missing path or
    a folder without images is a one-line error."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CamexpError(f"No image files ({', '.join(IMAGE_SUFFIXES)}) under folder {path}.")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CamexpError(f"No such file or folder: {path}.")
    return files


class _ImageFiles(Dataset):
    """Decoded files: the network input, the original size and (for overlays) the original pixels.
    A file that cannot be decoded comes back as its error message, so one bad file skips, not stops.
    Every file is decoded whole (no reduced JPEG decode), so the numbers are the same with or without
    overlays and for a path or the same image passed as pixels."""

    def __init__(self, files: Sequence[Path], transform, keep_pixels: bool) -> None:
        self.files, self.transform, self.keep_pixels = list(files), transform, keep_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        try:
            image, size = load_rgb_sized(path)
        except (CorruptImageError, DatasetError) as err:
            return {"path": str(path), "error": str(err)}
        pixels = np.asarray(image) if self.keep_pixels else None
        return {"path": str(path), "image": self.transform(image), "size": size, "pixels": pixels}


@dataclass
class Explanation:
    """One image's result: the JSON record, the chosen classes' CAMs at original resolution (M x H x W in
    [0, 1]) and, when kept, its RGB pixels."""

    record: dict[str, Any]
    cams: np.ndarray
    pixels: np.ndarray | None = None


def iter_explanations(
    explainer: Explainer,
    files: Sequence[Path],
    top_k: int = 5,
    classes: Sequence[int] | None = None,
    threshold: float = 0.2,
    batch_size: int = 16,
    num_workers: int = 2,
    keep_pixels: bool = False,
    skipped: list[str] | None = None,
    progress: bool = True,
) -> Iterator[Explanation]:
    """Explanations of image files in order, batched; undecodable files are appended to `skipped`
    (their messages) and left out."""
    from tqdm import tqdm

    check_classes(explainer, classes)
    dataset = _ImageFiles(files, explainer.transform, keep_pixels)
    # collate_fn=list keeps samples apart: their sizes and pixels differ
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=min(num_workers, len(files)), collate_fn=list)
    with tqdm(total=len(files), desc="camexp cam", unit="img", disable=None if progress else True) as bar:
        for items in loader:
            good = [s for s in items if "error" not in s]
            for bad in (s for s in items if "error" in s):
                if skipped is not None:
                    skipped.append(bad["error"])
            if good:
                images = torch.stack([s["image"] for s in good])
                sizes = [s["size"] for s in good]
                results = explain_batch(explainer, images, sizes, top_k, classes, threshold)
                for sample, (record, cams) in zip(good, results, strict=True):
                    yield Explanation({"path": sample["path"], **record}, cams, sample["pixels"])
            bar.update(len(items))


def check_classes(explainer: Explainer, classes: Sequence[int] | None) -> None:
    bad = [c for c in classes or () if not 0 <= c < len(explainer.class_names)]
    if bad:
        raise CamexpError(
            f"Class ids {bad} are out of range: {explainer.name} has classes 0..{len(explainer.class_names) - 1}."
        )


@torch.inference_mode()
def explain_batch(
    explainer: Explainer,
    images: Tensor,
    sizes: Sequence[tuple[int, int]],
    top_k: int = 5,
    classes: Sequence[int] | None = None,
    threshold: float = 0.2,
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Records and CAMs of a batch of prepared inputs (N x 3 x S x S); sizes: each original (width, height)."""
    net = explainer.net
    features = net.forward_features(images.to(explainer.device))  # N x K x h x w
    probs = net.forward_head(features).float().softmax(1)  # N x C
    if classes:
        ids = torch.tensor(list(classes), device=probs.device).expand(len(probs), -1)
        ids = ids.gather(1, probs.gather(1, ids).argsort(1, descending=True))  # highest probability first
    else:
        ids = probs.topk(min(top_k, probs.shape[1]), dim=1).indices  # N x M
    cams = class_activation_maps(features.float(), net.classifier.weight.float(), ids)  # N x M x h x w
    out = []
    for i, (width, height) in enumerate(sizes):
        maps = normalize_cams(upsample_cams(cams[i], (height, width))).cpu()  # M x H x W in [0, 1]
        boxes = boxes_from_cams(maps, threshold)
        predictions = []
        for m, class_id in enumerate(ids[i].tolist()):
            loose, tight = loose_and_tight_boxes(maps[m].numpy())
            predictions.append(
                {
                    "class_id": class_id,
                    "class_name": explainer.class_names[class_id],
                    "prob": round(float(probs[i, class_id]), 6),
                    "box": inclusive_box(boxes[m]),
                    "heuristic_boxes": [inclusive_box(loose), inclusive_box(tight)],
                }
            )
        out.append(({"width": width, "height": height, "predictions": predictions}, maps.numpy()))
    return out


def inclusive_box(box: Tensor | np.ndarray) -> list[int] | None:
    """xyxy with exclusive ends (x1 = last column + 1) -> inclusive [x0, y0, x1, y1]; None for no box."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return None if x1 <= x0 or y1 <= y0 else [x0, y0, x1 - 1, y1 - 1]


def explain(
    images: ImageInput | Sequence[ImageInput],
    model: str | None = None,
    ckpt: str | Path | None = None,
    top_k: int = 5,
    classes: Sequence[int] | None = None,
    threshold: float = 0.2,
    explainer: Explainer | None = None,
) -> list[dict[str, Any]]:
    """CAM records (the `camexp cam` results.json entries) for paths (files or folders), PIL images or RGB
    tensors / arrays (3 x H x W or H x W x 3; uint8, or float in [0, 1]). Each record also carries `cams`:
    the chosen classes' CAMs at the image's original resolution (M x H x W, numpy, [0, 1])."""
    explainer = explainer or load_explainer(model, ckpt)
    check_classes(explainer, classes)
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    records, skipped = [], []
    for item in items:
        if isinstance(item, (str, Path)):
            for e in iter_explanations(explainer, image_files([item]), top_k, classes, threshold, num_workers=0,
                                       skipped=skipped, progress=False):  # fmt: skip
                records.append({**e.record, "cams": e.cams})
            continue
        image = _as_pil(item)
        batch = explainer.transform(image)[None]
        record, cams = explain_batch(explainer, batch, [image.size], top_k, classes, threshold)[0]
        records.append({"path": None, **record, "cams": cams})
    for message in skipped:  # named, not silently dropped: the records hold only the decodable files
        warnings.warn(f"skipped: {message}", stacklevel=2)
    return records


def _as_pil(item: Image.Image | Tensor | np.ndarray) -> Image.Image:
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    array = item.detach().cpu().numpy() if isinstance(item, Tensor) else np.asarray(item)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)  # C x H x W -> H x W x C
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise CamexpError(f"An image array must be H x W, H x W x 3 or 3 x H x W; got shape {array.shape}.")
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if array.size and (array.min() < 0 or array.max() > 1):
            raise CamexpError(
                f"A float image must hold RGB values in [0, 1]; this one spans [{array.min():g}, {array.max():g}]. "
                f"Pass uint8 pixels (0..255) as they are, or divide by 255 (a normalized tensor: undo the "
                f"normalization first)."
            )
        array = (array * 255).round().astype(np.uint8)
    return Image.fromarray(np.repeat(array, 3, axis=2) if array.shape[-1] == 1 else array)


def write_results(path: Path, model: str, threshold: float, records: list[dict[str, Any]]) -> Path:
    """results.json of `camexp cam`: {"model", "threshold", "images": [records without their CAMs]}."""
    images = [{k: v for k, v in r.items() if k != "cams"} for r in records]
    text = json.dumps({"model": model, "threshold": threshold, "images": images}, indent=1)
    text = re.sub(r"\[\s+(-?\d+),\s+(-?\d+),\s+(-?\d+),\s+(-?\d+)\s+\]", r"[\1, \2, \3, \4]", text)  # a box per line
    path.write_text(text + "\n")
    return path


def overlay_name(path: str, taken: set[str]) -> str:
    """`<stem>.png`, made unique among the overlays of one run."""
    stem = Path(path).stem or "image"
    name, n = f"{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}.png"
    taken.add(name)
    return name


def overlay_picture(explanation: Explanation, threshold: float, max_width: int = 320) -> np.ndarray:
    """One panel per class: heatmap, paper-rule box and heuristic boxes, class name and probability."""
    from camexp import viz

    pixels, cams = explanation.pixels, explanation.cams
    height, width = pixels.shape[:2]
    scale = min(1.0, max_width / width)
    if scale < 1.0:  # draw on a display-size copy: a 12-megapixel photo needs no 12-megapixel overlay
        import cv2

        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        cams = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_LINEAR) for c in cams])
    panels = []
    for rank, (prediction, cam) in enumerate(zip(explanation.record["predictions"], cams, strict=True), start=1):
        box = _display_boxes([prediction["box"]], scale)
        heuristic = _display_boxes(prediction["heuristic_boxes"], scale)
        caption = f"{rank}. {prediction['class_name']} (id {prediction['class_id']}) p={prediction['prob']:.2f}"
        panels.append(viz.overlay_panel(pixels, cam, pred_boxes=box, extra_boxes=heuristic, caption=caption))
    legend = viz.legend_strip(
        min(len(panels), 3) * panels[0].shape[1],
        [
            (f"CAM box (paper rule, CAM >= {threshold:g} x max)", viz.PRED_COLOR),
            ("Table 3 loose / tight boxes", viz.HEURISTIC_COLOR),
        ],
        note=f"{Path(explanation.record['path'] or 'image').name}: the CAM of each class, highest probability first",
        heat_label="CAM: low to high",
    )
    return viz.grid(panels, columns=3, legend=legend)


def _display_boxes(boxes: Sequence[list[int] | None], scale: float) -> np.ndarray:
    """Inclusive original-pixel boxes -> exclusive-end xyxy boxes at display scale."""
    kept = [[b[0], b[1], b[2] + 1, b[3] + 1] for b in boxes if b is not None]
    return (np.asarray(kept, dtype=np.float64).reshape(-1, 4) * scale).astype(np.float32)


def run_cam_command(
    paths: Sequence[str],
    model: str | None,
    ckpt: str | None,
    out: Path,
    top_k: int = 5,
    classes: Sequence[int] | None = None,
    threshold: float = 0.2,
    batch_size: int = 16,
    num_workers: int = 2,
    overlays: bool = True,
    device: str = "auto",
) -> dict[str, Any]:
    """`camexp cam`: results.json and one overlay PNG per image in `out`; returns a summary."""
    if not 0.0 <= threshold < 1.0:
        raise CamexpError(f"--threshold {threshold} is out of range: give a fraction of the CAM's max in [0, 1).")
    if top_k < 1:
        raise CamexpError(f"--top-k {top_k} must be at least 1.")
    files = image_files(paths)  # checked before the network loads
    output_folder(out, "--out")  # a file or an unwritable folder is refused before the network loads
    explainer = load_explainer(model, ckpt, device=device)
    records, skipped, taken = [], [], set()
    from camexp import viz

    for explanation in iter_explanations(
        explainer, files, top_k, classes, threshold, batch_size, num_workers, keep_pixels=overlays, skipped=skipped
    ):
        records.append(explanation.record)
        if overlays:
            viz.save_png(overlay_picture(explanation, threshold), out / overlay_name(explanation.record["path"], taken))
    write_results(out / "results.json", explainer.name, threshold, records)
    return {"images": len(records), "skipped": skipped, "out": out, "device": str(explainer.device)}
