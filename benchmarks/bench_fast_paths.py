"""The fast paths behind flags, on this machine: channels-last, bf16 autocast, torch.compile.

Each is what the flag does: ``--model.channels_last`` (channels-last weights and inputs),
``--trainer.precision bf16-mixed`` (autocast to bfloat16) and ``--model.compile`` (``nn.Module.compile``).
Train-step images/s of one backbone, alternating the variants; compile time is reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved, median, report, table
from lightning_resnet.models import create_model


def variant(name: str, channels_last: bool, bf16: bool, compile: bool, args) -> tuple[callable, float]:
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = create_model(args.model, num_classes=10).train().to(device)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    targets = torch.randint(0, 10, (args.batch_size,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    if compile:
        model.compile()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = F.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    step()  # warm-up; for compile, the compilation
    warmup = time.perf_counter() - start

    def measure() -> float:
        begin = time.perf_counter()
        for _ in range(args.steps):
            step()
        return args.batch_size * args.steps / (time.perf_counter() - begin)

    return measure, warmup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU figures")
    args = parser.parse_args()

    variants = {
        "fp32 (baseline)": dict(channels_last=False, bf16=False, compile=False),
        "channels_last": dict(channels_last=True, bf16=False, compile=False),
        "bf16-mixed": dict(channels_last=False, bf16=True, compile=False),
        "bf16-mixed + channels_last": dict(channels_last=True, bf16=True, compile=False),
    }
    if not args.no_compile:
        variants["compile"] = dict(channels_last=False, bf16=False, compile=True)
    measures, warmups = {}, {}
    for name, flags in variants.items():
        measures[name], warmups[name] = variant(name, **flags, args=args)
        print(f"{name}: first step {warmups[name]:.1f} s", flush=True)
    results = interleaved(measures, args.rounds)
    baseline = median(results["fp32 (baseline)"])
    rows = [[name, f"{median(values):.1f}", f"{median(values) / baseline:.2f}", f"{warmups[name]:.1f}"]
            for name, values in results.items()]
    where = "the CPU" if args.device == "cpu" else args.device
    report(f"Fast paths on {where}: {args.model} train step, {args.image_size} px, batch {args.batch_size}",
           table(["variant", "img/s", "vs fp32", "first step s (compile included)"], rows))


if __name__ == "__main__":
    main()
