"""KITTI 2D object labels as a COCO instances json, for detectron2's ``COCOEvaluator``.

The official KITTI metric is :mod:`clock_distill.evaluation.kitti`. COCO AP (0.5:0.95) on
KITTI is what many DETR papers report besides it; this module makes that number with the
COCO API instead of reimplementing it.

How KITTI's ignore semantics are represented (``ignore_regions=True``, the default)
----------------------------------------------------------------------------------
COCO has one ignore mechanism, ``iscrowd=1`` ground truth, and its rules (pycocotools
``COCOeval.evaluateImg``) are:

* a crowd box is never a positive: missing it costs no recall;
* a detection is compared with a crowd box by ``intersection / area(detection)`` (not IoU),
  and is matched to one only if it matched no regular box of its category; a detection so
  matched is ignored (neither TP nor FP), and one crowd box can absorb any number of them;
* crowd boxes are per category, like every COCO annotation.

KITTI's ``DontCare`` marks unlabelled regions (far, small road users). The devkit
(``evaluate_object.cpp``) ignores a detection that matched no object if
``intersection / area(detection)`` with a DontCare box exceeds the class's overlap
threshold, for *every* class. That is the COCO crowd rule exactly (same overlap measure, a
detection first tries the real objects, any number absorbed), so:

    DontCare  ->  one ``iscrowd=1`` box per category (same box, each category id)

Neutral classes: when evaluating Car the devkit ignores Van ground truth, and when evaluating
Pedestrian it ignores Person_sitting (a detection on them is neither TP nor FP; missing them
costs nothing). COCO's closest representation is a crowd box of the class they are neutral
for, so:

    Van             ->  ``iscrowd=1`` box of category Car          (if Car is a class)
    Person_sitting  ->  ``iscrowd=1`` box of category Pedestrian   (if Pedestrian is a class)

This one is an approximation, and more lenient than the devkit in two ways: the crowd overlap
``intersection / area(detection)`` admits a small Car box inside a Van, where the devkit uses
IoU, and one Van can absorb several Car detections, where the devkit lets an ignored object
absorb one. A type that is itself in ``class_names`` (e.g. classes Car and Van) is a regular
object of its own category *and* a crowd box of the category it is neutral for, as the devkit
treats it per class.

Other types (Truck, Tram, Misc, and classes not in ``class_names``) are left out, as in the
devkit (a detection on them is a false positive). COCO has no difficulty levels: every
labelled object counts, whatever its height, occlusion or truncation, so these APs are not
comparable to the KITTI Easy/Moderate/Hard numbers.

``ignore_regions=False`` leaves DontCare and neutral objects out altogether: plain COCO
over the labelled classes, what detectron2's ``convert_to_coco_json`` makes from the same
dataset dicts, and stricter (a Car detection on a Van is a false positive).

Training on the COCO registration is unaffected: detectron2's and clock_distill's mappers drop
``iscrowd=1`` annotations.

Ids: image ``id`` is the KITTI id as an integer (``"000123"`` -> 123, so it is the same in
every split and file); ``category_id`` is 1-based (``class_names[k]`` -> ``k + 1``), COCO's
convention, which detectron2 maps to contiguous ``k`` through
``thing_dataset_id_to_contiguous_id``; annotation ``id`` counts from 1 (pycocotools treats a
matched id 0 as "unmatched").

Nothing is registered at import: call :func:`register_kitti_as_coco`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from .kitti import KITTI_CLASSES, KITTI_TYPES, load_kitti_instances

__all__ = [
    "NEUTRAL_TYPES",
    "COCO_EXPORT_VERSION",
    "kitti_to_coco",
    "write_coco_json",
    "register_kitti_as_coco",
]

# Bumped whenever the json content for the same inputs changes; stored in the json's "info".
COCO_EXPORT_VERSION = 1

# For each class, the KITTI types the devkit ignores when evaluating it (evaluate_object.cpp).
NEUTRAL_TYPES = {"Car": ("Van",), "Pedestrian": ("Person_sitting",)}


def _xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _coco_image_id(kitti_id: str) -> int:
    """The KITTI id string as COCO's integer image id; KITTI ids are zero-padded integers."""
    if not (isinstance(kitti_id, str) and kitti_id.isascii() and kitti_id.isdigit()):
        raise ValueError(
            f"KITTI image id {kitti_id!r} is not a zero-padded integer like '000123'; "
            f"the COCO export uses int(id) as the COCO image id"
        )
    return int(kitti_id)


