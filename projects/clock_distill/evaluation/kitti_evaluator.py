"""``KITTIEvaluator``: the official KITTI 2D AP as a detectron2 DatasetEvaluator."""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
from detectron2.evaluation import DatasetEvaluator

from .kitti import evaluate_kitti, objects_to_anno, write_kitti_result_file

__all__ = ["KITTIEvaluator", "flatten_kitti_results", "build_evaluator"]

logger = logging.getLogger(__name__)


def flatten_kitti_results(results: dict) -> "OrderedDict[str, float]":
    """``{"Car": {"moderate": {"AP_R40": x}}}`` -> ``{"Car/moderate/AP_R40": x}`` for EventStorage."""
    flat = OrderedDict()
    for cls, per_level in results.items():
        for level, metrics in per_level.items():
            for metric, value in metrics.items():
                flat[f"{cls}/{level}/{metric}"] = value
    return flat


class KITTIEvaluator(DatasetEvaluator):
    """Evaluate a registered KITTI dataset (``evaluator_type="kitti"``) with the official 2D AP.

    Ground truth comes from the dataset records' ``kitti_objects`` (neutral classes and
    DontCare included), so the metric is the devkit's. Predictions are gathered from all
    ranks; the main rank evaluates and, with ``output_dir``, writes ``kitti_report.md``,
    ``kitti_report.json`` and PR curves, and (``export_results``) one devkit result file per
    image under ``output_dir/kitti_results/data/``.

    Returns ``{"kitti": {"Car/moderate/AP_R40": ..., "mAP/moderate/AP_R40": ...}}``.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        export_results: bool = False,
        write_report: bool = True,
    ):
        from detectron2.data import MetadataCatalog

        self.dataset_name = dataset_name
        meta = MetadataCatalog.get(dataset_name)
        if getattr(meta, "evaluator_type", None) != "kitti":
            raise ValueError(f"dataset {dataset_name!r} is not a registered KITTI dataset (evaluator_type != 'kitti')")
        self.class_names = list(meta.thing_classes)
        self.output_dir = output_dir
        self.distributed = distributed
        self.export_results = export_results
        self.write_report = write_report
        self._predictions: list[dict] = []

    def reset(self) -> None:
        self._predictions = []

    def process(self, inputs, outputs) -> None:
        """inputs: mapped dicts with ``image_id``; outputs: ``[{"instances": Instances}]``."""
        for inp, out in zip(inputs, outputs):
            inst = out["instances"].to("cpu")
            self._predictions.append(
                {
                    "image_id": inp["image_id"],
                    "boxes": inst.pred_boxes.tensor.numpy().astype(np.float64),
                    "scores": inst.scores.numpy().astype(np.float64),
                    "classes": inst.pred_classes.numpy(),
                }
            )

    def _detection_anno(self, pred: dict) -> dict:
        n = len(pred["scores"])
        return {
            "name": np.array([self.class_names[c] for c in pred["classes"]], dtype=object).astype(str)
            if n else np.zeros(0, dtype=str),
            "truncated": np.full(n, -1.0),
            "occluded": np.full(n, -1, dtype=np.int64),
            "alpha": np.full(n, -10.0),
            "bbox": pred["boxes"].reshape(n, 4),
            "dimensions": np.full((n, 3), -1.0),
            "location": np.full((n, 3), -1000.0),
            "rotation_y": np.full(n, -10.0),
            "score": pred["scores"],
        }

    def evaluate(self):
        from detectron2.data import DatasetCatalog
        from detectron2.utils import comm

        predictions = self._predictions
        if self.distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        if not predictions:
            logger.warning("KITTIEvaluator received no predictions")
            return {}
        by_id = {p["image_id"]: p for p in predictions}
        records = [r for r in DatasetCatalog.get(self.dataset_name) if r["image_id"] in by_id]
        if len(records) != len(by_id):
            unknown = sorted(set(by_id) - {r["image_id"] for r in records})[:5]
            raise KeyError(f"predictions for image ids not in {self.dataset_name}: {unknown}")
        gt_annos = [objects_to_anno(r["kitti_objects"]) for r in records]
        dt_annos = [self._detection_anno(by_id[r["image_id"]]) for r in records]
        results, curves = evaluate_kitti(gt_annos, dt_annos, classes=self.class_names, return_curves=True)
        if self.output_dir:
            Path(self.output_dir).mkdir(parents=True, exist_ok=True)
            if self.write_report:
                from .report import write_kitti_report

                write_kitti_report(results, self.output_dir, pr_curves=curves, title=f"KITTI 2D AP on {self.dataset_name}")
            if self.export_results:
                out = Path(self.output_dir) / "kitti_results" / "data"
                out.mkdir(parents=True, exist_ok=True)
                for r, anno in zip(records, dt_annos):
                    write_kitti_result_file(out / f"{r['image_id']}.txt", anno)
        return {"kitti": flatten_kitti_results(results)}


def build_evaluator(dataset_name: str, output_dir: Optional[str] = None, **kwargs):
    """The evaluator for a registered dataset, chosen by its ``evaluator_type``: ``kitti`` ->
    KITTIEvaluator; ``coco`` -> detectron2's COCOEvaluator with faster-coco-eval as its fast
    implementation (:mod:`.coco_evaluator`; pycocotools when it is not installed)."""
    from detectron2.data import MetadataCatalog

    from .coco_evaluator import COCOEvaluator

    kind = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
    if kind == "kitti":
        return KITTIEvaluator(dataset_name, output_dir=output_dir, **kwargs)
    if kind == "coco":
        return COCOEvaluator(dataset_name, output_dir=output_dir, **kwargs)
    raise ValueError(f"no evaluator for dataset {dataset_name!r} with evaluator_type={kind!r} (expected 'kitti' or 'coco')")
