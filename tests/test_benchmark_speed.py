"""tools/benchmark.py speed --smoke: tiny images and one repeat write a well-formed speed.json
and speed.md. No timing assertions: the numbers are the benchmark's job. Without transformers
(a benchmark-only dependency, absent under `make test`) the peer parts are marked skipped."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clock_distill.evaluation.speed_bench import alternate

REPO = Path(__file__).resolve().parents[1]


def test_alternate_times_every_side_and_flips_the_order():
    calls = []
    res = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then a-b, b-a, a-b
    assert set(res) == {"a", "b"} and all(len(v["times_s"]) == 3 and v["min_s"] <= v["median_s"] for v in res.values())


@pytest.mark.slow
def test_speed_smoke_writes_well_formed_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, "tools/benchmark.py", "speed", "--smoke", "--results", str(tmp_path / "res"),
         "--work", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r = json.loads((tmp_path / "res" / "speed.json").read_text())
    assert r["smoke"] is True and r["machine"] and r["kitti_eval_s"] > 0
    assert set(r["distill_overhead"]) == {"dino"} and r["distill_overhead"]["dino"] > 0
    d = r["deploy"]["dino"]
    assert d["teacher_params"] > d["student_params"] > 0 and d["teacher_ms"] > 0 and d["student_ms"] > 0
    for mode in ("student", "distiller"):
        assert r["peak_memory_mb"]["dino"][mode]["rss_peak_mb"] > 100
    # The Distiller holds a teacher as well: its process peaks higher than the student's.
    assert r["peak_memory_mb"]["dino"]["distiller"]["rss_peak_mb"] > r["peak_memory_mb"]["dino"]["student"]["rss_peak_mb"]
    assert set(r["peer"]) == {"deformable_detr", "dab_detr"}
    try:
        import transformers  # noqa: F401
    except ImportError:
        assert all("skipped" in v for v in r["peer"].values()) and r["msda_ratio"] is None
    else:
        for v in r["peer"].values():
            assert {"train_step_ratio", "inference_ratio", "params_ours", "params_peer"} <= set(v)
            assert abs(v["params_ours"] / v["params_peer"] - 1) < 0.01  # matched within 1%
        assert r["msda_ratio"] > 0
        # On the CPU ours is timed with the fused deformable-attention kernel as well.
        assert r["msda_ratio"] == r["msda"]["ratio_cpu_kernel"] and r["msda"]["ratio"] > 0
        k = r["peer"]["deformable_detr"]["cpu_kernel"]
        assert k["train_step_ratio"] > 0 and k["inference_ratio"] > 0 and "cpu_kernel" not in r["peer"]["dab_detr"]
    md = (tmp_path / "res" / "speed.md").read_text()
    assert "Smoke run" in md and "DINO" in md