def kitti_to_coco(
    records: Sequence[dict],
    class_names: Sequence[str] = KITTI_CLASSES,
    ignore_regions: bool = True,
    image_root: str | os.PathLike | None = None,
) -> dict:
    """Convert KITTI detectron2 dataset dicts to a COCO instances json dict.

    Args:
        records: as :func:`clock_distill.data.kitti.load_kitti_instances` returns them
            (``file_name``, ``image_id`` str, ``height``, ``width``, ``annotations`` with
            ``bbox``/``bbox_mode``/``category_id`` = index in ``class_names``, and
            ``kitti_objects``), loaded with the same ``class_names``.
        class_names: the C detected classes; ``class_names[k]`` gets COCO category ``k + 1``.
        ignore_regions: DontCare and neutral objects as ``iscrowd=1`` boxes (see the module
            doc); False leaves them out. True needs every record's ``kitti_objects``.
        image_root: if given, ``file_name`` in the json is relative to it (a portable json;
            detectron2 joins it with the registered ``image_root``); otherwise the records'
            ``file_name`` as is.

    Returns:
        ``{"info", "images", "annotations", "categories"}``. images: N dicts ``id`` (int),
        ``file_name``, ``height``, ``width``, ``kitti_id``. annotations: ``id`` (1..M),
        ``image_id``, ``category_id`` (1..C), ``bbox`` [x, y, w, h] absolute pixels,
        ``area`` = w * h, ``iscrowd`` (0 or 1), ``kitti_type``, and for iscrowd=0
        ``truncated`` and ``occluded``. categories: C dicts ``id``, ``name``.
    """
    from detectron2.structures import BoxMode

    class_names = tuple(class_names)
    unknown = [c for c in class_names if c not in KITTI_TYPES or c == "DontCare"]
    if unknown or not class_names or len(set(class_names)) != len(class_names):
        raise ValueError(
            f"class_names must be distinct KITTI object types other than DontCare "
            f"({', '.join(t for t in KITTI_TYPES if t != 'DontCare')}); got {list(class_names)}"
        )
    cat_id = {c: k + 1 for k, c in enumerate(class_names)}
    # type -> the categories for which an object of that type is a crowd (ignore) box.
    crowd_for = {"DontCare": list(class_names)}
    for cls, neutral_types in NEUTRAL_TYPES.items():
        if cls in cat_id:
            for t in neutral_types:
                crowd_for.setdefault(t, []).append(cls)

    images, annotations, seen_ids = [], [], {}

    def add_annotation(image_id, category, bbox_xywh, iscrowd, kitti_type, extra=None):
        w, h = bbox_xywh[2], bbox_xywh[3]
        ann = {
            "id": len(annotations) + 1,
            "image_id": image_id,
            "category_id": cat_id[category],
            "bbox": bbox_xywh,
            "area": w * h,
            "iscrowd": iscrowd,
            "kitti_type": kitti_type,
        }
        ann.update(extra or {})
        annotations.append(ann)

    for rec in records:
        image_id = _coco_image_id(rec["image_id"])
        if image_id in seen_ids:
            raise ValueError(
                f"KITTI ids {seen_ids[image_id]!r} and {rec['image_id']!r} give the same COCO "
                f"image id {image_id}"
            )
        seen_ids[image_id] = rec["image_id"]
        file_name = rec["file_name"]
        if image_root is not None:
            rel = os.path.relpath(file_name, image_root)
            if rel.startswith(os.pardir):
                raise ValueError(f"image {file_name} is not under image_root {image_root}")
            file_name = rel
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": int(rec["height"]),
                "width": int(rec["width"]),
                "kitti_id": rec["image_id"],
            }
        )

        objects = rec.get("kitti_objects")
        if objects is not None:
            # The annotations must be the class_names objects of kitti_objects, in order, with
            # category_id = index in class_names: a record loaded with other classes would
            # otherwise be exported under the wrong category names without any error.
            labelled = [o["type"] for o in objects if o["type"] in cat_id]
            got = [
                class_names[a["category_id"]] if 0 <= a["category_id"] < len(class_names) else None
                for a in rec["annotations"]
            ]
            if got != labelled:
                raise ValueError(
                    f"image {rec['image_id']}: annotations {got} do not match the "
                    f"{list(class_names)} objects of kitti_objects {labelled}; were the records "
                    f"loaded with classes={list(class_names)}?"
                )
        elif ignore_regions:
            raise ValueError(
                f"image {rec['image_id']}: ignore_regions=True needs the record's kitti_objects "
                f"(DontCare and neutral objects); load with load_kitti_instances, or pass "
                f"ignore_regions=False"
            )

        for a in rec["annotations"]:
            k = a["category_id"]
            if not 0 <= k < len(class_names):
                raise ValueError(
                    f"image {rec['image_id']}: category_id {k} outside 0..{len(class_names) - 1}"
                )
            xyxy = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
            add_annotation(
                image_id, class_names[k], _xyxy_to_xywh(xyxy), 0, class_names[k],
                {"truncated": float(a["truncated"]), "occluded": int(a["occluded"])},
            )
        if ignore_regions:
            for o in objects:
                for category in crowd_for.get(o["type"], ()):
                    add_annotation(image_id, category, _xyxy_to_xywh(o["bbox"]), 1, o["type"])

    return {
        "info": {
            "description": "KITTI 2D objects exported by clock_distill.data.coco_export",
            "coco_export_version": COCO_EXPORT_VERSION,
            "classes": list(class_names),
            "ignore_regions": bool(ignore_regions),
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cat_id[c], "name": c, "supercategory": "kitti"} for c in class_names],
    }


