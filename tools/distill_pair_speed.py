#!/usr/bin/env python
"""Teacher against student inference time of the synthetic distillation pairs, as a ratio
measured side by side: one 640x192 image, the two models alternating in one process, one
thread, the median of 8 ratios (absolute times on a shared machine are noise).

    python tools/distill_pair_speed.py dino deformable_detr dab_detr
"""

import argparse
import statistics
import time

import torch
from detectron2.config import LazyConfig, instantiate


def pair_ratio(family: str, repeats: int = 8):
    load = lambda role: instantiate(  # noqa: E731
        LazyConfig.load(f"configs/clock_distill/{family}_{role}_kitti_synthetic.py").model).eval()
    teacher, student = load("teacher"), load("student")
    x = [{"image": torch.randint(0, 255, (3, 192, 640)).float(), "height": 192, "width": 640}]
    ratios = []
    with torch.no_grad():
        student(x), teacher(x)  # warm-up
        for _ in range(repeats):
            a = time.perf_counter()
            student(x)
            b = time.perf_counter()
            teacher(x)
            ratios.append((time.perf_counter() - b) / (b - a))
    params = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    return params(teacher), params(student), ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("families", nargs="+", choices=["dino", "deformable_detr", "dab_detr"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for family in args.families:
        pt, ps, r = pair_ratio(family)
        print(f"{family}: teacher {pt:.2f}M params, student {ps:.2f}M; teacher/student inference time "
              f"median {statistics.median(r):.2f}x (min {min(r):.2f}, max {max(r):.2f})", flush=True)


if __name__ == "__main__":
    main()
