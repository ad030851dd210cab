"""KITTI 2D object detection: label parsing and detectron2 dataset registration.

Layout of a KITTI root (the official download, or ``tools/make_synthetic_kitti.py``)::

    ROOT/training/image_2/000000.png
    ROOT/training/label_2/000000.txt     15 fields per object (16 with a score, in result files)
    ROOT/ImageSets/train.txt, val.txt    image ids, one per line

Nothing is registered at import: call :func:`register_kitti` (or :func:`register_kitti_splits`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence

# The official difficulty limits live with the metric (numpy-only), the one source of truth.
from ..evaluation.kitti import DIFFICULTIES, MAX_OCCLUSION, MAX_TRUNCATION, MIN_HEIGHT

KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")
# Every object type the devkit knows. DontCare marks unlabelled regions; Van and
# Person_sitting are "neutral" for Car and Pedestrian in the official evaluation.
KITTI_TYPES = (
    "Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare",
)

LABEL_FIELDS = (
    "type", "truncated", "occluded", "alpha", "bbox", "dimensions", "location", "rotation_y",
)



class KittiFormatError(ValueError):
    """A KITTI file is malformed. The message names the file and, for labels, the line."""


def parse_kitti_label_line(line: str, where: str = "<string>") -> dict:
    """Parse one KITTI label line (15 fields, or 16 with a trailing detection score).

    Returns a dict with ``type`` (str), ``truncated`` (float), ``occluded`` (int),
    ``alpha`` (float), ``bbox`` [x1, y1, x2, y2] (floats, pixels), ``dimensions`` [h, w, l],
    ``location`` [x, y, z], ``rotation_y`` (float) and, with 16 fields, ``score`` (float).
    ``where`` (e.g. ``"path:line"``) prefixes every error message.
    """
    fields = line.split()
    if len(fields) not in (15, 16):
        raise KittiFormatError(
            f"{where}: expected 15 fields (16 with a score), got {len(fields)}: {line.strip()!r}"
        )
    obj_type = fields[0]
    if obj_type not in KITTI_TYPES:
        raise KittiFormatError(f"{where}: unknown object type {obj_type!r}; known: {', '.join(KITTI_TYPES)}")
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError as e:
        raise KittiFormatError(f"{where}: non-numeric field ({e}): {line.strip()!r}") from None
    occluded = values[1]
    if occluded != int(occluded) or int(occluded) not in (-1, 0, 1, 2, 3):
        raise KittiFormatError(f"{where}: occluded must be an integer in 0..3 (or -1), got {fields[2]!r}")
    x1, y1, x2, y2 = values[3:7]
    if x2 < x1 or y2 < y1:
        raise KittiFormatError(f"{where}: bbox has x2 < x1 or y2 < y1: {x1} {y1} {x2} {y2}")
    obj = {
        "type": obj_type,
        "truncated": values[0],
        "occluded": int(occluded),
        "alpha": values[2],
        "bbox": [x1, y1, x2, y2],
        "dimensions": values[7:10],
        "location": values[10:13],
        "rotation_y": values[13],
    }
    if len(values) == 15:
        obj["score"] = values[14]
    return obj


def read_kitti_label_file(path: str | os.PathLike, with_lines: bool = False) -> list[dict]:
    """Parse a KITTI label (or result) file into a list of objects (see parse_kitti_label_line).

    Blank lines are skipped. A malformed line raises :class:`KittiFormatError` naming the file
    and the 1-based line number. ``with_lines`` adds each object's ``line`` number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"KITTI label file not found: {path}")
    objects = []
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                objects.append(parse_kitti_label_line(line, where=f"{path}:{lineno}"))
                if with_lines:
                    objects[-1]["line"] = lineno
    return objects


def format_kitti_label_line(obj: dict) -> str:
    """Format one object as a KITTI label line (16 fields when ``obj`` has a ``score``)."""
    vals = [
        obj["type"],
        f"{obj['truncated']:.2f}",
        str(int(obj["occluded"])),
        f"{obj['alpha']:.2f}",
        *(f"{v:.2f}" for v in obj["bbox"]),
        *(f"{v:.2f}" for v in obj["dimensions"]),
        *(f"{v:.2f}" for v in obj["location"]),
        f"{obj['rotation_y']:.2f}",
    ]
    if "score" in obj:
        vals.append(f"{obj['score']:.4f}")
    return " ".join(vals)


