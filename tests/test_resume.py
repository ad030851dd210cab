"""Exact resume: train 6 steps with a checkpoint (and an evaluation) after step 3; start a second
run from that checkpoint with --resume; its last 3 steps compute what the uninterrupted run
computed: same final weights and optimizer state, same lr at every step. DINO, whose denoising
queries draw random noise every step, with the random seed left random (train.seed=-1): the
stream seed and the random states come from the checkpoint."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _train(out, data, *extra):
    args = [sys.executable, "tools/lazyconfig_train_net.py", "--config-file", "configs/dino/dino_r18_kitti_synthetic.py",
            *extra, f"train.output_dir={out}", "train.max_iter=6", "train.checkpointer.period=3", "train.eval_period=3",
            "train.log_period=1", "train.seed=-1", "train.init_checkpoint=", "dataloader.train.num_workers=0",
            "dataloader.test.num_workers=0", "dataloader.train.total_batch_size=2"]
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _lrs(out):
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    return {r["iteration"]: r["lr"] for r in rows if "lr" in r}


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    data = tmp_path / "datasets"
    subprocess.run([sys.executable, "-c", "from clock_distill.data.synthetic import generate_synthetic_kitti; "
                    f"generate_synthetic_kitti({str(data / 'kitti_synthetic')!r}, num_images=8, width=160, height=48)"],
                   check=True, timeout=120)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    _train(full, data)
    resumed.mkdir()
    shutil.copy(full / "model_0000002.pth", resumed)
    (resumed / "last_checkpoint").write_text("model_0000002.pth")
    proc = _train(resumed, data, "--resume")
    assert "Starting training from iteration 3" in proc.stdout + proc.stderr

    a = torch.load(full / "model_0000005.pth", weights_only=False)
    b = torch.load(resumed / "model_0000005.pth", weights_only=False)
    start = torch.load(full / "model_0000002.pth", weights_only=False)["model"]
    changed = [k for k in a["model"] if not torch.equal(a["model"][k], start[k])]
    assert changed, "the last 3 steps should have changed the weights"
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], rtol=0, atol=1e-6), k
    for sa, sb in zip(a["trainer"]["optimizer"]["state"].values(), b["trainer"]["optimizer"]["state"].values()):
        for k in sa:
            assert torch.allclose(sa[k], sb[k], rtol=0, atol=1e-6)
    full_lrs, resumed_lrs = _lrs(full), _lrs(resumed)
    assert sorted(resumed_lrs) == [3, 4, 5] and all(resumed_lrs[i] == full_lrs[i] for i in (3, 4, 5))


@pytest.mark.slow
def test_a_fixed_seed_gives_the_same_losses_twice(tmp_path):
    """train.seed=7 on CPU: two runs of DINO's synthetic student config (its resumable loader
    with two data workers, denoising noise) log the same losses for 20 iterations."""
    data = tmp_path / "datasets"
    subprocess.run([sys.executable, "-c", "from clock_distill.data.synthetic import generate_synthetic_kitti; "
                    f"generate_synthetic_kitti({str(data / 'kitti_synthetic')!r}, num_images=8, width=160, height=48)"],
                   check=True, timeout=120)
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        subprocess.run([sys.executable, "tools/lazyconfig_train_net.py", "--config-file",
                        "configs/clock_distill/dino_student_kitti_synthetic.py", f"train.output_dir={out}", "train.max_iter=20", "train.eval_period=100", "train.checkpointer.period=100",
                        "train.log_period=1", "train.seed=7", "train.init_checkpoint=", "dataloader.train.num_workers=2",
                        "dataloader.train.total_batch_size=2", "dataloader.test.num_workers=0"],
                       cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
        rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
        runs.append([{k: v for k, v in r.items() if k.startswith("loss") or k == "total_loss"} for r in rows if "total_loss" in r])
    assert len(runs[0]) == 20 and runs[0] == runs[1]
