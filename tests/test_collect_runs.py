"""tools/collect_runs.py: evaluation steps and seconds per iteration read from metrics.json."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _metrics(path, rows):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _ap(v):
    return {f"kitti/{c}/moderate/AP_R40": v for c in ("Car", "Pedestrian", "Cyclist", "mAP")}


def test_collect_runs(tmp_path):
    _metrics(tmp_path / "a", [
        {"iteration": 49, "total_loss": 3.0, "time": 9.0},
        {"iteration": 99, "total_loss": 2.0, "time": 1.0, **_ap(10.0)},  # periodic evaluation after step 100
        {"iteration": 149, "total_loss": 1.0, "time": 2.0},
        {"iteration": 150, **_ap(20.0)},  # the final evaluation, logged at max_iter
    ])
    out = tmp_path / "res" / "t"
    proc = subprocess.run([sys.executable, str(REPO / "tools/collect_runs.py"), "--out", str(out), f"a={tmp_path / 'a'}@100"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.with_suffix(".json").read_text())["a"]
    assert res["evals"] == {"100": _short(10.0), "150": _short(20.0)}
    assert res["s_per_iter"] == 1.5  # windows from step 100: 1.0 and 2.0
    assert "| a | 150 | 20.00 | 20.00 | 20.00 | 20.00 | 1.50 |" in out.with_suffix(".md").read_text()
    bad = subprocess.run([sys.executable, str(REPO / "tools/collect_runs.py"), "--out", str(out), f"b={tmp_path / 'none'}"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "metrics.json not found" in bad.stderr


def _short(v):
    return {c: v for c in ("Car", "Pedestrian", "Cyclist", "mAP")}
