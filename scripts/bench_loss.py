"""Time of the fused output projection + label-smoothed loss (`translate.loss.linear_label_smoothed_cross_entropy`),
forward and backward, on random inputs: the lever the training profile points at (docs/PERFORMANCE.md).

    python scripts/bench_loss.py                                  # CUDA if present: N 22.6k, D 512, V 32k, bf16
    python scripts/bench_loss.py --device cpu --rows 4096 --dim 8 # CPU: a small D leaves the elementwise passes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as common  # noqa: E402
from translate.loss import linear_label_smoothed_cross_entropy  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--rows", type=int, default=22_600, help="non-pad target tokens (N)")
    p.add_argument("--dim", type=int, default=512, help="d_model (D)")
    p.add_argument("--vocab", type=int, default=32_000, help="V")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--compiled", action="store_true", help="the per-chunk passes through torch.compile (train.compile)")
    args = p.parse_args(argv)
    device = common.resolve_device(args.device)
    compute_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device="cpu").manual_seed(0)
    hidden = torch.randn(args.rows, args.dim, generator=gen).to(device).requires_grad_()
    weight = (0.02 * torch.randn(args.vocab, args.dim, generator=gen)).to(device).requires_grad_()
    target = torch.randint(4, args.vocab, (args.rows,), generator=gen).to(device)

    def step():
        sums = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, compute_dtype=compute_dtype,
                                                   compiled=args.compiled)
        sums.loss.backward()
        return sums

    step()  # warm-up (compiles with --compiled)
    with common.Timer(device) as timer:
        for _ in range(args.repeats):
            sums = step()
    print(f"{device} ({common.environment(device)['device_name']}), N {args.rows}, D {args.dim}, V {args.vocab}, "
          f"{str(compute_dtype).removeprefix('torch.')}{', compiled' if args.compiled else ''}: {1000 * timer.seconds / args.repeats:.1f} ms per forward + "
          f"backward (mean of {args.repeats}; loss {float(sums.loss.detach()):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
