"""The COCO evaluation path: KITTI -> COCO json -> registration -> detectron2's COCOEvaluator."""

import importlib.util
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances, pairwise_iou

from clock_distill.data.coco_export import kitti_to_coco, register_kitti_as_coco, write_coco_json
from clock_distill.data.kitti import load_kitti_instances

REPO = Path(__file__).resolve().parents[1]


def _obj(kind, box, truncated=0.0, occluded=0):
    return {"type": kind, "truncated": truncated, "occluded": occluded, "bbox": list(box)}


def _record(kitti_id, objects, classes=("Car", "Pedestrian", "Cyclist")):
    """A record as load_kitti_instances makes it (no image file needed by kitti_to_coco)."""
    return {
        "file_name": f"/data/kitti/training/image_2/{kitti_id}.png",
        "image_id": kitti_id,
        "height": 375,
        "width": 1242,
        "annotations": [
            {"bbox": list(o["bbox"]), "bbox_mode": BoxMode.XYXY_ABS, "category_id": classes.index(o["type"]),
             "truncated": o["truncated"], "occluded": o["occluded"]}
            for o in objects if o["type"] in classes
        ],
        "kitti_objects": objects,
    }


RECORDS = [
    _record("000007", [
        _obj("Car", (10, 20, 110, 70), 0.1, 1),
        _obj("Van", (200, 50, 300, 150)),
        _obj("DontCare", (400, 100, 460, 120), -1, -1),
        _obj("Pedestrian", (500, 100, 520, 160)),
        _obj("Truck", (600, 100, 700, 200)),
    ]),
    _record("000012", [
        _obj("Person_sitting", (5, 5, 25, 45)),
        _obj("Cyclist", (30.5, 40.25, 60.5, 100.75), 0.0, 2),
    ]),
]


