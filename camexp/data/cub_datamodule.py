"""DataModules for CUB-200-2011 and the embedded SynthLoc and cluttered MNIST benchmarks (same on-disk layout)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from camexp.data.cub import CUBDataset, CUBRecords, read_cub
from camexp.data.datamodule import CAMDataModule
from camexp.data.image_list import decode_min_side
from camexp.errors import DatasetError


class CUBDataModule(CAMDataModule):
    def __init__(self, root: str | Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.records: CUBRecords | None = None

    def load_index(self) -> None:
        self.records = read_cub(self.root)
        self.class_names = self.records.class_names

    def build_dataset(self, split: str, transform, evaluation: bool) -> Dataset:
        assert self.records is not None
        min_side = decode_min_side(evaluation, self.input_size, self.train_resize)
        return CUBDataset(self.records, split, transform, evaluation, self.input_size, self.skip_corrupt, min_side)


class SynthLocDataModule(CUBDataModule):
    """SynthLoc: generated under `root` on first use (deterministic from the seed), then read as CUB."""

    def __init__(self, root: str | Path, synth: dict, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.synth = dict(synth)

    def prepare_data(self) -> None:
        from camexp.data.synth import expected_metadata, generate_synthloc, read_metadata

        try:
            wanted = expected_metadata(**self.synth)
        except (TypeError, ValueError) as err:
            raise DatasetError(f"data.synth has invalid SynthLoc settings ({err}); see docs/synthloc.md.") from err
        try:
            found = read_metadata(self.root)
        except ValueError:
            found = None  # unreadable synthloc.json: generate_synthloc below refuses to touch the folder
        if found == wanted:
            return
        if found is not None and found.get("name") == "SynthLoc":
            keys = sorted(k for k in set(found) | set(wanted) if k != "class_names")
            details = ", ".join(
                f"{k}: on disk {found.get(k)}, config {wanted.get(k)}" for k in keys if found.get(k) != wanted.get(k)
            )
            print(
                f"{self.root} holds a SynthLoc set made with other settings ({details}); regenerating it.", flush=True
            )
        elif self.root.exists() and any(self.root.iterdir()):
            raise DatasetError(
                f"{self.root} exists but is not a complete SynthLoc set (no readable synthloc.json). "
                f"Delete it to regenerate, or set data.root to an empty folder."
            )
        else:
            print(f"Generating SynthLoc under {self.root} ({self.synth}) ...", flush=True)
        generate_synthloc(self.root, **self.synth)


class ClutteredMNISTDataModule(CUBDataModule):
    """Cluttered MNIST (camexp/data/digits.py): generated under `root` on first use, and generated again
    when the set there has other parameters; then read as CUB."""

    def __init__(self, root: str | Path, digits: dict, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.digits = dict(digits)

    def prepare_data(self) -> None:
        from camexp.data.digits import DIGITS_VERSION, generate_cluttered_mnist, read_metadata

        try:
            found = read_metadata(self.root)
        except ValueError as err:
            raise DatasetError(str(err)) from err
        current = (
            found and found.get("version") == DIGITS_VERSION and all(found.get(k) == v for k, v in self.digits.items())
        )
        if not current:
            print(f"Generating cluttered MNIST under {self.root} ({self.digits}) ...", flush=True)
        try:
            generate_cluttered_mnist(self.root, **self.digits)
        except FileExistsError as err:
            raise DatasetError(f"{err} (data.root={self.root}: point it at an empty or new folder.)") from err
        except ValueError as err:
            raise DatasetError(f"Bad data.digits settings: {err}") from err