def kitti_difficulty(obj: dict) -> str | None:
    """The easiest difficulty whose filter admits ``obj`` (a parsed label), or None if none does.

    The devkit's filters: box height strictly above MIN_HEIGHT px, occlusion and truncation at
    most their limits. The levels nest: an Easy object is also Moderate and Hard.
    """
    height = obj["bbox"][3] - obj["bbox"][1]
    for i, level in enumerate(DIFFICULTIES):
        if (
            height > MIN_HEIGHT[i]
            and obj["occluded"] <= MAX_OCCLUSION[i]
            and obj["truncated"] <= MAX_TRUNCATION[i]
        ):
            return level
    return None


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Image ids of ``ROOT/ImageSets/{split}.txt``, in file order."""
    path = Path(root) / "ImageSets" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"KITTI split file not found: {path}. The official download has no ImageSets/; "
            f"put the split files (one image id per line, e.g. the common 3712/3769 train/val "
            f"split) there. See README, 'Real KITTI'."
        )
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise KittiFormatError(f"{path}: split file is empty")
    return ids


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the image header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise KittiFormatError(f"KITTI image {path} cannot be read as an image ({type(e).__name__}: {e})") from None
    return h, w


def load_kitti_instances(
    root: str | os.PathLike,
    split: str,
    classes: Sequence[str] = KITTI_CLASSES,
    image_dir: str = "training/image_2",
    label_dir: str = "training/label_2",
) -> list[dict]:
    """Load a KITTI split as detectron2 dataset dicts.

    Each record has ``file_name``, ``image_id`` (the KITTI id string), ``height``, ``width``,
    ``annotations`` (one per object whose type is in ``classes``: ``bbox`` XYXY_ABS,
    ``bbox_mode``, ``category_id`` = index in ``classes``, ``truncated``, ``occluded``) and
    ``kitti_objects``: every parsed label line (neutral classes, DontCare and all), which the
    official evaluation needs.
    """
    from detectron2.structures import BoxMode

    root = Path(root)
    unknown = [c for c in classes if c not in KITTI_TYPES]
    if unknown:
        raise ValueError(f"classes {unknown} are not KITTI object types ({', '.join(KITTI_TYPES)})")
    class_to_id = {c: i for i, c in enumerate(classes)}
    records, zero_area = [], []
    for image_id in read_split(root, split):
        image_path = root / image_dir / f"{image_id}.png"
        if not image_path.is_file():
            raise FileNotFoundError(f"KITTI image not found: {image_path} (listed in ImageSets/{split}.txt)")
        label_path = root / label_dir / f"{image_id}.txt"
        objects = read_kitti_label_file(label_path, with_lines=True)
        height, width = _image_size(image_path)
        annotations = []
        for obj in objects:
            where = f"{label_path}:{obj.pop('line')}"
            x1, y1, x2, y2 = obj["bbox"]
            if min(x1, y1) < 0:
                raise KittiFormatError(f"{where}: bbox has a negative coordinate: {x1} {y1} {x2} {y2}")
            if obj["type"] not in class_to_id:
                continue
            if x2 <= x1 or y2 <= y1:
                # A DETR cannot match an empty box (its GIoU is undefined): dropped from
                # training, counted once per split; evaluation keeps it (the devkit's height rule).
                zero_area.append(where)
                continue
            annotations.append({
                "bbox": list(obj["bbox"]),
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": class_to_id[obj["type"]],
                "truncated": obj["truncated"],
                "occluded": obj["occluded"],
            })
        records.append(
            {
                "file_name": str(image_path),
                "image_id": image_id,
                "height": height,
                "width": width,
                "annotations": annotations,
                "kitti_objects": objects,
            }
        )
    if zero_area:
        import logging

        logging.getLogger(__name__).warning(
            "%s (split %s): dropped %d zero-area ground-truth boxes from the annotations, e.g. %s",
            root, split, len(zero_area), ", ".join(zero_area[:3]))
    return records


def register_kitti(
    name: str,
    root: str | os.PathLike,
    split: str,
    classes: Sequence[str] = KITTI_CLASSES,
    prepare: Optional[Callable[[], object]] = None,
) -> None:
    """Register a KITTI split in DatasetCatalog/MetadataCatalog under ``name``.

    ``prepare`` runs each time the split is loaded, before reading (e.g. generate a synthetic
    set on first use, as torchvision's ``download=True``).

    Metadata: ``thing_classes``, ``evaluator_type="kitti"``, ``kitti_root``, ``kitti_split``.
    Registering the same name again with the same arguments is a no-op; with different
    arguments it is an error (a silently reused name would evaluate the wrong data).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = str(Path(root))
    classes = tuple(classes)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        same = (
            getattr(meta, "kitti_root", None) == root
            and getattr(meta, "kitti_split", None) == split
            and tuple(getattr(meta, "thing_classes", ())) == classes
        )
        if same:
            return
        raise ValueError(
            f"dataset {name!r} is already registered with other arguments "
            f"(root={getattr(meta, 'kitti_root', None)!r}, split={getattr(meta, 'kitti_split', None)!r})"
        )
    def load():
        if prepare is not None:
            prepare()
        return load_kitti_instances(root, split, classes)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(classes), evaluator_type="kitti", kitti_root=root, kitti_split=split
    )


def register_kitti_splits(
    prefix: str,
    root: str | os.PathLike,
    splits: Sequence[str] = ("train", "val"),
    classes: Sequence[str] = KITTI_CLASSES,
    prepare: Optional[Callable[[], object]] = None,
) -> list[str]:
    """Register ``{prefix}_{split}`` for each split; returns the dataset names."""
    names = []
    for split in splits:
        register_kitti(f"{prefix}_{split}", root, split, classes, prepare)
        names.append(f"{prefix}_{split}")
    return names


def datasets_root() -> Path:
    """detectron2's convention: ``$DETECTRON2_DATASETS``, default ``./datasets``."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))
