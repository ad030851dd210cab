"""Hugging Face transformers' DETRs as peers of ours, matched and fed the same batches.

Benchmark-only: ``transformers`` is installed by ``make bench`` (requirements-bench.txt), never
by ``make test``. A peer is built at the sizes of one of our models (hidden size, layers, FFN,
heads, queries, classes) and gets *our* backbone module (a copy, with its pretrained weights
and frozen parts), so that a comparison isolates the transformer, the heads and the loss.

Used by ``tools/peer_train.py`` (does the peer learn what ours learns from the same start?) and
by the speed benchmark (``tools/benchmark.py speed``: how fast is ours beside the peer?).
Shapes: B batch, Q queries, C classes.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["require_transformers", "D2BackboneForHF", "hf_dab_detr", "hf_deformable_detr", "hf_inputs", "HFDetector", "PEER_BUILDERS"]


def require_transformers():
    """Import transformers or say how to install it (it is a benchmark-only dependency)."""
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            "the peer comparisons need Hugging Face transformers, a benchmark-only dependency: "
            "`make bench` installs it, or `.venv/bin/pip install -r requirements-bench.txt`"
        ) from e
    return transformers


class D2BackboneForHF(nn.Module):
    """A detectron2 backbone in the place of a transformers DETR's ``conv_encoder``:
    ``forward(pixel_values (B, 3, H, W), pixel_mask (B, H, W))`` returns, for each of
    ``out_features``, ``(feature (B, C_l, H_l, W_l), mask (B, H_l, W_l) True on valid pixels)``."""

    def __init__(self, backbone: nn.Module, out_features: Tuple[str, ...]):
        super().__init__()
        self.body = backbone
        self.out_features = tuple(out_features)
        shapes = backbone.output_shape()
        missing = [f for f in self.out_features if f not in shapes]
        if missing:
            raise KeyError(f"backbone has no feature(s) {missing}; it gives {sorted(shapes)}")
        self.intermediate_channel_sizes = [shapes[f].channels for f in self.out_features]

    def forward(self, pixel_values: Tensor, pixel_mask: Tensor) -> List[Tuple[Tensor, Tensor]]:
        feats = self.body(pixel_values)
        out = []
        for name in self.out_features:
            f = feats[name]
            mask = F.interpolate(pixel_mask[None].float(), size=f.shape[-2:]).to(torch.bool)[0]
            out.append((f, mask))
        return out


def hf_dab_detr(ours: nn.Module, anchor_init: str = "peer"):
    """``DabDetrForObjectDetection`` at the sizes of our :class:`~clock_distill.modeling.DABDETR`
    ``ours``, with a deep copy of ``ours.backbone`` (weights included) as its backbone.

    Everything else is the peer's own (its defaults are DAB-DETR's: PReLU FFN, plain 1x1 input
    projection, look-forward-twice predictions). Dropout is 0, as in ours. The matcher costs and
    the L1 and GIoU loss weights are ours; the peer's loss fixes the class weight at 1, as ours.

    ``anchor_init``: ``"peer"`` keeps transformers' init, which draws the anchor logits from
    N(0, 0.02) like every embedding, so all anchors start at the box (0.5, 0.5, 0.5, 0.5);
    ``"reference"`` redraws them from N(0, 1), PyTorch's default that DAB-DETR's code (and
    ours) keeps, so anchors start spread over the image with varied sizes.
    """
    if anchor_init not in ("peer", "reference"):
        raise ValueError(f"anchor_init must be 'peer' or 'reference', got {anchor_init!r}")
    tf = require_transformers()
    attn, dec = ours.encoder.layers[0].self_attn, ours.decoder_layers
    features = tuple(ours.neck.in_features)
    if len(features) != 1:
        raise ValueError(f"DAB-DETR is single-scale; our model's neck takes {features}")
    if ours.criterion.weight_dict["loss_class"] != 1:
        raise ValueError(f"the peer's class loss weight is fixed at 1; ours is {ours.criterion.weight_dict['loss_class']}")
    config = tf.DabDetrConfig(
        **_shared_config(tf, ours, num_backbone_features=1),
        hidden_size=ours.embed_dim,
        encoder_attention_heads=attn.num_heads,
        decoder_attention_heads=dec[0].cross_attn.n_heads,
    )
    peer = tf.DabDetrForObjectDetection(config)
    backbone = D2BackboneForHF(copy.deepcopy(ours.backbone), features)
    peer.model.backbone.conv_encoder = backbone
    peer.model.input_projection = nn.Conv2d(backbone.intermediate_channel_sizes[-1], ours.embed_dim, kernel_size=1)
    if anchor_init == "reference":
        nn.init.normal_(peer.model.query_refpoint_embeddings.weight)
    return peer


def hf_deformable_detr(ours: nn.Module):
    """``DeformableDetrForObjectDetection`` at the sizes of our
    :class:`~clock_distill.modeling.DeformableDETR` ``ours`` (levels, layers, FFN, heads, points,
    queries, box refinement, two-stage), with a deep copy of ``ours.backbone`` (weights and frozen
    parts included) as its backbone and an input projection of the peer's own design for our
    backbone's channels (1x1 conv + GroupNorm per backbone level, 3x3 stride-2 conv + GroupNorm
    for each extra level, as our ``ChannelMapper``). Dropout 0, as ours; auxiliary losses as ours.

    The peer's class loss weight is fixed at 1 where ours may differ: that changes a loss value,
    not the work, so the peer serves speed comparisons, not loss-curve ones.
    """
    tf = require_transformers()
    msda, dec = ours.encoder.layers[0].self_attn, ours.decoder_layers
    features = tuple(ours.neck.in_features)
    config = tf.DeformableDetrConfig(
        **_shared_config(tf, ours, num_backbone_features=len(features)),
        two_stage_num_proposals=ours.num_queries,
        d_model=ours.embed_dim,
        encoder_attention_heads=msda.num_heads,
        decoder_attention_heads=dec[0].cross_attn.num_heads,
        num_feature_levels=ours.num_levels,
        encoder_n_points=msda.num_points,
        decoder_n_points=dec[0].cross_attn.num_points,
        with_box_refine=bool(ours.with_box_refine),
        two_stage=bool(ours.as_two_stage),
    )
    peer = tf.DeformableDetrForObjectDetection(config)
    backbone = D2BackboneForHF(copy.deepcopy(ours.backbone), features)
    peer.model.backbone = backbone
    D, groups = ours.embed_dim, ours.neck.convs[0][1].num_groups
    proj = [nn.Sequential(nn.Conv2d(c, D, 1), nn.GroupNorm(groups, D)) for c in backbone.intermediate_channel_sizes]
    extra_in = backbone.intermediate_channel_sizes[-1]
    for _ in range(ours.num_levels - len(features)):
        proj.append(nn.Sequential(nn.Conv2d(extra_in, D, 3, stride=2, padding=1), nn.GroupNorm(groups, D)))
        extra_in = D
    peer.model.input_proj = nn.ModuleList(proj)
    return peer


def _shared_config(tf, ours: nn.Module, num_backbone_features: int) -> Dict:
    """The config keys that both transformers DETRs take, at the sizes of ``ours``: queries,
    classes, layers, FFN widths, no dropout, auxiliary losses, our matcher costs and our L1 and
    GIoU loss weights; and a tiny stand-in backbone (replaced by ours after construction) with
    ``num_backbone_features`` outputs."""
    enc, dec = ours.encoder, ours.decoder_layers
    weights, matcher = ours.criterion.weight_dict, ours.criterion.matcher
    return dict(
        use_timm_backbone=False,
        backbone_config=tf.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1],
            out_features=[f"stage{4 - i}" for i in reversed(range(num_backbone_features))],
        ),
        num_queries=ours.num_queries,
        num_labels=ours.num_classes,
        encoder_layers=len(enc.layers),
        decoder_layers=len(dec),
        encoder_ffn_dim=enc.layers[0].ffn.linear1.out_features,
        decoder_ffn_dim=dec[0].ffn.linear1.out_features,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        auxiliary_loss=bool(ours.aux_loss),
        class_cost=_int_weight(vars(matcher), "cost_class"),
        bbox_cost=_int_weight(vars(matcher), "cost_bbox"),
        giou_cost=_int_weight(vars(matcher), "cost_giou"),
        bbox_loss_coefficient=_int_weight(weights, "loss_bbox"),
        giou_loss_coefficient=_int_weight(weights, "loss_giou"),
    )


def _int_weight(weights: Dict[str, float], key: str) -> int:
    """The peer's config takes integer weights and costs."""
    w = weights[key]
    if w != int(w):
        raise ValueError(f"the peer's config takes integer weights; ours has {key}={w}")
    return int(w)


