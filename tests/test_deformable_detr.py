"""Deformable DETR (modeling/deformable_detr.py): plain, box refinement, two-stage (with and without
box refinement). Training losses and gradients, inference, and what each variant feeds the
shared decoder (queries, references, encoder proposals). Tiny models: R18, D=32, 3 levels,
1 encoder and 2 decoder layers, 10 queries, images up to 64x160.
"""

import pytest
import torch

from clock_distill.modeling import QueryGroup
from helpers import one_thread_fixture, tiny_deformable_detr

D, L, Q, C, NUM_DEC = 32, 3, 10, 3, 2
SIZES = [(64, 160), (48, 128)]  # the second is padded to 64x160 (partially padded cells at stride 32)
TOPK = 20

VARIANTS = {
    "plain": dict(with_box_refine=False, as_two_stage=False),
    "box_refine": dict(with_box_refine=True, as_two_stage=False),
    "two_stage": dict(with_box_refine=True, as_two_stage=True),  # "Deformable DETR++"
    "two_stage_no_refine": dict(with_box_refine=False, as_two_stage=True),
}


one_thread = pytest.fixture(scope="module", autouse=True)(one_thread_fixture)


def tiny_model(with_box_refine=False, as_two_stage=False, num_queries=Q, seed=0):
    torch.manual_seed(seed)
    return tiny_deformable_detr(
        D, L, num_queries, C, dec_layers=NUM_DEC, with_box_refine=with_box_refine, as_two_stage=as_two_stage,
        select_box_nums_for_evaluation=TOPK,
    )


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request):
    return request.param, tiny_model(**VARIANTS[request.param])


