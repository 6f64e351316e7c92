"""Train-step throughput of each hand-written backbone against torchvision's model of the same name.

Both get the same weights, the same batch and the same SGD step, in one process; the two run
in alternating order and the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision

from benchmarks.common import interleaved, median, report, table
from lightning_resnet.models import create_model, list_models


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images, targets, steps: int) -> float:
    """Seconds per training step, over ``steps`` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), targets).backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="*", default=list_models())
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    torch.manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    targets = torch.randint(0, 1000, (args.batch_size,))
    rows, ratios = [], []
    for name in args.models:
        ours = create_model(name).train()
        reference = getattr(torchvision.models, name)().train()
        reference.load_state_dict(ours.state_dict())
        candidates = {}
        for label, model in (("ours", ours), ("torchvision", reference)):
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            train_steps(model, optimizer, images, targets, 1)  # warm-up: allocator, kernels
            candidates[label] = lambda m=model, o=optimizer: train_steps(m, o, images, targets, args.steps)
        seconds = interleaved(candidates, args.rounds)
        ratio = median([theirs / own for own, theirs in zip(seconds["ours"], seconds["torchvision"])])
        ratios.append(ratio)
        rows.append([name, f"{args.batch_size / median(seconds['ours']):.1f}",
                     f"{args.batch_size / median(seconds['torchvision']):.1f}", f"{ratio:.3f}"])
        print(f"{name}: ratio {ratio:.3f}", flush=True)
    rows.append(["**median of the ten**" if len(rows) == 10 else "**median**", "", "", f"**{median(ratios):.3f}**"])
    report(
        f"Backbone: train-step images/s, {args.image_size} px, batch {args.batch_size}, SGD, fp32",
        table(["backbone", "ours img/s", "torchvision img/s", "ratio (ours / torchvision)"], rows),
    )


if __name__ == "__main__":
    main()