PEER_BUILDERS = {"dab_detr": hf_dab_detr, "deformable_detr": hf_deformable_detr}


def hf_inputs(ours: nn.Module, batched_inputs: List[Dict], with_labels: bool) -> Tuple[Dict, list]:
    """The peer's keyword inputs for a detectron2 batch, and the images' (h, w) before padding.
    The inputs are made exactly as ``ours`` makes its own:
    ``pixel_values`` (B, 3, H, W) normalized and padded by ``ours.preprocess_image``,
    ``pixel_mask`` (B, H, W) 1 on valid pixels and, with labels, each image's ``class_labels``
    (n,) and ``boxes`` (n, 4) cxcywh normalized to the unpadded image (our mapper's targets)."""
    images = ours.preprocess_image(batched_inputs)
    x = images.tensor
    mask = torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long, device=x.device)
    for i, (h, w) in enumerate(images.image_sizes):
        mask[i, :h, :w] = 1
    out = {"pixel_values": x, "pixel_mask": mask}
    if with_labels:
        targets = ours.prepare_targets(batched_inputs)
        out["labels"] = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    return out, images.image_sizes


class HFDetector(nn.Module):
    """A transformers DETR behind detectron2's model interface, for ``inference_on_dataset``:
    ``forward(batched_inputs)`` returns ``[{"instances": Instances}]`` at the original image
    size, decoded by ``ours.postprocess`` (the same top-k over queries x classes as ours)."""

    def __init__(self, peer: nn.Module, ours: nn.Module):
        super().__init__()
        self.peer = peer
        self.ours = ours

    @torch.no_grad()
    def forward(self, batched_inputs: List[Dict]):
        inputs, sizes = hf_inputs(self.ours, batched_inputs, with_labels=False)
        out = self.peer(**inputs)
        last = SimpleNamespace(logits=[out.logits], boxes=[out.pred_boxes])
        return self.ours.postprocess(last, sizes, batched_inputs)


