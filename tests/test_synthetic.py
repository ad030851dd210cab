"""The synthetic KITTI generator: layout, determinism and coverage."""

import filecmp
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clock_distill.data.kitti import DIFFICULTIES, kitti_difficulty, load_kitti_instances, read_kitti_label_file
from clock_distill.data.synthetic import DEFAULT_HEIGHT, DEFAULT_WIDTH, generate_synthetic_kitti

ROOT = Path(__file__).resolve().parents[1]


def test_layout_and_label_format(synthetic_kitti):
    root = synthetic_kitti
    ids = sorted(p.stem for p in (root / "training/image_2").glob("*.png"))
    assert ids == [f"{i:06d}" for i in range(30)]
    train = (root / "ImageSets/train.txt").read_text().split()
    val = (root / "ImageSets/val.txt").read_text().split()
    assert len(val) == 6 and set(train) | set(val) == set(ids) and not set(train) & set(val)
    for i in ids:
        with Image.open(root / f"training/image_2/{i}.png") as im:
            assert im.size == (320, 96) and im.mode == "RGB"
        for line in (root / f"training/label_2/{i}.txt").read_text().splitlines():
            assert len(line.split()) == 15
        for obj in read_kitti_label_file(root / f"training/label_2/{i}.txt"):
            x1, y1, x2, y2 = obj["bbox"]
            assert 0 <= x1 < x2 <= 319 and 0 <= y1 < y2 <= 95
            if obj["type"] != "DontCare":
                assert 0 <= obj["truncated"] <= 1 and obj["occluded"] in (0, 1, 2, 3)
                assert -np.pi <= obj["alpha"] <= np.pi and obj["location"][2] > 0


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_synthetic_kitti(a, num_images=4, seed=7, width=160, height=48)
    generate_synthetic_kitti(b, num_images=6, seed=7, width=160, height=48)
    generate_synthetic_kitti(c, num_images=4, seed=8, width=160, height=48)
    for i in range(4):
        for sub in ("image_2", "label_2"):
            ext = "png" if sub == "image_2" else "txt"
            f = f"training/{sub}/{i:06d}.{ext}"
            assert filecmp.cmp(a / f, b / f, shallow=False), f  # image i depends on (seed, i) only
    assert any(
        (a / f"training/label_2/{i:06d}.txt").read_text() != (c / f"training/label_2/{i:06d}.txt").read_text()
        for i in range(4)
    )


def test_default_size_is_kitti_like():
    assert abs(DEFAULT_WIDTH / DEFAULT_HEIGHT - 1242 / 375) < 0.05
    assert DEFAULT_WIDTH % 32 == 0 and DEFAULT_HEIGHT % 32 == 0


def test_covers_every_class_and_difficulty(tmp_path):
    generate_synthetic_kitti(tmp_path, num_images=60, seed=0)
    records = load_kitti_instances(tmp_path, "train") + load_kitti_instances(tmp_path, "val")
    objs = [o for r in records for o in r["kitti_objects"]]
    types = Counter(o["type"] for o in objs)
    for t in ("Car", "Pedestrian", "Cyclist", "Van", "DontCare"):
        assert types[t] > 0, types
    for cls in ("Car", "Pedestrian", "Cyclist"):
        levels = Counter(kitti_difficulty(o) for o in objs if o["type"] == cls)
        for level in (*DIFFICULTIES, None):  # None: too small, occluded or truncated for any
            assert levels[level] > 0, (cls, levels)
    assert any(o["occluded"] >= 1 for o in objs) and any(o["truncated"] > 0 for o in objs)
    assert any(not r["annotations"] for r in records)  # some images have no objects


def test_cli_if_missing(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools/make_synthetic_kitti.py"), "--out", str(tmp_path), "--num-images", "3",
           "--width", "160", "--height", "48", "--if-missing"]
    first = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    assert "wrote 3" in first
    second = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    assert "already at" in second


