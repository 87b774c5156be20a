"""The paper's networks: parameters (1000 classes), CAM size and CPU forward time per image at 224.

    python benchmarks/bench_networks.py [--quick] [--networks vgg16_gap googlenet_gap ...]

Forward passes run under torch.no_grad in eval mode, after a warm-up pass; the time is the median of a
few runs divided by the batch size. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from camexp.console import quiet_console  # noqa: E402
from camexp.models import available_networks, build_network  # noqa: E402

NETWORKS = [name for name in available_networks() if name != "synthnet"]  # the paper's, registered
SIZE = 224


@torch.no_grad()
def ms_per_image(net: torch.nn.Module, batch: int, runs: int) -> float:
    x = torch.randn(batch, 3, SIZE, SIZE)
    net(x)  # warm-up: allocator and oneDNN primitive creation
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / batch


def bench(name: str, runs: int, batches: tuple[int, ...]) -> dict[str, object]:
    net = build_network(name, num_classes=1000, pool="avg", width=32, dropout=0.0, pretrained=False, weights_path=None)
    net.eval()
    with torch.no_grad():
        maps = net.forward_features(torch.zeros(1, 3, SIZE, SIZE))
    side = f"{maps.shape[-2]}x{maps.shape[-1]}"
    row: dict[str, object] = {
        "network": name,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "cam": side if net.cam_capable else f"- ({side} conv)",
        "channels": maps.shape[1],
    }
    for batch in batches:
        row[f"b{batch}"] = ms_per_image(net, batch, runs)
    return row


@quiet_console()  # the libraries' chatter off: the tables alone on stdout
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per batch size instead of 7")
    parser.add_argument("--networks", nargs="+", default=NETWORKS)
    args = parser.parse_args(argv)
    runs, batches = (3, (1, 8)) if args.quick else (7, (1, 8))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input {SIZE}x{SIZE}, median of {runs} runs")
    header = "| network | params (M, 1000 classes) | CAM at 224 | K | ms/image b1 | ms/image b8 |"
    print(header)
    print("|---|---:|---|---:|---:|---:|")
    for name in args.networks:
        row = bench(name, runs, batches)
        print(
            f"| {row['network']} | {row['params_m']:.1f} | {row['cam']} | {row['channels']} "
            f"| {row['b1']:.1f} | {row['b8']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
