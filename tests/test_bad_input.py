"""Bad input stops the run at once with a message that names the problem (issue 14's catalogue,
the part that concerns the entry point): a misspelt override key, and ``--eval-only`` with a
checkpoint that does not fit the model. Each runs ``tools/lazyconfig_train_net.py`` as a user
does; the failures come before any data is read."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from detectron2.config import LazyConfig

from clock_distill.config import ConfigKeyError, apply_overrides, check_overrides

REPO = Path(__file__).resolve().parents[1]
DINO = "configs/dino/dino_r18_kitti_synthetic.py"


def _train_net(*args, data_root):
    env = dict(os.environ, DETECTRON2_DATASETS=str(data_root), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "tools/lazyconfig_train_net.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_override_keys_are_checked_against_the_config():
    cfg = LazyConfig.load("configs/dab_detr/dab_detr_r18_kitti_synthetic.py")
    # Existing keys, and an argument the LazyCall target accepts though the config omits it.
    check_overrides(cfg, ["train.max_iter=3", "model.dn_number=20", "lr_multiplier.scheduler.milestones=[1,2]",
                          "dataloader.train.total_batch_size=2", "model.criterion.weight_dict.loss_class=2"])
    cases = {
        "train.max_itr=3": "unknown config key in override 'train.max_itr=3': 'train.max_itr' is not in the config; "
                           "did you mean 'train.max_iter'?",
        "model.num_querys=5": "unknown config key in override 'model.num_querys=5': 'model.num_querys' is not in the "
                              "config, and DABDETR takes no argument 'num_querys'; "
                              "did you mean 'model.num_queries'?",
        "train.max_iter.x=1": "unknown config key in override 'train.max_iter.x=1': 'train.max_iter' is 1000, not a "
                              "group of keys, so 'train.max_iter.x' does not exist",
        "max_iter": "override 'max_iter' is not KEY=VALUE",
        # The suggestion may be an argument the target takes that the config leaves out.
        "model.inverse_sigmoid_epsilon=1e-3": "unknown config key in override 'model.inverse_sigmoid_epsilon=1e-3': "
                                              "'model.inverse_sigmoid_epsilon' is not in the config, and DABDETR takes no "
                                              "argument 'inverse_sigmoid_epsilon'; did you mean 'model.inverse_sigmoid_eps'?",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigKeyError) as e:
            check_overrides(cfg, [override])
        assert str(e.value) == message
    distill = LazyConfig.load("configs/clock_distill/dino_clockdistill_kitti_synthetic.py")
    with pytest.raises(ConfigKeyError, match="did you mean 'model.logit_loss.temperature'"):
        apply_overrides(distill, ["model.logit_loss.temprature=2"])
    assert apply_overrides(distill, ["model.memory_loss.weight=100"]).model.memory_loss.weight == 100
    # The ablations' spelling: None (Python) as null (Hydra), never the string 'None'.
    ablation = apply_overrides(distill, ["model.logit_loss=None", "model.distill_queries=null"])
    assert ablation.model.logit_loss is None and ablation.model.distill_queries is None


@pytest.mark.slow
def test_entry_point_refuses_typos_and_mismatched_checkpoints(tmp_path):
    import torch
    from detectron2.config import instantiate

    data = tmp_path / "datasets"  # empty: every failure must come before the data is read
    proc = _train_net("--config-file", DINO, "train.max_itr=3", f"train.output_dir={tmp_path / 'out'}", data_root=data)
    assert proc.returncode != 0
    assert ("unknown config key in override 'train.max_itr=3': 'train.max_itr' is not in the config; "
            "did you mean 'train.max_iter'?") in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started

    proc = _train_net("--config-file", DINO, "--eval-only", "train.init_checkpoint=", data_root=data)
    assert proc.returncode != 0 and "--eval-only needs train.init_checkpoint=PATH" in proc.stderr

    torch.manual_seed(0)
    deformable = tmp_path / "deformable.pth"
    torch.save({"model": instantiate(LazyConfig.load("configs/deformable_detr/deformable_detr_r18_kitti_synthetic.py").model)
                .state_dict()}, deformable)
    five = tmp_path / "dino_5_classes.pth"
    cfg = LazyConfig.load(DINO)
    cfg.model.num_classes = 5
    torch.save({"model": instantiate(cfg.model).state_dict()}, five)

    proc = _train_net("--config-file", DINO, "--eval-only", f"train.init_checkpoint={deformable}", data_root=data)
    assert proc.returncode != 0
    assert f"model checkpoint {deformable} does not match the model (DINO):" in proc.stderr
    assert "missing keys:" in proc.stderr and "unexpected keys:" in proc.stderr and "label_enc.weight" in proc.stderr

    proc = _train_net("--config-file", DINO, "--eval-only", f"train.init_checkpoint={five}", data_root=data)
    assert proc.returncode != 0
    assert f"model checkpoint {five} does not match the model (DINO):" in proc.stderr
    assert "keys with other shapes:" in proc.stderr and "class_embed.0.bias: checkpoint (5,), model (3,)" in proc.stderr