def _image_root(root: str | os.PathLike) -> Path:
    # load_kitti_instances' default image_dir.
    return Path(root) / "training" / "image_2"


def write_coco_json(
    root: str | os.PathLike,
    split: str,
    out_json: str | os.PathLike,
    class_names: Sequence[str] = KITTI_CLASSES,
    ignore_regions: bool = True,
) -> dict:
    """Load KITTI ``root``/``split``, convert (:func:`kitti_to_coco`) and write ``out_json``.

    ``file_name`` is relative to ``ROOT/training/image_2``. The json's ``info`` records
    ``kitti_root`` (absolute) and ``split``, which :func:`register_kitti_as_coco` checks.
    The file is written to a temporary name and renamed, so a reader (another rank) never
    sees half of it. Returns the COCO dict.
    """
    root = Path(root).resolve()
    records = load_kitti_instances(root, split, class_names)
    coco = kitti_to_coco(records, class_names, ignore_regions, image_root=_image_root(root))
    coco["info"].update(kitti_root=str(root), split=split)
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_name(f".{out_json.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(coco))
    os.replace(tmp, out_json)
    return coco


def register_kitti_as_coco(
    name: str,
    root: str | os.PathLike,
    split: str,
    json_path: str | os.PathLike,
    class_names: Sequence[str] = KITTI_CLASSES,
    ignore_regions: bool = True,
    overwrite: bool = False,
) -> None:
    """Register KITTI ``root``/``split`` under ``name`` as a COCO-format dataset.

    Writes ``json_path`` (:func:`write_coco_json`) if it does not exist or ``overwrite``;
    an existing json made from another root, split, classes or ``ignore_regions`` is an
    error, not silently reused (labels edited since it was written are not detected: pass
    ``overwrite=True``). Then registers with detectron2's ``register_coco_instances``, so the
    metadata has ``json_file``, ``image_root``, ``evaluator_type="coco"``, and
    ``COCOEvaluator`` evaluates against the json. ``thing_classes`` and
    ``thing_dataset_id_to_contiguous_id`` ({k + 1: k}) are set now, not only when the
    dataset is first loaded, so that COCOEvaluator maps predicted classes 0..C-1 back to
    category ids even if nothing loaded the dataset dicts.

    Registering the same name again with the same arguments is a no-op; with different
    arguments it is an error.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    root = Path(root).resolve()
    class_names = list(class_names)
    json_path = str(Path(json_path).resolve())
    wanted_info = {
        "coco_export_version": COCO_EXPORT_VERSION,
        "classes": class_names,
        "ignore_regions": bool(ignore_regions),
        "kitti_root": str(root),
        "split": split,
    }
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if getattr(meta, "json_file", None) == json_path and getattr(meta, "kitti_coco_info", None) == wanted_info:
            return
        raise ValueError(
            f"dataset {name!r} is already registered with other arguments "
            f"(json_file={getattr(meta, 'json_file', None)!r}, "
            f"{getattr(meta, 'kitti_coco_info', None)})"
        )

    if overwrite or not os.path.exists(json_path):
        write_coco_json(root, split, json_path, class_names, ignore_regions)
    else:
        with open(json_path) as f:
            info = json.load(f).get("info", {})
        have = {k: info.get(k) for k in wanted_info}
        if have != wanted_info:
            raise ValueError(
                f"{json_path} was exported with {have}, not {wanted_info}; delete it, pass "
                f"overwrite=True, or choose another json_path"
            )

    register_coco_instances(
        name,
        {
            "thing_classes": class_names,
            "thing_dataset_id_to_contiguous_id": {k + 1: k for k in range(len(class_names))},
            "kitti_coco_info": wanted_info,
        },
        json_path,
        str(_image_root(root)),
    )
