"""The DETR meta-architecture shared by every family, built on two steps.

- ``encode(images) -> EncoderOutput``: backbone, neck, positional encoding, encoder.
- ``decode(enc, query_groups) -> list[DecoderOutput]``: any number of query groups decoded in
  one call, each isolated from the others by the self-attention mask.

Training losses, inference, the distiller, the visualizer and the benchmarks all go through
these two steps. A family (Deformable DETR, DAB-DETR, DINO) subclasses :class:`DETRBase` and
writes only what differs: its encoder and decoder layers, how it builds its queries
(:meth:`DETRBase.build_query_groups`) and, if needed, extra loss terms.

Shapes: B images, N = sum_l H_l*W_l memory tokens over L levels, D channels, Q queries,
C classes. Boxes are (cx, cy, w, h) normalized to the unpadded (resized) image.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    MLP,
    MultiScaleDeformableAttention,
    PositionEmbeddingSine,
    box_cxcywh_to_xyxy,
    get_sine_pos_embed,
    inverse_sigmoid,
)
from .layers.ms_deform_attn import check_msda_kernel
from .transformer import prediction_heads

__all__ = ["EncoderOutput", "QueryGroup", "DecoderOutput", "DETRBase"]


@dataclass
class EncoderOutput:
    """What ``encode`` returns.

    memory: (B, N, D) encoder output, levels flattened finest first.
    spatial_shapes: (L, 2) long, (H_l, W_l) per level.
    level_start_index: (L,) long, offset of each level in N.
    valid_ratios: (B, L, 2) fraction (w, h) of each level that is not padding.
    padding_mask: (B, N) bool, True on padded cells.
    pos: (B, N, D) positional (+ level) embedding that was added in the encoder.
    features: the L neck features (B, D, H_l, W_l) that entered the encoder.
    image_sizes: B (h, w) unpadded sizes of the resized images.
    """

    memory: Tensor
    spatial_shapes: Tensor
    level_start_index: Tensor
    valid_ratios: Tensor
    padding_mask: Tensor
    pos: Tensor
    features: List[Tensor] = field(default_factory=list)
    image_sizes: List[tuple] = field(default_factory=list)

    def level_maps(self, x: Optional[Tensor] = None) -> List[Tensor]:
        """Split (B, N, D) tokens (default: the memory) back into L maps (B, D, H_l, W_l)."""
        x = self.memory if x is None else x
        B, _, D = x.shape
        maps = []
        for (h, w), s in zip(self.spatial_shapes.tolist(), self.level_start_index.tolist()):
            maps.append(x[:, s : s + h * w].transpose(1, 2).reshape(B, D, h, w))
        return maps


@dataclass
class QueryGroup:
    """One group of decoder queries.

    content: (B, Q, D) content queries.
    reference: (B, Q, 4) boxes or (B, Q, 2) points (cx, cy), in [0, 1] of the unpadded image.
    pos: (B, Q, D) positional queries, or None to let the family derive them from the
        reference at every layer (DAB-DETR, DINO).
    attend_to_main: this group's self-attention also sees group 0, the main (matching)
        queries, as DINO's denoising groups do. Group 0 never sees any other group.
    self_attn_mask: (Q, Q) bool, True = blocked, inside this group; None for none.
    name: a label, e.g. "main", "dn", "ta".
    """

    content: Tensor
    reference: Tensor
    pos: Optional[Tensor] = None
    attend_to_main: bool = False
    self_attn_mask: Optional[Tensor] = None
    name: str = "main"

    @property
    def num_queries(self) -> int:
        return self.content.shape[1]


@dataclass
class DecoderOutput:
    """Per decoder layer outputs for one query group.

    logits: per layer (B, Q, C) class logits.
    boxes: per layer (B, Q, 4) boxes (cx, cy, w, h) normalized.
    references: per layer (B, Q, 4 or 2) the reference that layer's cross-attention used.
    hidden: per layer (B, Q, D) decoder states (after the decoder norm, if any).
    attention: per layer, where the layer's cross-attention looked; only from
        ``decode(..., return_attention=True)``, else empty. Deformable layers:
        ``sampling_locations`` (B, Q, M, L, P, 2), normalized (x, y) in each level's padded map,
        and ``attention_weights`` (B, Q, M, L, P); DAB-DETR: ``attention_weights`` (B, Q, M, N)
        over the memory cells. M heads, L levels, P points.
    """

    logits: List[Tensor]
    boxes: List[Tensor]
    references: List[Tensor]
    hidden: List[Tensor]
    attention: List[Dict[str, Tensor]] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.logits)

    def as_outputs(self) -> Dict:
        """The criterion's dict: last layer as pred_*, earlier layers as aux_outputs."""
        return {
            "pred_logits": self.logits[-1],
            "pred_boxes": self.boxes[-1],
            "aux_outputs": [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(self.logits[:-1], self.boxes[:-1])],
        }


