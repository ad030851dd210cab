#!/usr/bin/env python
"""Collect finished training runs into one small result file (JSON and a markdown table):
KITTI R40 Moderate AP at every evaluation, and seconds per iteration, from each run's
metrics.json. Commit the result, never the checkpoints.

    python tools/collect_runs.py --out benchmarks/results/NAME NAME=OUTPUT_DIR[@STEP] ...

Seconds per iteration: the median of the logged iteration times (each the median of a 20-step
window); ``@STEP`` uses only the windows from STEP on (e.g. where a run had the cores alone).
"""

import argparse
import json
import statistics
from pathlib import Path

COLUMNS = ["Car", "Pedestrian", "Cyclist", "mAP"]


def summarize(output_dir: Path, time_from: int = 0) -> dict:
    """{"evals": {step: {class: AP}}, "s_per_iter": median of the logged ``time`` from ``time_from``}."""
    path = output_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: has this run started?")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # A periodic evaluation is logged at the iteration that just ran (step = iteration + 1);
    # the final one, after training, at max_iter itself.
    last_step = max((r["iteration"] + 1 for r in rows if "total_loss" in r), default=0)
    evals, times = {}, []
    for r in rows:
        if "kitti/mAP/moderate/AP_R40" in r:
            evals[min(r["iteration"] + 1, last_step)] = {c: r[f"kitti/{c}/moderate/AP_R40"] for c in COLUMNS}
        if "time" in r and r["iteration"] + 1 >= time_from:
            times.append(r["time"])
    return {"output_dir": str(output_dir), "evals": evals, "s_per_iter": statistics.median(times) if times else None,
            "s_per_iter_from_step": time_from}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="path without suffix; writes OUT.json and OUT.md")
    parser.add_argument("runs", nargs="+", help="NAME=OUTPUT_DIR[@STEP]")
    args = parser.parse_args()
    runs = {}
    for spec in args.runs:
        name, _, d = spec.partition("=")
        d, _, step = d.partition("@")
        if not d or (step and not step.isdigit()):
            parser.error(f"expected NAME=OUTPUT_DIR[@STEP], got {spec!r}")
        runs[name] = summarize(Path(d), int(step or 0))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")
    lines = ["| run | step | Car mod. | Ped. mod. | Cyc. mod. | mAP mod. | s/iter |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in runs.items():
        for it, ap in sorted(r["evals"].items()):
            s = f"{r['s_per_iter']:.2f}" if r["s_per_iter"] and it == max(r["evals"]) else ""
            lines.append(f"| {name} | {it} | " + " | ".join(f"{ap[c]:.2f}" for c in COLUMNS) + f" | {s} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
