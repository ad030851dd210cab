"""tools/demo.py end to end on a tiny synthetic set (2 steps per stage, random-init backbone):
three stages, one comparison report that holds the numbers of the reports it was built from,
the pictures; a second run reuses every stage."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_writes_a_report_from_its_three_runs_and_reuses_them(tmp_path):
    data, out = tmp_path / "datasets", tmp_path / "demo"
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", "from clock_distill.data.synthetic import generate_synthetic_kitti; "
                    f"generate_synthetic_kitti({str(data / 'kitti_synthetic')!r}, num_images=6, width=160, height=48)"],
                   env=env, check=True, timeout=120)
    cmd = [sys.executable, "tools/demo.py", "--family", "dab_detr", "--out", str(out), "--teacher-iters", "2",
           "--student-iters", "2", "--num-pictures", "1", "--timing-images", "1",
           "train.init_checkpoint=", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
           "dataloader.train.total_batch_size=2", "train.log_period=1"]
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[1/4] teacher" in first.stdout and "stage ETA" in first.stdout
    report = (out / "report.md").read_text()
    assert f"report: {out / 'report.md'}" in first.stdout
    for stage, name in (("teacher", "teacher"), ("student", "student alone"), ("clockdistill", "distilled student")):
        res = json.loads((out / stage / "kitti_report.json").read_text())["results"]
        for diff in ("easy", "moderate", "hard"):
            assert f"{res['mAP'][diff]['AP_R40']:.2f}" in report, (stage, diff)
        assert f"| {name} |" in report  # the models table: params, ms / image
    for png in ("pr_compare_Car.png", "pictures"):
        assert (out / png).exists()
    assert len(list((out / "pictures").glob("*.png"))) == 4 and "![" in report

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reusing") == 3