def test_kitti_to_coco_boxes_ids_categories():
    coco = kitti_to_coco(RECORDS, ("Car", "Pedestrian", "Cyclist"), image_root="/data/kitti/training/image_2")
    assert coco["categories"] == [
        {"id": 1, "name": "Car", "supercategory": "kitti"},
        {"id": 2, "name": "Pedestrian", "supercategory": "kitti"},
        {"id": 3, "name": "Cyclist", "supercategory": "kitti"},
    ]
    assert [(im["id"], im["file_name"], im["height"], im["width"], im["kitti_id"]) for im in coco["images"]] == [
        (7, "000007.png", 375, 1242, "000007"), (12, "000012.png", 375, 1242, "000012"),
    ]
    anns = coco["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))  # from 1: pycocotools treats 0 as unmatched
    regular = [(a["image_id"], a["category_id"], a["bbox"], a["area"]) for a in anns if not a["iscrowd"]]
    assert regular == [
        (7, 1, [10.0, 20.0, 100.0, 50.0], 5000.0),
        (7, 2, [500.0, 100.0, 20.0, 60.0], 1200.0),
        (12, 3, [30.5, 40.25, 30.0, 60.5], 1815.0),
    ]
    car = next(a for a in anns if a["kitti_type"] == "Car")
    assert (car["truncated"], car["occluded"]) == (0.1, 1)
    # DontCare: a crowd box of every class; Van: of Car; Person_sitting: of Pedestrian; Truck: nothing.
    crowd = sorted((a["image_id"], a["kitti_type"], a["category_id"], tuple(a["bbox"])) for a in anns if a["iscrowd"])
    assert crowd == [
        (7, "DontCare", 1, (400.0, 100.0, 60.0, 20.0)),
        (7, "DontCare", 2, (400.0, 100.0, 60.0, 20.0)),
        (7, "DontCare", 3, (400.0, 100.0, 60.0, 20.0)),
        (7, "Van", 1, (200.0, 50.0, 100.0, 100.0)),
        (12, "Person_sitting", 2, (5.0, 5.0, 20.0, 40.0)),
    ]
    assert all(a["iscrowd"] in (0, 1) for a in anns)


def test_kitti_to_coco_plain_and_class_subset():
    plain = kitti_to_coco(RECORDS, ("Car", "Pedestrian", "Cyclist"), ignore_regions=False)
    assert len(plain["annotations"]) == 3 and not any(a["iscrowd"] for a in plain["annotations"])
    assert plain["images"][0]["file_name"] == "/data/kitti/training/image_2/000007.png"  # no image_root: as is

    car_only = [_record(r["image_id"], r["kitti_objects"], ("Car",)) for r in RECORDS]
    coco = kitti_to_coco(car_only, ("Car",))
    assert coco["categories"] == [{"id": 1, "name": "Car", "supercategory": "kitti"}]
    assert sorted((a["kitti_type"], a["iscrowd"]) for a in coco["annotations"]) == [
        ("Car", 0), ("DontCare", 1), ("Van", 1),  # Person_sitting is neutral for no class here
    ]


def test_kitti_to_coco_input_errors():
    with pytest.raises(ValueError, match="loaded with classes"):
        kitti_to_coco(RECORDS, ("Pedestrian", "Car", "Cyclist"))  # records use Car=0
    with pytest.raises(ValueError, match="zero-padded integer"):
        kitti_to_coco([{**RECORDS[0], "image_id": "seq3_000007"}], ("Car", "Pedestrian", "Cyclist"))
    with pytest.raises(ValueError, match="same COCO image id"):
        kitti_to_coco([RECORDS[0], {**RECORDS[0], "image_id": "7"}], ("Car", "Pedestrian", "Cyclist"))
    no_objects = [{k: v for k, v in r.items() if k != "kitti_objects"} for r in RECORDS]
    with pytest.raises(ValueError, match="needs the record's kitti_objects"):
        kitti_to_coco(no_objects, ("Car", "Pedestrian", "Cyclist"))
    assert len(kitti_to_coco(no_objects, ("Car", "Pedestrian", "Cyclist"), ignore_regions=False)["annotations"]) == 3
    with pytest.raises(ValueError, match="other than DontCare"):
        kitti_to_coco(RECORDS, ("Car", "DontCare"))
    with pytest.raises(ValueError, match="not under image_root"):
        kitti_to_coco(RECORDS, ("Car", "Pedestrian", "Cyclist"), image_root="/elsewhere")


def test_cli_writes_a_json_pycocotools_reads(synthetic_kitti, tmp_path, capsys):
    from pycocotools.coco import COCO

    spec = importlib.util.spec_from_file_location("kitti_to_coco_cli", REPO / "tools" / "kitti_to_coco.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / "val.json"
    assert cli.main([str(synthetic_kitti), "--split", "val", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    records = load_kitti_instances(synthetic_kitti, "val")
    coco = COCO(str(out))
    assert sorted(coco.getImgIds()) == sorted(int(r["image_id"]) for r in records)
    n_regular = sum(len(r["annotations"]) for r in records)
    assert len(coco.getAnnIds(iscrowd=False)) == n_regular > 0
    n_dontcare = sum(o["type"] == "DontCare" for r in records for o in r["kitti_objects"])
    n_vans = sum(o["type"] == "Van" for r in records for o in r["kitti_objects"])
    n_sitting = sum(o["type"] == "Person_sitting" for r in records for o in r["kitti_objects"])
    assert len(coco.dataset["annotations"]) == n_regular + 3 * n_dontcare + n_vans + n_sitting
    for r in records:  # every box back to XYXY equals the label's, in the label's order
        got = [a["bbox"] for a in coco.imgToAnns[int(r["image_id"])] if not a["iscrowd"]]
        back = [[x, y, x + w, y + h] for x, y, w, h in got]
        assert np.allclose(back, [a["bbox"] for a in r["annotations"]], rtol=0, atol=1e-9)
    assert cli.main([str(synthetic_kitti), "--split", "nope", "--out", str(tmp_path / "x.json")]) == 1
    assert "ImageSets/nope.txt" in capsys.readouterr().err


def test_registration_not_at_import():
    code = (
        "import detectron2.data as d\n"
        "before = set(d.DatasetCatalog.list())\n"
        "import clock_distill, clock_distill.data, clock_distill.data.coco_export\n"
        "new = set(d.DatasetCatalog.list()) - before\n"
        "assert not new, new\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


# ----------------------------------------------------------------------------------------------
# End to end through detectron2's COCOEvaluator


@pytest.fixture(scope="module")
def coco_val(synthetic_kitti, tmp_path_factory):
    """Registered COCO datasets of the synthetic val split: {"crowd": name, "plain": name}."""
    out = tmp_path_factory.mktemp("coco_json")
    tag = uuid.uuid4().hex[:8]
    names = {"crowd": f"kitti_coco_val_{tag}", "plain": f"kitti_coco_val_plain_{tag}"}
    register_kitti_as_coco(names["crowd"], synthetic_kitti, "val", out / "val.json")
    register_kitti_as_coco(names["plain"], synthetic_kitti, "val", out / "val_plain.json", ignore_regions=False)
    yield names
    for name in names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_register_metadata_and_reuse(coco_val, synthetic_kitti, tmp_path):
    meta = MetadataCatalog.get(coco_val["crowd"])
    assert meta.evaluator_type == "coco" and meta.json_file.endswith("val.json")
    assert meta.thing_classes == ["Car", "Pedestrian", "Cyclist"]
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}
    # Loading through detectron2 sets the same metadata again (Metadata refuses a different value).
    dicts = DatasetCatalog.get(coco_val["crowd"])
    assert [d["image_id"] for d in dicts] == sorted(int(i) for i in (synthetic_kitti / "ImageSets/val.txt").read_text().split())
    assert Path(dicts[0]["file_name"]).is_file()
    assert {a["category_id"] for d in dicts for a in d["annotations"]} <= {0, 1, 2}
    assert any(a["iscrowd"] for d in dicts for a in d["annotations"])

    register_kitti_as_coco(coco_val["crowd"], synthetic_kitti, "val", meta.json_file)  # same: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_kitti_as_coco(coco_val["crowd"], synthetic_kitti, "train", meta.json_file)
    # An existing json of another split is not silently reused.
    other = f"kitti_coco_other_{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="was exported with"):
        register_kitti_as_coco(other, synthetic_kitti, "train", meta.json_file)
    assert other not in DatasetCatalog.list()
    json_path = tmp_path / "train.json"
    write_coco_json(synthetic_kitti, "train", json_path)
    register_kitti_as_coco(other, synthetic_kitti, "train", json_path)  # matching json: reused
    try:
        assert json.loads(json_path.read_text())["info"]["split"] == "train"
    finally:
        DatasetCatalog.remove(other)
        MetadataCatalog.remove(other)


def _predictions(dataset_dicts, transform=None, extra=None):
    """(inputs, outputs) of a detector that predicts every non-crowd GT box with score 1.

    ``transform`` maps the (N, 4) XYXY boxes of an image to the predicted ones; ``extra``
    maps a dataset dict to a list of (xyxy, contiguous class, score) added to its predictions.
    """
    inputs, outputs = [], []
    for d in dataset_dicts:
        anns = [a for a in d["annotations"] if not a["iscrowd"]]
        boxes = torch.tensor(
            [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns], dtype=torch.float64
        ).reshape(-1, 4)
        if transform is not None:
            boxes = transform(boxes)
        classes, scores = [a["category_id"] for a in anns], [1.0] * len(anns)
        for box, cls, score in (extra(d) if extra else []):
            boxes = torch.cat([boxes, torch.tensor([box], dtype=torch.float64)])
            classes.append(cls)
            scores.append(score)
        inst = Instances(
            (d["height"], d["width"]),
            pred_boxes=Boxes(boxes.float()),
            scores=torch.tensor(scores),
            pred_classes=torch.tensor(classes, dtype=torch.long),
        )
        inputs.append({"image_id": d["image_id"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def _evaluate(name, inputs, outputs, use_fast_impl=False):
    from detectron2.evaluation import COCOEvaluator

    evaluator = COCOEvaluator(name, tasks=("bbox",), distributed=False, use_fast_impl=use_fast_impl)
    evaluator.reset()
    evaluator.process(inputs, outputs)
    return evaluator.evaluate()["bbox"]


def _shrink(boxes, area_ratio):
    """Scale each XYXY box about its centre to ``area_ratio`` of its area: IoU with it = area_ratio."""
    f = area_ratio ** 0.5
    c, wh = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * f / 2
    return torch.cat([c - wh, c + wh], dim=1)


def test_coco_evaluator_perfect_and_shrunk_boxes(coco_val):
    dicts = DatasetCatalog.get(coco_val["crowd"])
    present = {a["category_id"] for d in dicts for a in d["annotations"] if not a["iscrowd"]}
    assert present == {0, 1, 2}, "the synthetic val split should hold every class"

    res = _evaluate(coco_val["crowd"], *_predictions(dicts))
    for key in ("AP", "AP50", "AP75", "AP-Car", "AP-Pedestrian", "AP-Cyclist"):
        assert res[key] == pytest.approx(100.0), (key, res)

    # Every box shrunk to IoU 0.72 with its object: a match at IoU thresholds 0.50..0.70 (5 of
    # the 10) and none at 0.75..0.95, so AP = 100 * 5/10 = 50, AP50 = 100, AP75 = 0, provided no
    # shrunk box overlaps another object of its class as much (checked here: the synthetic
    # scenes do have overlapping cars; shifted boxes would match the neighbour).
    for d in dicts:
        anns = [a for a in d["annotations"] if not a["iscrowd"]]
        gt = torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]).reshape(-1, 4)
        iou = pairwise_iou(Boxes(_shrink(gt, 0.72)), Boxes(gt))
        assert torch.allclose(iou.diag(), torch.full((len(anns),), 0.72), atol=1e-5)
        cls = torch.tensor([a["category_id"] for a in anns])
        others = (cls[:, None] == cls[None, :]) & ~torch.eye(len(anns), dtype=torch.bool)
        assert (iou[others] < 0.70).all()
    res = _evaluate(coco_val["crowd"], *_predictions(dicts, transform=lambda b: _shrink(b, 0.72)))
    assert res["AP"] == pytest.approx(50.0) and res["AP50"] == pytest.approx(100.0)
    assert res["AP75"] == pytest.approx(0.0)
    for key in ("AP-Car", "AP-Pedestrian", "AP-Cyclist"):
        assert res[key] == pytest.approx(50.0), (key, res)


def test_dontcare_and_van_absorb_detections_only_as_crowd(coco_val):
    """A top-scored Car detection inside a DontCare box, or on a Van, costs nothing with
    ignore_regions (as in the KITTI devkit) and is a false positive without."""
    from detectron2.data.datasets import load_coco_json

    meta = MetadataCatalog.get(coco_val["crowd"])
    # As DatasetCatalog.get loads it, plus each annotation's kitti_type.
    dicts = load_coco_json(meta.json_file, meta.image_root, coco_val["crowd"], extra_annotation_keys=["kitti_type"])
    plain_dicts = DatasetCatalog.get(coco_val["plain"])
    assert [d["image_id"] for d in plain_dicts] == [d["image_id"] for d in dicts]

    def xyxy(anns):
        return torch.tensor(
            [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns], dtype=torch.float64
        ).reshape(-1, 4)

    for kitti_type, area_ratio in (("DontCare", 0.04), ("Van", 1.0)):
        # One Car detection per such region (the DontCare box's central 4%, or the whole Van
        # box), scored above every true detection, where it overlaps no Car object enough to
        # match it (so that it tests the crowd rule, not a duplicate detection).
        extras = {}
        for d in dicts:
            cars = xyxy([a for a in d["annotations"] if a["category_id"] == 0 and not a["iscrowd"]])
            regions = xyxy([a for a in d["annotations"] if a["iscrowd"] and a["category_id"] == 0
                            and a["kitti_type"] == kitti_type])
            fps = _shrink(regions, area_ratio)
            if len(cars):
                fps = fps[pairwise_iou(Boxes(fps), Boxes(cars)).max(dim=1).values < 0.5]
            extras[d["image_id"]] = [(box, 0, 2.0) for box in fps.tolist()]
        assert sum(map(len, extras.values())) > 0, f"the synthetic val split should have a {kitti_type} box"

        with_crowd = _evaluate(coco_val["crowd"], *_predictions(dicts, extra=lambda d: extras[d["image_id"]]))
        assert with_crowd["AP-Car"] == pytest.approx(100.0), (kitti_type, with_crowd)
        plain = _evaluate(coco_val["plain"], *_predictions(plain_dicts, extra=lambda d: extras[d["image_id"]]))
        assert plain["AP-Car"] < 100.0 - 1e-6, (kitti_type, plain)
        assert plain["AP-Pedestrian"] == pytest.approx(100.0) and plain["AP-Cyclist"] == pytest.approx(100.0)


def test_use_fast_impl_needs_the_cpp_extension(coco_val):
    """detectron2's default COCOEvaluator(use_fast_impl=True) calls detectron2._C, which this
    pure-Python detectron2 build does not have: it fails in evaluate(), naming the op."""
    from detectron2._C import MissingCppOpError

    dicts = DatasetCatalog.get(coco_val["crowd"])
    with pytest.raises(MissingCppOpError, match=r"detectron2\._C\.\w+ is a C\+\+ op.*pure-Python build"):
        _evaluate(coco_val["crowd"], *_predictions(dicts), use_fast_impl=True)


def _noisy_predictions(dicts, seed):
    """Every GT box jittered by up to 15% of its size, random scores, and a false positive per
    image: an AP strictly between 0 and 100, so that the engines have something to disagree on."""
    g = torch.Generator().manual_seed(seed)

    def jitter(b):
        wh = (b[:, 2:] - b[:, :2]).repeat(1, 2)
        return b + (torch.rand(b.shape, generator=g, dtype=b.dtype) - 0.5) * 0.3 * wh

    inputs, outputs = _predictions(dicts, transform=jitter, extra=lambda d: [((5.0, 5.0, 60.0, 40.0), 1, 0.5)])
    for out in outputs:
        inst = out["instances"]
        inst.scores = torch.rand(len(inst), generator=g)
    return inputs, outputs


@pytest.mark.parametrize("fast", [True, False], ids=["faster_coco_eval", "fallback"])
def test_our_coco_evaluator_gives_the_official_numbers(coco_val, tmp_path, monkeypatch, caplog, fast):
    """clock_distill's COCOEvaluator (what the training script builds for COCO datasets):
    faster-coco-eval, or pycocotools with a warning when it is missing, equals detectron2's
    official pycocotools path on every key, with crowd regions and without."""
    from clock_distill.evaluation import coco_evaluator
    from clock_distill.evaluation.kitti_evaluator import build_evaluator

    if not fast:
        monkeypatch.setattr(coco_evaluator, "fast_backend_available", lambda: False)
    for kind, name in coco_val.items():
        inputs, outputs = _noisy_predictions(DatasetCatalog.get(name), seed=3)
        ref = _evaluate(name, inputs, outputs)
        out = tmp_path / kind
        ev = build_evaluator(name, output_dir=str(out), tasks=("bbox",), distributed=False)
        assert isinstance(ev, coco_evaluator.COCOEvaluator)
        assert ev.backend == ("faster_coco_eval" if fast else "pycocotools")
        assert fast or "falls back to pycocotools" in caplog.text  # never a silent fallback
        ev.reset()
        ev.process(inputs, outputs)
        got = ev.evaluate()["bbox"]
        assert set(got) == set(ref) and 5.0 < ref["AP"] < 95.0, ref
        for key in ref:
            assert got[key] == pytest.approx(ref[key], abs=1e-6), (kind, key, got[key], ref[key])
        saved = json.loads((out / "coco_instances_results.json").read_text())
        assert len(saved) == sum(len(o["instances"]) for o in outputs)
        assert {r["category_id"] for r in saved} <= {1, 2, 3}  # the dataset's ids, not contiguous ones


def test_bench_coco_eval_libraries_agree():
    from clock_distill.evaluation.bench_coco import bench_coco_eval

    res = bench_coco_eval(num_images=40, dets_per_image=20, seed=1)
    assert res["problem"]["dets"] == 40 * 20
    assert res["agree_1e-6"], res
    assert 0.0 < res["pycocotools"]["stats"][0] < 1.0
