"""Inspection pictures of DETRs and of their distillation, drawn with detectron2's Visualizer.

Four modes, each a function that returns one RGB picture (H_total, W, 3) uint8 made of panels
of the original image size stacked top to bottom (KITTI images are wide), each panel titled:

- :func:`draw_predictions`: ground truth, then each model's detections above a score.
- :func:`draw_target_queries`: per GT object, the GT box with each model's box and class
  probability for the target-aware query of that object, at a chosen decoder layer.
- :func:`draw_attention`: for chosen queries, where each model's cross-attention looks at a
  chosen layer: deformable sampling points on every level (colour = level, size = weight), or
  DAB-DETR's attention map over the memory cells.
- :func:`draw_memory`: LCMD's foreground mask and scale map on every level, then, per student,
  the per-cell teacher-student memory distance as a heat map (e.g. before and after distillation).

Everything goes through the models' own interface (``preprocess_image``, ``encode``,
``build_query_groups``, ``queries_at``, ``decode(..., return_attention=True)``): no hooks.
Models are passed as ``{name: model}`` (dicts keep their order: the panels follow it).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..distill.memory_loss import lcmd_weight_maps
from ..distill.target_queries import TargetQueries, point_query_groups
from ..modeling.layers import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh

__all__ = ["Sample", "save_png", "draw_predictions", "draw_target_queries", "draw_attention", "draw_memory", "select_queries",
           "MODES"]

MODES = ("predictions", "queries", "attention", "memory")
# One colour per model panel and per level (RGB in [0, 1]).
_MODEL_COLORS = ((0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.58, 0.4, 0.74), (0.55, 0.34, 0.29))
_LEVEL_COLORS = ((0.89, 0.1, 0.11), (1.0, 0.5, 0.0), (1.0, 0.9, 0.2), (0.3, 0.69, 0.29), (0.22, 0.49, 0.72))
_GT_COLOR = (0.1, 0.85, 0.1)


class Sample:
    """One image as the models see it and as it is drawn.

    image: (H, W, 3) uint8 RGB, the original image (drawn).
    model_input: a test-mapper dict (``image`` (3, H', W') resized, ``height``, ``width``).
    gt_boxes: (n, 4) XYXY in original pixels; gt_classes: (n,) contiguous class ids.
    """

    def __init__(self, image: np.ndarray, model_input: Dict, gt_boxes: Optional[Tensor] = None,
                 gt_classes: Optional[Tensor] = None, name: str = "image"):
        self.image, self.model_input, self.name = image, model_input, name
        self.gt_boxes = gt_boxes if gt_boxes is not None else torch.zeros(0, 4)
        self.gt_classes = gt_classes if gt_classes is not None else torch.zeros(0, dtype=torch.long)

    @classmethod
    def from_dataset_dict(cls, d: Dict, mapper) -> "Sample":
        """From a detectron2 dataset dict (``file_name``, ``image_id``, optional ``annotations``;
        crowd regions are not drawn as objects) and the test mapper that makes the model input."""
        from detectron2.data import detection_utils as utils
        from detectron2.structures import BoxMode

        anns = [a for a in d.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns],
                             dtype=torch.float32).reshape(-1, 4)
        classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.long)
        model_input = mapper({k: v for k, v in d.items() if k != "annotations"})
        return cls(utils.read_image(d["file_name"], format="RGB"), model_input, boxes, classes, name=str(d["image_id"]))

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def gt_normalized(self) -> Tensor:
        """(n, 4) cxcywh in [0, 1] of the image (the same fractions in the resized image)."""
        scale = torch.tensor([self.width, self.height, self.width, self.height], dtype=torch.float32)
        return box_xyxy_to_cxcywh(self.gt_boxes.float() / scale)


def save_png(path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB picture as PNG (parent folders made)."""
    from pathlib import Path

    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


# ----------------------------------------------------------------------------- drawing helpers
def _visualizer(image: np.ndarray, metadata=None):
    from detectron2.utils.visualizer import Visualizer

    return Visualizer(image, metadata=metadata, scale=1.0)