# ----------------------------------------------------------------------------- side by side
_PEER_LOSS_KEYS = {"loss_ce": "loss_class", "loss_bbox": "loss_bbox", "loss_giou": "loss_giou"}


def _unweighted(loss_dict: Dict[str, Tensor], weights: Dict[str, float]) -> Dict[str, float]:
    """The final layer's class / L1 / (1 - GIoU) losses without their weights."""
    return {f"loss_{k}": float(loss_dict[key].detach()) / weights.get(key, 1.0) for k, key in
            (("class", "loss_class"), ("l1", "loss_bbox"), ("giou", "loss_giou"))}


def train_side_by_side(cfg, family: str, sides=("ours", "peer"), out_dir=None, resume: bool = False,
                       log_period: int = 10, checkpoint_period: int = 250, eval_split=None,
                       peer_kwargs: Dict = None) -> Dict:
    """Train our model and its transformers peer from the same start on the same batches.

    Both sides start from ``cfg.train.init_checkpoint`` (the peer gets a copy of our backbone
    after the load), and each side has its own optimizer and lr schedule from ``cfg.optimizer``
    and ``cfg.lr_multiplier`` and is clipped as ``cfg.train.clip_grad`` says. Every step feeds
    one batch of ``cfg.dataloader.train`` to every side in ``sides``. ``peer_kwargs`` go to the
    family's peer builder (e.g. ``anchor_init`` of :func:`hf_dab_detr`).

    Writes to ``out_dir``: ``curves.json`` (per side, every ``log_period`` steps, the window
    means of the final layer's unweighted class, L1 and 1 - GIoU losses, and s/step), a
    resumable ``last.pth`` every ``checkpoint_period`` steps, and at the end, with
    ``eval_split`` (a registered test dataset name), ``summary.json`` with each side's KITTI
    results on it. Returns the summary.
    """
    import json
    import time
    from pathlib import Path

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate
    from detectron2.evaluation import inference_on_dataset
    from detectron2.solver import LRMultiplier
    from detectron2.utils.env import seed_all_rng

    from .evaluation.kitti_evaluator import build_evaluator

    if family not in PEER_BUILDERS:
        raise KeyError(f"no transformers peer for family {family!r}; known: {sorted(PEER_BUILDERS)}")
    unknown = set(sides) - {"ours", "peer"}
    if unknown or not sides:
        raise ValueError(f"sides must be a non-empty subset of ('ours', 'peer'), got {tuple(sides)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_all_rng(cfg.train.seed)
    device = torch.device(cfg.train.device)
    ours = instantiate(cfg.model).to(device)
    DetectionCheckpointer(ours).load(cfg.train.init_checkpoint)
    peer = PEER_BUILDERS[family](ours, **(peer_kwargs or {})).to(device)
    models = {"ours": ours, "peer": peer}
    weights = {"ours": dict(ours.criterion.weight_dict), "peer": {}}
    optims = {}
    for side in sides:
        cfg.optimizer.params.model = models[side]
        optims[side] = instantiate(cfg.optimizer)
    max_iter = int(cfg.train.max_iter)
    clip = dict(cfg.train.clip_grad.params) if cfg.train.clip_grad.enabled else None

    start, curves = 0, {side: [] for side in sides}
    ckpt = out / "last.pth"
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        for side in sides:
            models[side].load_state_dict(state["models"][side])
            optims[side].load_state_dict(state["optims"][side])
        start, curves = state["iter"], state["curves"]
    # detectron2's LRScheduler hook does the same: lr = base lr * multiplier(iter / max_iter).
    scheds = {side: LRMultiplier(optims[side], instantiate(cfg.lr_multiplier), max_iter, last_iter=start - 1)
              for side in sides}
    loader = iter(instantiate(cfg.dataloader.train))
    # Resume replays the loader's deterministic order up to where the run stopped.
    for _ in range(start):
        next(loader)
    window = {side: [] for side in sides}
    for it in range(start, max_iter):
        batch = next(loader)
        for side in sides:
            model, opt = models[side], optims[side]
            model.train()
            t0 = time.perf_counter()
            if side == "ours":
                loss_dict = model(batch)
                total = sum(loss_dict.values())
            else:
                inputs, _ = hf_inputs(ours, batch, with_labels=True)
                res = model(**inputs)
                # The peer's loss_dict is unweighted; its last layer's terms have no suffix.
                total = res.loss
                loss_dict = {ours_key: res.loss_dict[key] for key, ours_key in _PEER_LOSS_KEYS.items()}
            if not torch.isfinite(total):
                raise FloatingPointError(f"{side}: loss became {float(total)} at iteration {it}: {loss_dict}")
            opt.zero_grad(set_to_none=True)
            total.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], **clip)
            opt.step()
            scheds[side].step()
            window[side].append({**_unweighted(loss_dict, weights[side]), "s": time.perf_counter() - t0})
        if (it + 1) % log_period == 0 or it + 1 == max_iter:
            for side in sides:
                keys = window[side][0].keys()
                row = {k: sum(w[k] for w in window[side]) / len(window[side]) for k in keys}
                curves[side].append({"iter": it + 1, **{k: round(v, 5) for k, v in row.items()}})
                window[side] = []
            (out / "curves.json").write_text(json.dumps({"family": family, "max_iter": max_iter, "curves": curves}, indent=1))
            print(f"iter {it + 1}/{max_iter} " + " | ".join(
                f"{s}: L1 {curves[s][-1]['loss_l1']:.3f} 1-GIoU {curves[s][-1]['loss_giou']:.3f} "
                f"cls {curves[s][-1]['loss_class']:.3f} {curves[s][-1]['s']:.2f}s" for s in sides), flush=True)
        if (it + 1) % checkpoint_period == 0 and it + 1 < max_iter:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"iter": it + 1, "curves": curves, "models": {s: models[s].state_dict() for s in sides},
                        "optims": {s: optims[s].state_dict() for s in sides}}, tmp)
            tmp.replace(ckpt)

    summary = {"family": family, "max_iter": max_iter, "peer_kwargs": dict(peer_kwargs or {}), "final": {s: curves[s][-1] for s in sides},
               "params": {s: sum(p.numel() for p in models[s].parameters()) for s in sides}}
    if eval_split:
        cfg.dataloader.test.dataset.names = eval_split
        summary["split"] = eval_split
        summary["kitti"] = {}
        for side in sides:
            model = ours if side == "ours" else HFDetector(peer, ours)
            model.eval()
            res = inference_on_dataset(model, instantiate(cfg.dataloader.test),
                                       build_evaluator(eval_split, output_dir=str(out / side)))
            summary["kitti"][side] = res
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