class DETRBase(nn.Module):
    """detectron2 meta-architecture for DETRs: preprocess, backbone + neck, encode, decode,
    losses, postprocess. Families override the hooks listed in the module docstring.

    Args:
        backbone: a detectron2 Backbone (``output_shape()``), e.g. ResNet.
        neck: maps the backbone's feature dict to a list of L maps (B, D, H_l, W_l).
        encoder: ``encoder(src, pos, spatial_shapes, level_start_index, valid_ratios,
            padding_mask) -> memory``, all (B, N, ·).
        decoder_layers: ModuleList; each ``layer(tgt, pos, reference, enc, kv_prefix,
            attn_mask) -> tgt``.
        criterion: SetCriterion.
        num_classes: C.
        embed_dim: D.
        num_queries: matching queries.
        box_refine: each layer refines the reference boxes (else references stay fixed).
        look_forward_twice: with box_refine, a layer's box prediction keeps the gradient through
            the previous layer's box (DINO); the next layer's reference is still detached.
        decoder_norm: applied to each layer's output before the heads, or None.
        share_heads: one class/box head for all layers (plain Deformable DETR) instead of one
            per layer.
        aux_loss: also supervise every earlier decoder layer.
        pixel_mean, pixel_std: per-channel normalization, in the input's channel order.
        select_box_nums_for_evaluation: top-k (over queries x classes) kept at inference.
        size_divisibility: pad images to a multiple of this.
        pos_offset: PositionEmbeddingSine offset (-0.5 for Deformable DETR and DINO, 0 for DAB).
        pos_temperature: PositionEmbeddingSine temperature (10000; DAB-DETR uses 20).
        num_levels: L, by default the neck's ``num_outs``.
        refine_from_normed: the next layer's reference is refined from the normed hidden state
            (the default) or, if False, from the layer's raw output, as DINO's and DAB-DETR's
            decoders do (predictions use the normed state either way; only with decoder_norm).
        anchor_query_pos: positional queries come from the reference boxes at every layer,
            ``ref_point_head(sine(box))`` with an MLP (2D -> D -> D), for groups without ``pos``
            (DAB-DETR, DINO): see :meth:`query_pos`.
        inverse_sigmoid_eps: the clamp of ``logit(ref)`` when a layer refines its references:
            1e-5 as Deformable DETR's code; DINO's and detrex's use 1e-3, which bounds the logit
            of a reference at 0 or 1 by 6.9 instead of 11.5, so a later delta can still move it.
        msda_kernel: the deformable-attention kernel of every layer, ``"pytorch"`` (default) or
            ``"cpu"``, the fused CPU kernel (same numbers, about half the time; built on first
            use, see ``layers.ms_deform_attn_cpu``). An error for a model without deformable
            attention (DAB-DETR), where it would change nothing.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        encoder: nn.Module,
        decoder_layers: nn.ModuleList,
        criterion: nn.Module,
        num_classes: int,
        embed_dim: int = 256,
        num_queries: int = 300,
        box_refine: bool = False,
        look_forward_twice: bool = False,
        decoder_norm: Optional[nn.Module] = None,
        share_heads: bool = True,
        aux_loss: bool = True,
        pixel_mean: Sequence[float] = (123.675, 116.280, 103.530),
        pixel_std: Sequence[float] = (58.395, 57.120, 57.375),
        select_box_nums_for_evaluation: int = 100,
        size_divisibility: int = 32,
        pos_offset: float = -0.5,
        pos_temperature: float = 10000.0,
        num_levels: Optional[int] = None,
        anchor_query_pos: bool = False,
        refine_from_normed: bool = True,
        inverse_sigmoid_eps: float = 1e-5,
        msda_kernel: str = "pytorch",
    ):
        super().__init__()
        self.refine_from_normed = refine_from_normed
        self.inverse_sigmoid_eps = inverse_sigmoid_eps
        self.backbone = backbone
        self.neck = neck
        self.encoder = encoder
        self.decoder_layers = decoder_layers
        self.decoder_norm = decoder_norm
        self.criterion = criterion
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.num_queries = num_queries
        self.box_refine = box_refine
        self.look_forward_twice = look_forward_twice
        self.aux_loss = aux_loss
        self.select_box_nums_for_evaluation = select_box_nums_for_evaluation
        self.size_divisibility = size_divisibility
        self.position_embedding = PositionEmbeddingSine(
            embed_dim // 2, temperature=pos_temperature, normalize=True, offset=pos_offset
        )
        self.num_levels = num_levels if num_levels is not None else getattr(neck, "num_outs", 1)
        self.level_embed = nn.Parameter(torch.empty(self.num_levels, embed_dim).normal_()) if self.num_levels > 1 else None

        num_layers = len(decoder_layers)
        class_embed, bbox_embed = prediction_heads(embed_dim, num_classes)
        if share_heads:
            self.class_embed = nn.ModuleList([class_embed] * num_layers)
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_layers)
        else:
            self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_layers))
            self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_layers))

        self.ref_point_head = MLP(2 * embed_dim, embed_dim, embed_dim, 2) if anchor_query_pos else None

        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.set_msda_kernel(msda_kernel)

    def set_msda_kernel(self, kernel: str) -> None:
        """Switch every deformable-attention layer to ``kernel`` (see ``msda_kernel``)."""
        layers = [m for m in self.modules() if isinstance(m, MultiScaleDeformableAttention)]
        if not layers and check_msda_kernel(kernel) != "pytorch":
            raise ValueError(f"msda_kernel={kernel!r}, but {type(self).__name__} has no deformable attention")
        for m in layers:
            m.kernel = check_msda_kernel(kernel)

    def xavier_init_transformer(self) -> None:
        """Xavier-uniform init of every weight matrix of the encoder, the decoder layers and
        ``ref_point_head``, as DETR's and DAB-DETR's ``Transformer._reset_parameters`` do;
        this package's modules with their own ``reset_parameters`` (deformable attention) then
        redo theirs. PyTorch's default Linear init is ~1.7x narrower, which makes the
        attention logits smaller at the start."""
        modules = [self.encoder, self.decoder_layers] + ([self.ref_point_head] if self.ref_point_head is not None else [])
        for module in modules:
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            for m in module.modules():
                # Only this package's modules: torch's own reset_parameters would undo the xavier.
                if hasattr(m, "reset_parameters") and not type(m).__module__.startswith("torch."):
                    m.reset_parameters()

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ input
    def preprocess_image(self, batched_inputs: List[Dict]):
        """Normalize and pad ``batched_inputs[i]["image"]`` (3, H_i, W_i) into an ImageList."""
        from detectron2.structures import ImageList

        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def prepare_targets(self, batched_inputs: List[Dict]) -> List[Dict[str, Tensor]]:
        """The mapper's DETR targets on the model's device: labels (n,), boxes (n, 4) cxcywh."""
        targets = []
        for x in batched_inputs:
            if "target" not in x:
                raise KeyError(
                    f"training input {x.get('file_name', '?')} has no 'target'; use clock_distill.data.DetrDatasetMapper"
                )
            targets.append({k: v.to(self.device) for k, v in x["target"].items()})
        return targets

    # ----------------------------------------------------------------- encode
    def encode(self, images) -> EncoderOutput:
        """Backbone, neck and encoder on a padded ImageList (tensor (B, 3, H, W))."""
        x = images.tensor
        B, _, H, W = x.shape
        pad = torch.ones((B, H, W), dtype=torch.bool, device=x.device)
        for i, (h, w) in enumerate(images.image_sizes):
            pad[i, :h, :w] = False
        feats = self.neck(self.backbone(x))
        if len(feats) != self.num_levels:
            raise ValueError(f"neck returned {len(feats)} levels, the model expects num_levels={self.num_levels}")
        srcs, masks, poses, shapes = [], [], [], []
        for lvl, feat in enumerate(feats):
            mask = F.interpolate(pad[None].float(), size=feat.shape[-2:]).to(torch.bool)[0]
            pos = self.position_embedding(mask).to(feat.dtype)
            shapes.append(feat.shape[-2:])
            srcs.append(feat.flatten(2).transpose(1, 2))
            masks.append(mask.flatten(1))
            pos = pos.flatten(2).transpose(1, 2)
            if self.level_embed is not None:
                pos = pos + self.level_embed[lvl].view(1, 1, -1)
            poses.append(pos)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=x.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self._valid_ratio(m.view(B, h, w)) for m, (h, w) in zip(masks, shapes)], 1)
        src, padding_mask, pos = torch.cat(srcs, 1), torch.cat(masks, 1), torch.cat(poses, 1)
        memory = self.encoder(src, pos, spatial_shapes, level_start_index, valid_ratios, padding_mask)
        return EncoderOutput(
            memory, spatial_shapes, level_start_index, valid_ratios, padding_mask, pos, feats, list(images.image_sizes)
        )

    @staticmethod
    def _valid_ratio(mask: Tensor) -> Tensor:
        """mask (B, H, W) True on padding -> (B, 2) valid fraction (w, h)."""
        _, H, W = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        return torch.stack([valid_w.float() / W, valid_h.float() / H], -1)

    # ----------------------------------------------------------------- decode
    def query_pos(self, reference: Tensor, layer: int) -> Tensor:
        """Positional queries (B, Q, D) for groups without ``pos``, from their current
        reference boxes (B, Q, 4): ``ref_point_head`` on the (y, x, w, h) sine embedding of each
        box (D/2 channels per coordinate), recomputed at every layer as the boxes are refined.
        Only models built with ``anchor_query_pos`` (DAB-DETR, DINO) can do this."""
        if self.ref_point_head is None:
            raise NotImplementedError(
                f"{type(self).__name__} was built without anchor_query_pos: every QueryGroup needs pos"
            )
        if reference.shape[-1] != 4:
            raise ValueError(f"positional queries from anchors need (B, Q, 4) boxes, got {tuple(reference.shape)}")
        return self.ref_point_head(get_sine_pos_embed(reference, self.embed_dim // 2).to(reference.dtype))

    def decode(self, enc: EncoderOutput, query_groups: Sequence[QueryGroup], return_attention: bool = False) -> List[DecoderOutput]:
        """Decode any number of query groups in one call; returns one DecoderOutput per group.
        With ``return_attention`` each output also holds its cross-attention per layer
        (:class:`DecoderOutput`), for inspection; the other outputs are unchanged.

        Group 0 (the main queries) runs through every layer on its own tensors, so its outputs
        are bit-identical with and without other groups. The other groups run as at most two
        more streams, each group kept to itself by the stream's self-attention mask: the groups
        that see group 0's keys (``attend_to_main``, e.g. denoising), and the groups isolated
        from it (e.g. distillation queries). They never change group 0, and a sole isolated group
        goes through the same operations as when it is decoded alone as group 0 (so a teacher
        decoding the distiller's queries alone computes what the student computes for them).
        """
        if not query_groups:
            raise ValueError("decode needs at least one query group")
        main, extras = query_groups[0], list(query_groups[1:])
        buckets = [b for b in ([i for i, g in enumerate(extras) if g.attend_to_main],
                               [i for i, g in enumerate(extras) if not g.attend_to_main]) if b]
        streams = [self._stream(main)] + [self._merged_stream([extras[i] for i in b], main.num_queries) for b in buckets]
        for layer_idx, layer in enumerate(self.decoder_layers):
            main_in = None
            for si, s in enumerate(streams):
                pos = s["pos"] if s["pos"] is not None else self.query_pos(s["ref"], layer_idx)
                if si == 0:
                    main_in = (s["tgt"], pos)
                prefix = main_in if s["sees_main"] else None
                if return_attention:
                    s["tgt"], attention = layer(s["tgt"], pos, s["ref"], enc, kv_prefix=prefix, attn_mask=s["mask"],
                                                return_attention=True)
                    s["attention"].append(attention)
                else:
                    s["tgt"] = layer(s["tgt"], pos, s["ref"], enc, kv_prefix=prefix, attn_mask=s["mask"])
                self._predict(s, layer_idx)
        outputs: List[Optional[DecoderOutput]] = [None] * len(extras)
        for bucket, stream in zip(buckets, streams[1:]):
            merged = self._outputs(stream)
            start = 0
            for i in bucket:
                sl = slice(start, start + extras[i].num_queries)
                outputs[i] = DecoderOutput(*[[t[:, sl] for t in ts] for ts in (
                    merged.logits, merged.boxes, merged.references, merged.hidden)],
                    attention=[{k: v[:, sl] for k, v in a.items()} for a in merged.attention])
                start += extras[i].num_queries
        return [self._outputs(streams[0])] + outputs

    @staticmethod
    def _stream(g: QueryGroup) -> Dict:
        return {
            "tgt": g.content, "pos": g.pos, "ref": g.reference, "ref_grad": g.reference,
            "mask": g.self_attn_mask, "sees_main": False,
            "logits": [], "boxes": [], "refs": [], "hidden": [], "attention": [],
        }

    @staticmethod
    def _merged_stream(groups: List[QueryGroup], num_main: int) -> Dict:
        """Concatenate non-main groups; build their (Q_x, [Q_main +] Q_x) block mask."""
        ref_dims = {g.reference.shape[-1] for g in groups}
        has_pos = {g.pos is not None for g in groups}
        if len(ref_dims) != 1 or len(has_pos) != 1:
            raise ValueError("all non-main query groups must share the reference size (2 or 4) and all or none give pos")
        sees_main = any(g.attend_to_main for g in groups)
        if len(groups) == 1 and not sees_main:
            # Exactly as the group would run as group 0 (no mask where it has none).
            return DETRBase._stream(groups[0])
        total = sum(g.num_queries for g in groups)
        device = groups[0].content.device
        offset = num_main if sees_main else 0
        mask = torch.ones(total, offset + total, dtype=torch.bool, device=device)
        start = 0
        for g in groups:
            q = g.num_queries
            rows = slice(start, start + q)
            inner = g.self_attn_mask if g.self_attn_mask is not None else torch.zeros(q, q, dtype=torch.bool, device=device)
            mask[rows, offset + start : offset + start + q] = inner
            if g.attend_to_main:
                mask[rows, :num_main] = False
            start += q
        s = DETRBase._stream(
            QueryGroup(
                content=torch.cat([g.content for g in groups], 1),
                reference=torch.cat([g.reference for g in groups], 1),
                pos=torch.cat([g.pos for g in groups], 1) if groups[0].pos is not None else None,
                self_attn_mask=mask,
            )
        )
        s["sees_main"] = sees_main
        return s

    def _predict(self, s: Dict, layer_idx: int) -> None:
        """Heads on one stream after a layer; refine its references if box_refine.

        Look-forward-twice (DINO): layer i's box is ``sigmoid(delta_i + logit(b_{i-1}))`` where
        ``b_{i-1} = sigmoid(delta_{i-1} + logit(ref_{i-1}))`` keeps the gradient of layer i-1's
        box head but starts from the *detached* reference ``ref_{i-1}``; so a layer's loss reaches
        its own box head and the one before it, never further back.
        """
        hidden = self.decoder_norm(s["tgt"]) if self.decoder_norm is not None else s["tgt"]
        delta = self.bbox_embed[layer_idx](hidden)

        def refine(ref: Tensor, d: Tensor = delta) -> Tensor:
            logit = inverse_sigmoid(ref, self.inverse_sigmoid_eps)
            if ref.shape[-1] == 4:
                return (d + logit).sigmoid()
            return torch.cat([d[..., :2] + logit, d[..., 2:]], -1).sigmoid()

        boxes = refine(s["ref_grad"]) if self.look_forward_twice else refine(s["ref"])
        s["refs"].append(s["ref"])
        s["logits"].append(self.class_embed[layer_idx](hidden))
        s["boxes"].append(boxes)
        s["hidden"].append(hidden)
        if self.box_refine:
            if not self.refine_from_normed and self.decoder_norm is not None:
                nxt = refine(s["ref"], self.bbox_embed[layer_idx](s["tgt"]))
            else:
                # Same values as ``boxes``; only the gradient path differs (one layer back at most).
                nxt = refine(s["ref"]) if self.look_forward_twice else boxes
            s["ref_grad"] = nxt
            s["ref"] = nxt.detach()

    @staticmethod
    def _outputs(s: Dict) -> DecoderOutput:
        return DecoderOutput(s["logits"], s["boxes"], s["refs"], s["hidden"], s["attention"])

    # --------------------------------------------------------- family hooks
    def build_query_groups(self, enc: EncoderOutput, targets: Optional[List[Dict]]):
        """Return ``(groups, extras)``: the query groups to decode (group 0 = matching
        queries) and a dict of anything the losses need (e.g. encoder proposals)."""
        raise NotImplementedError

    def queries_at(self, boxes: Tensor, content: Tensor, name: str = "distill") -> QueryGroup:
        """A query group that asks this model about given boxes, fed the way the family feeds its
        own queries; the distiller's target-aware and KD-DETR queries come from here.

        boxes: (B, Q, 4) cxcywh in [0, 1] of the unpadded image; content: (B, Q, D).
        The default serves families whose positional queries come from anchor boxes at every
        layer (DAB-DETR, DINO): the box is the anchor. Families with other query paths override.
        """
        if self.ref_point_head is None:
            raise NotImplementedError(f"{type(self).__name__} must define queries_at (its positional queries are not anchor-derived)")
        return QueryGroup(content, boxes, None, name=name)

    def losses(self, outputs: List[DecoderOutput], extras: Dict, targets: List[Dict]) -> Dict[str, Tensor]:
        """Set-prediction losses on group 0 (+ aux layers and encoder proposals)."""
        out = outputs[0].as_outputs()
        if not self.aux_loss:
            out.pop("aux_outputs")
        if "enc_outputs" in extras:
            out["enc_outputs"] = extras["enc_outputs"]
        return self.criterion(out, targets)

    # ---------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict]):
        """Training: the loss dict. Inference: ``[{"instances": Instances}]`` at original size."""
        images = self.preprocess_image(batched_inputs)
        enc = self.encode(images)
        targets = self.prepare_targets(batched_inputs) if self.training else None
        groups, extras = self.build_query_groups(enc, targets)
        outputs = self.decode(enc, groups)
        if self.training:
            return self.losses(outputs, extras, targets)
        return self.postprocess(outputs[0], images.image_sizes, batched_inputs)

    def inference(self, out: DecoderOutput, image_sizes) -> list:
        """Top-k over queries x classes of the last layer (no NMS), boxes in resized-image pixels."""
        from detectron2.structures import Boxes, Instances

        logits, boxes = out.logits[-1], out.boxes[-1]
        B, Q, C = logits.shape
        k = min(self.select_box_nums_for_evaluation, Q * C)
        scores, idx = logits.sigmoid().flatten(1).topk(k, dim=1)
        query = torch.div(idx, C, rounding_mode="floor")
        labels = idx % C
        boxes = box_cxcywh_to_xyxy(torch.gather(boxes, 1, query[..., None].expand(-1, -1, 4)))
        results = []
        for b, (h, w) in enumerate(image_sizes):
            inst = Instances((h, w))
            xyxy = boxes[b] * boxes.new_tensor([w, h, w, h])
            inst.pred_boxes = Boxes(xyxy)
            inst.pred_boxes.clip((h, w))
            inst.scores = scores[b]
            inst.pred_classes = labels[b]
            results.append(inst)
        return results

    def postprocess(self, out: DecoderOutput, image_sizes, batched_inputs) -> List[Dict]:
        from detectron2.modeling.postprocessing import detector_postprocess

        processed = []
        for inst, x, size in zip(self.inference(out, image_sizes), batched_inputs, image_sizes):
            height, width = x.get("height", size[0]), x.get("width", size[1])
            processed.append({"instances": detector_postprocess(inst, height, width)})
        return processed