def make_inputs(targets=True, empty_second=False, original=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    boxes = [torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.15, 0.25]]), torch.tensor([[0.5, 0.5, 0.4, 0.3]])]
    labels = [torch.tensor([0, 1]), torch.tensor([2])]
    if empty_second:
        boxes[1], labels[1] = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    inputs = []
    for i, (h, w) in enumerate(SIZES):
        x = {"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)}
        if targets:
            x["target"] = {"labels": labels[i], "boxes": boxes[i]}
        if original is not None:
            x["height"], x["width"] = original[i]
        inputs.append(x)
    return inputs


def expected_loss_keys(name):
    base = ["loss_class", "loss_bbox", "loss_giou"]
    keys = set(base) | {f"{k}_{i}" for k in base for i in range(NUM_DEC - 1)}
    if VARIANTS[name]["as_two_stage"]:
        keys |= {f"{k}_enc" for k in base}
    return keys


def raw(model, inputs):
    """encode -> build_query_groups -> decode, as forward does."""
    enc = model.encode(model.preprocess_image(inputs))
    groups, extras = model.build_query_groups(enc, None)
    return enc, groups, extras, model.decode(enc, groups)


# ----------------------------------------------------------------------------------- training
def test_training_losses_and_gradients(variant):
    name, model = variant
    model.train()
    model.zero_grad(set_to_none=True)
    losses = model(make_inputs())
    model.eval()
    assert set(losses) == expected_loss_keys(name)
    for k, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), (k, v)
        assert v.item() > 0, k
    sum(losses.values()).backward()

    # Every trainable parameter takes part (DDP runs with find_unused_parameters=False).
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"

    def has_grad(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    must = {
        "backbone.stem": model.backbone.stem, "backbone.res5": model.backbone.res5, "neck": model.neck,
        "encoder": model.encoder, "decoder_layers.0": model.decoder_layers[0],
        "decoder_layers.-1": model.decoder_layers[-1], "class_embed": model.class_embed, "bbox_embed": model.bbox_embed,
    }
    if VARIANTS[name]["as_two_stage"]:
        must.update(proposals=model.proposals, pos_trans=model.pos_trans)
    else:
        must.update(query_embedding=model.query_embedding, reference_points=model.reference_points)
    if VARIANTS[name]["with_box_refine"]:
        must.update({f"class_embed.{i}": model.class_embed[i] for i in range(NUM_DEC)})
        must.update({f"bbox_embed.{i}": model.bbox_embed[i] for i in range(NUM_DEC)})
    no_grad = [k for k, m in must.items() if not has_grad(m)]
    assert not no_grad, f"no gradient reaches {no_grad}"
    # The level embedding reaches the loss only through the encoder's sampling offsets and
    # attention weights, whose weights start at zero: its first gradient is exactly zero.
    assert model.level_embed.grad is not None
    model.zero_grad(set_to_none=True)


def test_training_with_an_image_without_objects(variant):
    name, model = variant
    model.train()
    try:
        losses = model(make_inputs(empty_second=True))
    finally:
        model.eval()
    assert set(losses) == expected_loss_keys(name)
    assert all(torch.isfinite(v) for v in losses.values())


def test_a_few_steps_reduce_the_loss():
    """Two-stage + box refinement (every module in play) fits a fixed batch."""
    model = tiny_model(**VARIANTS["two_stage"]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = make_inputs()
    level_embed = model.level_embed.detach().clone()
    history = []
    for _ in range(12):
        loss = sum(model(inputs).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.8 * history[0], history
    # Once the sampling offsets have moved, the level embedding learns too.
    assert model.level_embed.grad.abs().sum() > 0
    assert not torch.equal(model.level_embed.detach(), level_embed)


# ---------------------------------------------------------------------------------- inference
def test_inference_shapes(variant):
    name, model = variant
    originals = [(96, 240), (72, 192)]  # 1.5x the network input
    with torch.no_grad():
        results = model(make_inputs(targets=False, original=originals))
        again = model(make_inputs(targets=False, original=originals))
    assert len(results) == 2
    for (h, w), r, r2 in zip(originals, results, again):
        inst = r["instances"]
        assert inst.image_size == (h, w)
        assert len(inst) == TOPK  # no box is empty at this size
        assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes"}
        bx = inst.pred_boxes.tensor
        assert tuple(bx.shape) == (TOPK, 4) and torch.isfinite(bx).all()
        assert (bx[:, 0::2] >= 0).all() and (bx[:, 0::2] <= w).all()
        assert (bx[:, 1::2] >= 0).all() and (bx[:, 1::2] <= h).all()
        assert (bx[:, 2:] >= bx[:, :2]).all()
        assert ((inst.scores > 0) & (inst.scores < 1)).all() and (inst.scores[:-1] >= inst.scores[1:]).all()
        assert ((inst.pred_classes >= 0) & (inst.pred_classes < C)).all()
        assert torch.equal(bx, r2["instances"].pred_boxes.tensor)  # deterministic


def test_raw_outputs_per_variant(variant):
    name, model = variant
    refine, two_stage = VARIANTS[name]["with_box_refine"], VARIANTS[name]["as_two_stage"]
    with torch.no_grad():
        enc, groups, extras, outs = raw(model, make_inputs(targets=False))
    assert len(groups) == 1 and len(outs) == 1 and isinstance(groups[0], QueryGroup)
    g, out = groups[0], outs[0]
    assert tuple(g.content.shape) == tuple(g.pos.shape) == (2, Q, D)
    assert out.num_layers == NUM_DEC
    for lg, bx in zip(out.logits, out.boxes):
        assert tuple(lg.shape) == (2, Q, C) and tuple(bx.shape) == (2, Q, 4)
        assert torch.isfinite(lg).all() and ((bx > 0) & (bx < 1)).all()

    # Heads: one shared pair without box refinement, one pair per layer with it.
    assert (model.class_embed[0] is model.class_embed[1]) == (not refine)
    assert (model.bbox_embed[0] is model.bbox_embed[1]) == (not refine)

    if two_stage:
        # Reference boxes: the top-Q encoder proposals by class-0 (objectness) score, detached.
        N = enc.memory.shape[1]
        enc_out = extras["enc_outputs"]
        assert tuple(enc_out["pred_logits"].shape) == (2, N, C)
        assert tuple(enc_out["pred_boxes"].shape) == (2, N, 4)
        top = enc_out["pred_logits"][..., 0].topk(Q, dim=1).indices
        expected = torch.gather(enc_out["pred_boxes"], 1, top[..., None].expand(-1, -1, 4))
        assert tuple(g.reference.shape) == (2, Q, 4)
        torch.testing.assert_close(g.reference, expected)
        assert model.proposals.class_embed is not model.class_embed[0]
        assert model.proposals.bbox_embed is not model.bbox_embed[0]
    else:
        # Learned queries: the same for every image; 2-d reference points from the positions.
        assert extras == {}
        assert torch.equal(g.content[0], g.content[1]) and torch.equal(g.pos[0], g.pos[1])
        assert tuple(g.reference.shape) == (2, Q, 2)
        torch.testing.assert_close(g.reference, model.reference_points(g.pos).sigmoid())
    assert torch.equal(out.references[0], g.reference)
    if refine:
        assert torch.equal(out.references[1], out.boxes[0])
        assert out.references[1].shape[-1] == 4
    else:
        assert torch.equal(out.references[1], g.reference)


def test_two_stage_training_reference_is_detached():
    model = tiny_model(**VARIANTS["two_stage"]).train()
    enc = model.encode(model.preprocess_image(make_inputs()))
    groups, extras = model.build_query_groups(enc, None)
    assert not groups[0].reference.requires_grad
    assert groups[0].content.requires_grad and extras["enc_outputs"]["pred_logits"].requires_grad


def test_two_stage_with_more_queries_than_tokens():
    model = tiny_model(**VARIANTS["two_stage"], num_queries=500).eval()
    with torch.no_grad():
        enc, groups, _, outs = raw(model, make_inputs(targets=False))
    N = enc.memory.shape[1]
    assert N < 500
    assert tuple(outs[0].boxes[-1].shape) == (2, N, 4)


def test_learned_queries_batch_independent():
    """Plain model: an image's detections do not depend on the other image in the batch, beyond
    padding (the largest image, unpadded, decodes the same alone)."""
    model = tiny_model().eval()
    with torch.no_grad():
        both = raw(model, make_inputs(targets=False))[3][0]
        alone = raw(model, make_inputs(targets=False)[:1])[3][0]
    torch.testing.assert_close(both.boxes[-1][:1], alone.boxes[-1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both.logits[-1][:1], alone.logits[-1], atol=1e-5, rtol=1e-4)




@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "box_refine",
        "two_stage",
        "two_stage_no_refine",
    ],
)
def test_initial_boxes_as_in_reference_implementation(name):
    """At initialization the first layer's boxes are centred on the references and have the
    reference implementation's size: w = h = sigmoid(-2) with learned queries (2-d reference
    points), the proposal's own size with two-stage (all box-head w,h biases 0)."""
    model = tiny_model(**VARIANTS[name]).eval()
    with torch.no_grad():
        _, groups, _, outs = raw(model, make_inputs(targets=False))
    first, ref = outs[0].boxes[0], groups[0].reference
    torch.testing.assert_close(first[..., :2], ref[..., :2], atol=1e-4, rtol=0)
    if VARIANTS[name]["as_two_stage"]:
        torch.testing.assert_close(first[..., 2:], ref[..., 2:], atol=1e-4, rtol=0)
    else:
        expected = torch.full_like(first[..., 2:], torch.sigmoid(torch.tensor(-2.0)).item())
        torch.testing.assert_close(first[..., 2:], expected, atol=1e-4, rtol=0)