def _title(vis, text: str):
    vis.draw_text(text, (4, 2), font_size=max(7, vis.output.height // 20), color="w", horizontal_alignment="left")
    return vis


def _stack(panels: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(panels), axis=0)


def _heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a (H, W) map in [0, 1] over the image with a black-red-yellow ramp."""
    h = np.clip(heat, 0.0, 1.0)[..., None]
    ramp = np.concatenate([np.clip(3 * h, 0, 1), np.clip(3 * h - 1, 0, 1), np.clip(3 * h - 2, 0, 1)], -1) * 255
    mix = (1 - alpha * np.sqrt(h)) * image + alpha * np.sqrt(h) * ramp
    return mix.clip(0, 255).astype(np.uint8)


def _to_image(level_map: Tensor, valid_hw, size_hw) -> np.ndarray:
    """(h, w) map of one level -> (H, W) on the original image: crop the unpadded part, resize."""
    vh, vw = valid_hw
    m = level_map[:vh, :vw][None, None].float()
    return F.interpolate(m, size=size_hw, mode="nearest")[0, 0].cpu().numpy()


def _level_valid(enc, b: int) -> List[tuple]:
    """Per level, the (rows, cols) of image ``b`` that are not padding."""
    out = []
    for lvl, (h, w) in enumerate(enc.spatial_shapes.tolist()):
        rw, rh = enc.valid_ratios[b, lvl].tolist()
        out.append((max(1, round(rh * h)), max(1, round(rw * w))))
    return out


def _normalize(m: np.ndarray) -> np.ndarray:
    top = float(m.max())
    return m / top if top > 0 else m


# ----------------------------------------------------------------------------- model helpers
@torch.no_grad()
def _encode(model, sample: Sample):
    images = model.preprocess_image([sample.model_input])
    return images, model.encode(images)


def _ta_group(model, sample: Sample, content: Optional[str] = None):
    """The target-aware query group of the sample's GT objects for ``model`` (B = 1)."""
    if not len(sample.gt_classes):
        raise ValueError(f"{sample.name}: target-aware queries need ground-truth objects; this image has none "
                         "(use a registered dataset, not bare image paths)")
    if content is None:
        content = "label_encoder" if getattr(model, "label_enc", None) is not None else "class_code"
    targets = [{"labels": sample.gt_classes.to(model.device), "boxes": sample.gt_normalized().to(model.device)}]
    points = TargetQueries(content=content).points(targets)
    return point_query_groups(model, points)[0]


def select_queries(spec: str, model, enc, sample: Sample, content: Optional[str] = None):
    """The query group to inspect and the indices in it, from ``spec``:
    ``gt`` (one target-aware query per GT object), ``topk:K`` (the model's K best-scored main
    queries) or ``idx:i,j,...`` (main queries by index). Returns (group, indices, labels)."""
    with torch.no_grad():
        if spec == "gt":
            g = _ta_group(model, sample, content)
            n = len(sample.gt_classes)
            return g, list(range(n)), [f"GT {i}" for i in range(n)]
        groups, _ = model.build_query_groups(enc, None)
        main = groups[0]
        if spec.startswith("topk:"):
            k = int(spec.split(":", 1)[1])
            out = model.decode(enc, [main])[0]
            scores = out.logits[-1][0].sigmoid().max(-1).values
            idx = scores.topk(min(k, scores.numel())).indices.tolist()
            return main, idx, [f"q{i} {scores[i]:.2f}" for i in idx]
        if spec.startswith("idx:"):
            idx = [int(x) for x in spec.split(":", 1)[1].split(",") if x]
            bad = [i for i in idx if not 0 <= i < main.num_queries]
            if bad:
                raise ValueError(f"query indices {bad} out of range: the model has {main.num_queries} queries")
            return main, idx, [f"q{i}" for i in idx]
    raise ValueError(f"queries={spec!r}: expected 'gt', 'topk:K' or 'idx:i,j,...'")


# ----------------------------------------------------------------------------- the four modes
@torch.no_grad()
def draw_predictions(models: Dict[str, torch.nn.Module], sample: Sample, metadata=None,
                     score_thresh: float = 0.3) -> np.ndarray:
    """GT, then each model's detections with score >= ``score_thresh``: (H * (1 + M), W, 3)."""
    from detectron2.structures import Boxes, Instances

    gt = Instances((sample.height, sample.width), gt_boxes=Boxes(sample.gt_boxes.float()), gt_classes=sample.gt_classes)
    vis = _visualizer(sample.image, metadata)
    vis.overlay_instances(boxes=gt.gt_boxes, labels=[_label(metadata, int(c)) for c in gt.gt_classes],
                          assigned_colors=[_GT_COLOR] * len(gt))
    panels = [_title(vis, f"ground truth ({len(gt)} objects)").output.get_image()]
    for name, model in models.items():
        inst = model([sample.model_input])[0]["instances"].to("cpu")
        inst = inst[inst.scores >= score_thresh]
        vis = _visualizer(sample.image, metadata)
        vis.draw_instance_predictions(inst)
        panels.append(_title(vis, f"{name}: {len(inst)} detections >= {score_thresh:g}").output.get_image())
    return _stack(panels)


def _label(metadata, c: int) -> str:
    names = list(getattr(metadata, "thing_classes", []) or [])
    return names[c] if 0 <= c < len(names) else str(c)


@torch.no_grad()
def draw_target_queries(models: Dict[str, torch.nn.Module], sample: Sample, metadata=None, layer: int = -1,
                        content: Optional[str] = None) -> np.ndarray:
    """One panel: each GT box (green) with, per model, the box its target-aware query decodes
    at ``layer`` and the probability it gives the GT class. (H, W, 3)."""
    vis = _visualizer(sample.image, metadata)
    scale = torch.tensor([sample.width, sample.height] * 2, dtype=torch.float32)
    for box in sample.gt_boxes.tolist():
        vis.draw_box(box, edge_color=_GT_COLOR, line_style="-")
    for m, (name, model) in enumerate(models.items()):
        color = _MODEL_COLORS[m % len(_MODEL_COLORS)]
        _, enc = _encode(model, sample)
        out = model.decode(enc, [_ta_group(model, sample, content)])[0]
        boxes = box_cxcywh_to_xyxy(out.boxes[layer][0].float().cpu()) * scale
        probs = out.logits[layer][0].sigmoid().cpu()
        for i, c in enumerate(sample.gt_classes.tolist()):
            vis.draw_box(boxes[i].tolist(), edge_color=color, line_style="--")
            x0, y0 = boxes[i, 0].item(), boxes[i, 1].item() + m * max(8, sample.height // 24)
            vis.draw_text(f"{name[:1].upper()} {_label(metadata, c)} {probs[i, c]:.2f}", (x0, y0),
                          font_size=max(6, sample.height // 28), color=color, horizontal_alignment="left")
    layer_name = f"layer {layer if layer >= 0 else len(out.boxes) + layer}"
    names = ", ".join(f"{n[:1].upper()} = {n}" for n in models)
    return _title(vis, f"target-aware queries, {layer_name}: GT green, dashed {names}").output.get_image()


@torch.no_grad()
def draw_attention(models: Dict[str, torch.nn.Module], sample: Sample, metadata=None, queries: str = "gt",
                   layer: int = -1, max_queries: int = 6, content: Optional[str] = None) -> np.ndarray:
    """Per model a panel of where the chosen queries look at ``layer``: (H * M, W, 3).

    Deformable layers: every sampling point of every head, coloured by level, radius growing
    with its attention weight; each query's reference box is drawn dashed. DAB-DETR: the
    attention map (mean over heads and chosen queries) over the image, with the queries' boxes.
    """
    panels = []
    for name, model in models.items():
        images, enc = _encode(model, sample)
        group, idx, labels = select_queries(queries, model, enc, sample, content)
        idx, labels = idx[:max_queries], labels[:max_queries]
        out = model.decode(enc, [group], return_attention=True)[0]
        att = out.attention[layer]
        rh, rw = images.image_sizes[0]
        ph, pw = images.tensor.shape[-2:]
        sx, sy = sample.width / rw, sample.height / rh
        image = sample.image
        if "sampling_locations" not in att:
            w = att["attention_weights"][0, idx].mean((0, 1))  # (N,)
            (h_l, w_l), = enc.spatial_shapes.tolist()
            valid = _level_valid(enc, 0)[0]
            heat = _to_image(w.view(h_l, w_l), valid, (sample.height, sample.width))
            image = _heat_overlay(image, _normalize(heat))
        vis = _visualizer(image, metadata)
        boxes = box_cxcywh_to_xyxy(out.boxes[layer][0, idx].float().cpu()) * torch.tensor([sample.width, sample.height] * 2)
        for q, (i, lab) in enumerate(zip(idx, labels)):
            vis.draw_box(boxes[q].tolist(), edge_color=(1, 1, 1), line_style="--")
            vis.draw_text(lab, (boxes[q, 0].item(), boxes[q, 1].item()), font_size=max(6, sample.height // 28),
                          color="w", horizontal_alignment="left")
        if "sampling_locations" in att:
            loc = att["sampling_locations"][0, idx].cpu()  # (q, M, L, P, 2) in the padded map
            wts = att["attention_weights"][0, idx].cpu()  # (q, M, L, P)
            top = float(wts.max()) or 1.0
            for lvl in range(loc.shape[2]):
                pts = loc[:, :, lvl].reshape(-1, 2) * torch.tensor([pw * sx, ph * sy])
                for (x, y), a in zip(pts.tolist(), wts[:, :, lvl].reshape(-1).tolist()):
                    if 0 <= x < sample.width and 0 <= y < sample.height:
                        vis.draw_circle((x, y), color=_LEVEL_COLORS[lvl % len(_LEVEL_COLORS)],
                                        radius=1 + 5 * (a / top) ** 0.5)
        kind = "sampling points, colour = level, size = weight" if "sampling_locations" in att else "attention map"
        layer_name = layer if layer >= 0 else len(out.attention) + layer
        panels.append(_title(vis, f"{name}, layer {layer_name}, queries {queries}: {kind}").output.get_image())
    return _stack(panels)


def _best_linear_map(src: Tensor, dst: Tensor) -> Tensor:
    """``src`` (n, Ds) mapped by the least-squares affine map onto ``dst`` (n, Dt)."""
    a = torch.cat([src, torch.ones_like(src[:, :1])], 1).double()
    sol = torch.linalg.lstsq(a, dst.double()).solution
    return (a @ sol).to(dst.dtype)


@torch.no_grad()
def draw_memory(teacher, students: Dict[str, torch.nn.Module], sample: Sample, metadata=None,
                mask: str = "box") -> np.ndarray:
    """LCMD's view of the memory, per level: the foreground weight (mask x scale, brighter =
    larger), the background weight, then for each student the per-cell distance
    ||T - A(S)||^2 between the teacher's memory and the student's, where A is the least-squares
    affine map from the student's channels to the teacher's on this image (so that students of
    any width, with or without a trained adapter, compare on equal terms; e.g. the student
    trained alone against the distilled one). The students share one colour scale per level.

    Returns (H * L * (2 + S), W, 3), S students, L levels.
    """
    _, enc_t = _encode(teacher, sample)
    boxes = [sample.gt_normalized().to(enc_t.memory.device)]
    fg, bg = lcmd_weight_maps(boxes, enc_t.spatial_shapes, enc_t.valid_ratios, mask)
    size = (sample.height, sample.width)
    valid = _level_valid(enc_t, 0)
    dists = {}
    for name, s in students.items():
        _, enc_s = _encode(s, sample)
        if not torch.equal(enc_s.spatial_shapes, enc_t.spatial_shapes):
            raise ValueError(f"{name}: memory levels {enc_s.spatial_shapes.tolist()} differ from the teacher's "
                             f"{enc_t.spatial_shapes.tolist()}; LCMD compares cell by cell")
        keep = ~enc_t.padding_mask[0]
        t, st = enc_t.memory[0][keep], enc_s.memory[0][keep]
        d = torch.zeros(enc_t.memory.shape[1], dtype=t.dtype, device=t.device)
        d[keep] = (t - _best_linear_map(st, t)).pow(2).sum(-1)
        dists[name] = d
    panels = []
    for lvl, ((h, w), start) in enumerate(zip(enc_t.spatial_shapes.tolist(), enc_t.level_start_index.tolist())):
        sl = slice(start, start + h * w)
        for label, m in (("LCMD foreground weight", fg[0, sl]), ("LCMD background weight", bg[0, sl])):
            heat = _to_image(m.view(h, w), valid[lvl], size)
            vis = _visualizer(_heat_overlay(sample.image, _normalize(heat)), metadata)
            panels.append(_title(vis, f"level {lvl} ({h}x{w}): {label}").output.get_image())
        top = max((float(d[sl].max()) for d in dists.values()), default=0.0) or 1.0
        for name, d in dists.items():
            heat = _to_image(d[sl].view(h, w), valid[lvl], size) / top
            vis = _visualizer(_heat_overlay(sample.image, heat), metadata)
            for box in sample.gt_boxes.tolist():
                vis.draw_box(box, edge_color=_GT_COLOR, line_style="-")
            panels.append(_title(vis, f"level {lvl}: memory distance to the teacher, {name} "
                                      f"(mean {float(d[sl].mean()):.3g})").output.get_image())
    return _stack(panels)