def test_splits_layout(tmp_path):
    m = generate_synthetic_kitti(tmp_path, seed=4, width=160, height=48, splits={"train": 3, "tune": 2, "val": 2})
    assert m["splits"] == {"train": 3, "tune": 2, "val": 2}
    sets = {s: (tmp_path / "ImageSets" / f"{s}.txt").read_text().split() for s in ("train", "tune", "val")}
    assert sets == {"train": ["000000", "000001", "000002"], "tune": ["000003", "000004"], "val": ["000005", "000006"]}
    # Image i is the same scene in either layout.
    other = tmp_path / "other"
    generate_synthetic_kitti(other, num_images=6, seed=4, width=160, height=48)
    for i in ("000002", "000005"):
        assert (tmp_path / "training/label_2" / f"{i}.txt").read_text() == (other / "training/label_2" / f"{i}.txt").read_text()
    with pytest.raises(ValueError, match="not both"):
        generate_synthetic_kitti(tmp_path, num_images=4, splits={"train": 2})
    with pytest.raises(ValueError, match="counts >= 1"):
        generate_synthetic_kitti(tmp_path, splits={"train": 0})


def test_standard_val_has_100_moderate_objects_per_class():
    """The standard val split (images 1200..1599) holds >= 100 objects per class that count at
    Moderate, so the devkit's 41-point recall grid does not cap AP."""
    from clock_distill.data.synthetic import STANDARD_SPLITS, generate_scene

    start = STANDARD_SPLITS["train"] + STANDARD_SPLITS["tune"]
    counts = Counter()
    for i in range(start, start + STANDARD_SPLITS["val"]):
        _, objects = generate_scene(np.random.default_rng([0, i]))
        counts.update(o["type"] for o in objects if o["type"] in ("Car", "Pedestrian", "Cyclist")
                      and kitti_difficulty(o) in ("easy", "moderate"))
    assert min(counts.values()) >= 100, counts


def test_split_generated_on_first_use(tmp_path, monkeypatch):
    from detectron2.data import DatasetCatalog

    from clock_distill.data import register_kitti_splits
    from clock_distill.data import synthetic

    monkeypatch.setattr(synthetic, "STANDARD_SPLITS", {"train": 2, "tune": 1, "val": 1})
    root = tmp_path / "kitti_synthetic"
    names = register_kitti_splits("first_use_test", root, ("train", "val"), prepare=synthetic.synthetic_on_first_use(root))
    try:
        assert not root.exists()
        assert len(DatasetCatalog.get(names[0])) == 2 and len(DatasetCatalog.get(names[1])) == 1
        assert (root / "synthetic.json").is_file()
        # An existing set of another size is used as it is, never regenerated.
        (root / "synthetic.json").unlink()
        mtime = (root / "ImageSets" / "train.txt").stat().st_mtime_ns
        assert len(DatasetCatalog.get(names[0])) == 2
        assert (root / "ImageSets" / "train.txt").stat().st_mtime_ns == mtime
    finally:
        for n in names:
            DatasetCatalog.remove(n)


@pytest.mark.slow
def test_a_synthetic_config_trains_on_a_fresh_clone(tmp_path):
    """An empty $DETECTRON2_DATASETS, as on a fresh clone: the config's first use makes the
    standard set there (logged), then trains 2 iterations and evaluates."""
    import os

    data = tmp_path / "datasets"
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "tools/lazyconfig_train_net.py", "--config-file",
         "configs/clock_distill/deformable_detr_student_kitti_synthetic.py", f"train.output_dir={out}",
         "train.max_iter=2", "train.eval_period=2", "train.checkpointer.period=100", "train.init_checkpoint=",
         "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
         "dataloader.test.dataset.names=kitti_synthetic_tune"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "generating the synthetic KITTI set at" in proc.stdout + proc.stderr
    root = data / "kitti_synthetic"
    assert [len((root / "ImageSets" / f"{s}.txt").read_text().split()) for s in ("train", "tune", "val")] == [1000, 200, 400]
    assert (out / "model_final.pth").is_file() and (out / "kitti_report.json").is_file()
