"""Atomic checkpoints: a process killed in the middle of a save leaves the previous checkpoint
and ``last_checkpoint`` intact, and --resume goes on from them."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from clock_distill.engine import AtomicCheckpointer, atomic_open

# A child process saves iteration 1 normally, then starts saving iteration 2 and is killed
# (SIGKILL, as an OOM killer or a preempted job would) after writing part of the file.
CHILD = textwrap.dedent("""
    import os, signal, sys, torch
    from clock_distill.engine import AtomicCheckpointer
    model = torch.nn.Linear(64, 64)
    ckpt = AtomicCheckpointer(model, sys.argv[1])
    ckpt.save("model_0000001", iteration=1)
    real_save = torch.save
    def dying_save(obj, f, *a, **k):
        f.write(b"x" * 1000)  # a partial file on disk
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = dying_save
    with torch.no_grad():
        model.weight.add_(1.0)
    ckpt.save("model_0000002", iteration=2)
""")


def test_a_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    names = sorted(os.listdir(tmp_path))
    assert "model_0000002.pth" not in names and "model_0000001.pth" in names
    assert any(n.startswith("model_0000002.pth.tmp.") for n in names)  # the partial write, under another name
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"

    model = torch.nn.Linear(64, 64)
    ckpt = AtomicCheckpointer(model, str(tmp_path))
    assert ckpt.has_checkpoint() and ckpt.get_checkpoint_file().endswith("model_0000001.pth")
    extra = ckpt.resume_or_load("", resume=True)
    assert extra["iteration"] == 1


def test_an_exception_during_a_save_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(str(tmp_path / "a.pth"), "wb") as f:
            f.write(b"partial")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []
    with atomic_open(str(tmp_path / "a.pth"), "wb") as f:
        torch.save({"x": 1}, f)
    assert os.listdir(tmp_path) == ["a.pth"] and torch.load(tmp_path / "a.pth")["x"] == 1
    with pytest.raises(ValueError, match="for writing"):
        atomic_open(str(tmp_path / "a.pth"), "rb")
