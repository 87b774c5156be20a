"""A corrupt JPEG and a malformed annotation line each give a clear error naming the file; a machine that
cannot run the configured training (no GPU, a folder that cannot be written, no W&B login) is refused before
any work."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from camexp.data import CUBDataModule
from camexp.data.boxes import DegenerateBoxWarning
from camexp.data.cub import read_cub
from camexp.errors import ConfigError, CorruptImageError, DatasetError


def _copy(src, tmp_path):
    root = tmp_path / "cub"
    shutil.copytree(src, root)
    return root


def test_malformed_bounding_box_line_names_file_and_line(tiny_synthloc, tmp_path):
    root = _copy(tiny_synthloc, tmp_path)
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines[2] = "3 10.0 twelve 5.0 6.0"
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    dm = CUBDataModule(root, input_size=64, train_resize=72, num_workers=0)
    with pytest.raises(DatasetError) as err:
        dm.setup("fit")
    assert "bounding_boxes.txt" in str(err.value) and "line 3" in str(err.value)


def test_missing_index_file_names_it(tiny_synthloc, tmp_path):
    root = _copy(tiny_synthloc, tmp_path)
    (root / "train_test_split.txt").unlink()
    with pytest.raises(DatasetError, match="train_test_split.txt"):
        CUBDataModule(root, num_workers=0).setup("fit")


def test_corrupt_jpeg_names_the_file_through_a_real_loader(tiny_synthloc, tmp_path):
    root = _copy(tiny_synthloc, tmp_path)
    first = (root / "images.txt").read_text().split("\n")[0].split()[1]
    victim = root / "images" / first
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG
    dm = CUBDataModule(root, input_size=64, train_resize=72, batch_size=4, num_workers=0)
    dm.setup("fit")
    with pytest.raises(CorruptImageError) as err:
        for _ in dm.train_dataloader():
            pass
    assert str(victim) in str(err.value) and "skip_corrupt" in str(err.value)


def test_class_count_mismatch_fails_before_training(tiny_synthloc):
    dm = CUBDataModule(tiny_synthloc, num_workers=0)
    dm.setup("fit")
    with pytest.raises(DatasetError, match="model.num_classes=9"):
        dm.check_num_classes(9)
    assert dm.check_num_classes(None) == 4


# -- the environment: refused in one paragraph before any work, and nothing left behind ----------------------


def _train_refused(tmp_path, capsys, *overrides, run_dir_file=None) -> str:
    """`camexp train` (in this process) on a data root that does not exist yet, so any work would show there:
    exit status 2, the error paragraph, no traceback, no data generated."""
    from camexp.cli import main
    from tests.conftest import REPO, tiny_overrides

    data_root = tmp_path / "never_generated"
    words = [str(REPO / "experiments" / "synthloc_gap.yaml"), *tiny_overrides(data_root, tmp_path / "logs")]
    flags = ["--run-dir-file", str(run_dir_file)] if run_dir_file else []
    assert main(["train", *flags, *words, *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("camexp: error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not data_root.exists()
    return err


@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_gpu_accelerator_without_a_gpu_is_refused_before_any_work(accelerator, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # mocked: the GPU's absence on any machine
    err = _train_refused(tmp_path, capsys, f"trainer.accelerator={accelerator}")
    assert f"trainer.accelerator={accelerator}" in err and "trainer.accelerator=auto" in err
    assert not (tmp_path / "logs").exists()


def test_more_gpus_than_there_are_is_refused(monkeypatch):
    import torch

    from camexp.wiring import check_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # mocked: a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"trainer\.devices=4 but this machine has 1 visible GPU"):
        check_accelerator("gpu", 4)
    check_accelerator("gpu", 1)


@pytest.mark.parametrize("where", ["is_a_file", "under_a_file", "read_only_dir"])
def test_unwritable_save_dir_is_refused_before_any_work(where, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "blocker"
    if where == "read_only_dir":
        blocker.mkdir()
        blocker.chmod(0o555)
        if os.geteuid() == 0:  # mocked: root may write into any folder, so tell it this one is read-only
            access = os.access
            monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != blocker and access(p, mode))
        save_dir = blocker / "logs"
    else:
        blocker.write_text("a file\n")
        save_dir = blocker if where == "is_a_file" else blocker / "logs"
    err = _train_refused(tmp_path, capsys, f"logger.save_dir={save_dir}")
    assert f"logger.save_dir={save_dir}" in err and str(blocker) in err
    assert ("is a file" if where != "read_only_dir" else "not writable") in err
    assert not (tmp_path / "logs").exists() and not (blocker.is_dir() and any(blocker.iterdir()))


def test_run_dir_file_in_a_place_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file\n")
    err = _train_refused(tmp_path, capsys, run_dir_file=tmp_path / "blocker" / "run.txt")
    assert "--run-dir-file" in err and "is a file" in err
    assert not (tmp_path / "logs").exists()


def test_wandb_online_without_a_login_is_refused_before_the_run_directory_is_made(tmp_path):
    """No network: W&B's credentials are looked up in an empty HOME, NETRC and config dir (the real wandb)."""
    from tests.conftest import REPO, tiny_overrides

    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "online", "HOME": str(home)}
    env.update(NETRC=str(home / ".netrc"), WANDB_CONFIG_DIR=str(home / "wandb"), WANDB_DIR=str(home / "wandb_dir"))
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "CAMEXP_RUN_DIR"):
        env.pop(name, None)
    data_root = tmp_path / "never_generated"
    words = tiny_overrides(data_root, tmp_path / "logs", **{"logger.wandb.enabled": "true"})
    command = [sys.executable, "-m", "camexp", "train", str(REPO / "experiments" / "synthloc_gap.yaml"), *words]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("camexp: error:")]
    assert len(error) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "wandb login" in error[0] and "WANDB_MODE=offline" in error[0] and "WANDB_API_KEY" in error[0]
    assert not (tmp_path / "logs").exists() and not data_root.exists()

    # W&B's lookup finds a key (not verified: no network); a malformed one is named
    check = textwrap.dedent(
        """
        import os
        from camexp.errors import CamexpError
        from camexp.loggers import check_login
        os.environ["WANDB_API_KEY"] = "x" * 40
        check_login()
        os.environ["WANDB_API_KEY"] = "abc"
        try:
            check_login()
        except CamexpError as err:
            print(err)
        """
    )
    proc = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "WANDB_API_KEY invalid" in proc.stdout, proc.stderr[-3000:]


def test_negative_width_box_warning_shows_the_files_numbers_file_and_line(tiny_synthloc, tmp_path):
    """The warning used to show the converted xyxy box ([10 12 5 18]) instead of what line 3 says."""
    root = _copy(tiny_synthloc, tmp_path)
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines[2] = "3 10.0 12.0 -5.0 6.0"
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    with pytest.warns(DegenerateBoxWarning) as caught:
        read_cub(root)
    message = str(caught[0].message)
    assert str(root / "bounding_boxes.txt") in message and "line 3: box x 10 y 12 width -5 height 6" in message
