"""COCO evaluation with faster-coco-eval's C++ ``COCOeval_faster``, pycocotools as the fallback.

detectron2's ``COCOEvaluator(use_fast_impl=True)`` needs detectron2's own C++ extension, which
the pure-Python build used here does not have (it raises). :class:`COCOEvaluator` keeps
detectron2's evaluator (the same inputs, outputs, result keys and ``coco_instances_results.json``)
and only swaps the engine for bbox and segm: faster-coco-eval when it is importable, else
pycocotools with a warning. Both give the same numbers (``tests/test_coco_path.py`` and
``python tools/benchmark.py eval --only coco_eval``, which also times them).
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Optional

from detectron2.evaluation import COCOEvaluator as _D2COCOEvaluator
from detectron2.utils.file_io import PathManager

__all__ = ["COCOEvaluator", "fast_backend_available"]


def fast_backend_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


class COCOEvaluator(_D2COCOEvaluator):
    """detectron2's COCOEvaluator whose ``use_fast_impl=True`` (the default, as in detectron2)
    means faster-coco-eval. ``use_fast_impl=False`` is detectron2's official pycocotools path,
    unchanged. Keypoints and a ``max_dets_per_image`` other than 100 go through detectron2's
    pycocotools path.
    """

    def __init__(self, dataset_name: str, tasks=None, distributed: bool = True, output_dir: Optional[str] = None,
                 *, use_fast_impl: bool = True, **kwargs):
        # detectron2's own fast path would call its missing C++ op; ours replaces it.
        super().__init__(dataset_name, tasks, distributed, output_dir, use_fast_impl=False, **kwargs)
        self._fast = use_fast_impl and fast_backend_available()
        if use_fast_impl and not self._fast:
            self._logger.warning("faster-coco-eval is not installed: COCO evaluation falls back to pycocotools "
                                 "(same numbers, slower); pip install faster-coco-eval")

    @property
    def backend(self) -> str:
        return "faster_coco_eval" if self._fast else "pycocotools"

    def _eval_predictions(self, predictions, img_ids=None):
        results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(results)
        # detectron2 summarizes a maxDets other than 100 with its own COCOeval subclass.
        if not self._fast or "keypoints" in tasks or self._max_dets_per_image[2] != 100:
            return super()._eval_predictions(predictions, img_ids)
        self._to_dataset_ids(results)
        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            self._logger.info(f"Saving results to {path}")
            with PathManager.open(path, "w") as f:
                f.write(json.dumps(results))
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        self._logger.info(f"Evaluating predictions with faster-coco-eval (tasks: {', '.join(sorted(tasks))}) ...")
        for task in sorted(tasks):
            coco_eval = self._evaluate_fast(results, task, img_ids) if results else None
            self._results[task] = self._derive_coco_results(coco_eval, task, class_names=self._metadata.get("thing_classes"))

    def _to_dataset_ids(self, results) -> None:
        """Contiguous class ids (the model's) -> the dataset's category ids, in place."""
        mapping = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        if mapping is None:
            return
        reverse = {v: k for k, v in mapping.items()}
        for r in results:
            if r["category_id"] not in reverse:
                raise ValueError(f"a prediction has class {r['category_id']}, but dataset {self._metadata.name!r} "
                                 f"has {len(reverse)} classes (contiguous ids 0..{len(reverse) - 1})")
            r["category_id"] = reverse[r["category_id"]]

    def _evaluate_fast(self, results, task: str, img_ids=None):
        from faster_coco_eval import COCO, COCOeval_faster

        if task == "segm":
            # As detectron2: without the box, the mask area defines small/medium/large.
            results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
        gt = COCO(self._coco_api.dataset, use_deepcopy=True)
        coco_eval = COCOeval_faster(gt, gt.loadRes(results), task, print_function=self._logger.info)
        coco_eval.params.maxDets = list(self._max_dets_per_image)
        if img_ids is not None:
            coco_eval.params.imgIds = img_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        return coco_eval
