"""KITTIEvaluator as detectron2 uses it: process() per batch, evaluate() at the end."""

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from clock_distill.data.kitti import read_kitti_label_file, register_kitti
from clock_distill.evaluation.kitti import evaluate_kitti, objects_to_anno
from clock_distill.evaluation.kitti_evaluator import KITTIEvaluator, build_evaluator, flatten_kitti_results

CLASSES = ["Car", "Pedestrian", "Cyclist"]


@pytest.fixture(scope="module")
def val_name(synthetic_kitti):
    register_kitti("test_eval_kitti_val", synthetic_kitti, "val")
    from detectron2.data import DatasetCatalog

    return "test_eval_kitti_val", DatasetCatalog.get("test_eval_kitti_val")


def _gt_predictions(record, drop_last=False):
    objs = [o for o in record["kitti_objects"] if o["type"] in CLASSES]
    if drop_last and objs:
        objs = objs[:-1]
    inst = Instances((record["height"], record["width"]))
    inst.pred_boxes = Boxes(torch.tensor([o["bbox"] for o in objs], dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.linspace(1.0, 0.5, len(objs))
    inst.pred_classes = torch.tensor([CLASSES.index(o["type"]) for o in objs], dtype=torch.int64)
    return {"instances": inst}


def test_evaluator_equals_the_pure_function(val_name, tmp_path):
    name, records = val_name
    evaluator = build_evaluator(name, output_dir=str(tmp_path), export_results=True)
    assert isinstance(evaluator, KITTIEvaluator)
    evaluator.reset()
    for i in range(0, len(records), 2):  # batches of two, as a test loader would give
        batch = records[i : i + 2]
        evaluator.process([{"image_id": r["image_id"]} for r in batch], [_gt_predictions(r, drop_last=True) for r in batch])
    out = evaluator.evaluate()["kitti"]

    # The same detections through the pure function, straight from the records.
    dts = []
    for r in records:
        inst = _gt_predictions(r, drop_last=True)["instances"]
        n = len(inst)
        dts.append({"name": np.array([CLASSES[c] for c in inst.pred_classes.tolist()], dtype=str).reshape(n),
                    "bbox": inst.pred_boxes.tensor.double().numpy(), "score": inst.scores.double().numpy()})
    expected = flatten_kitti_results(evaluate_kitti([objects_to_anno(r["kitti_objects"]) for r in records], dts))
    assert out.keys() == expected.keys() and "mAP/moderate/AP_R40" in out and "Car/hard/AP_R11" in out
    for k in expected:
        assert out[k] == pytest.approx(expected[k], abs=1e-9), k
    assert 0 < out["mAP/moderate/AP_R40"] < 100  # a dropped object per image: not perfect, not zero

    # Report and devkit result files.
    assert (tmp_path / "kitti_report.md").is_file() and (tmp_path / "kitti_report.json").is_file()
    assert (tmp_path / "pr_Car.png").is_file()
    exported = sorted(p.stem for p in (tmp_path / "kitti_results" / "data").glob("*.txt"))
    assert exported == sorted(r["image_id"] for r in records)
    first = records[0]
    lines = read_kitti_label_file(tmp_path / "kitti_results" / "data" / f"{first['image_id']}.txt")
    assert all(len(o) and "score" in o for o in lines)


def test_unknown_image_id_is_an_error(val_name):
    name, records = val_name
    evaluator = KITTIEvaluator(name, distributed=False)
    evaluator.process([{"image_id": "does_not_exist"}], [_gt_predictions(records[0])])
    with pytest.raises(KeyError, match="does_not_exist"):
        evaluator.evaluate()


def test_non_kitti_dataset_is_rejected():
    from detectron2.data import MetadataCatalog

    MetadataCatalog.get("test_eval_not_kitti").set(evaluator_type="sem_seg")
    with pytest.raises(ValueError, match="not a registered KITTI dataset"):
        KITTIEvaluator("test_eval_not_kitti")
    with pytest.raises(ValueError, match="no evaluator"):
        build_evaluator("test_eval_not_kitti")
