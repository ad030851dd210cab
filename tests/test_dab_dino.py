"""DAB-DETR and DINO on the shared core: training losses and gradients, inference, what each
family feeds the decoder (anchors, mixed query selection, denoising groups), DAB anchor
refinement, DN losses without matching, and query-group isolation for both.
Tiny models: R18-GN, D=32, 1 encoder and 2 decoder layers, 10 queries, images up to 64x160."""

import dataclasses
import math

import pytest
import torch

from clock_distill.modeling import QueryGroup
from clock_distill.modeling.denoising import dn_match_indices
from clock_distill.modeling.layers import get_sine_pos_embed
from helpers import one_thread_fixture, tiny_dab_detr, tiny_dino
from test_deformable_detr import make_inputs

D, Q, C, NUM_DEC, TOPK = 32, 10, 3, 2, 20
BASE = ["loss_class", "loss_bbox", "loss_giou"]

one_thread = pytest.fixture(scope="module", autouse=True)(one_thread_fixture)


def build(family, seed=0, **kwargs):
    torch.manual_seed(seed)
    maker = tiny_dab_detr if family == "dab" else tiny_dino
    return maker(D, num_queries=Q, num_classes=C, dec_layers=NUM_DEC, select_box_nums_for_evaluation=TOPK, **kwargs)


@pytest.fixture(scope="module", params=["dab", "dino"])
def family(request):
    return request.param, build(request.param)


def expected_keys(name):
    keys = set(BASE) | {f"{k}_{i}" for k in BASE for i in range(NUM_DEC - 1)}
    if name == "dino":
        keys |= {f"{k}_enc" for k in BASE} | {f"{k}_dn" for k in BASE}
        keys |= {f"{k}_dn_{i}" for k in BASE for i in range(NUM_DEC - 1)}
    return keys


def raw(model, inputs, targets=None):
    enc = model.encode(model.preprocess_image(inputs))
    groups, extras = model.build_query_groups(enc, targets)
    return enc, groups, extras, model.decode(enc, groups)


# ------------------------------------------------------------------------------- training
def test_training_losses_and_gradients(family):
    name, model = family
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        losses = model(make_inputs())
    finally:
        model.eval()
    assert set(losses) == expected_keys(name)
    for k, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v) and v.item() > 0, (k, v)
    sum(losses.values()).backward()
    # Every parameter takes part (DDP runs with find_unused_parameters=False).
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    nonzero = {n: p.grad.abs().sum() > 0 for n, p in model.named_parameters()}
    must = ["backbone.stem", "backbone.res5", "neck", "encoder", "decoder_layers.0", "decoder_layers.1",
            "class_embed", "bbox_embed", "ref_point_head"]
    must += ["anchor_box_embed"] if name == "dab" else ["proposals", "tgt_embed", "label_enc"]
    no_grad = [m for m in must if not any(v for n, v in nonzero.items() if n.startswith(m))]
    assert not no_grad, f"no gradient reaches {no_grad}"
    model.zero_grad(set_to_none=True)


def test_training_with_images_without_objects(family):
    name, model = family
    model.train()
    try:
        one_empty = model(make_inputs(empty_second=True))
        inputs = make_inputs(empty_second=True)
        inputs[0]["target"] = {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
        all_empty = model(inputs)
    finally:
        model.eval()
    for losses in (one_empty, all_empty):
        assert set(losses) == expected_keys(name)
        assert all(torch.isfinite(v) for v in losses.values())
    if name == "dino":
        # No objects: no DN groups, but the DN keys exist (zero) and keep label_enc in the graph.
        assert all(all_empty[k].item() == 0 for k in all_empty if "_dn" in k)
        model.zero_grad(set_to_none=True)
        sum(all_empty.values()).backward()
        assert model.label_enc.weight.grad is not None
        model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ["dab", "dino"])
def test_a_few_steps_reduce_the_loss(name):
    model = build(name).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = make_inputs()
    history = []
    for _ in range(12):
        torch.manual_seed(1)  # the same DN noise every step
        loss = sum(model(inputs).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.8 * history[0], history


# ------------------------------------------------------------------------------ inference
def test_inference_shapes(family):
    name, model = family
    originals = [(96, 240), (72, 192)]
    with torch.no_grad():
        results = model(make_inputs(targets=False, original=originals))
        again = model(make_inputs(targets=False, original=originals))
    for (h, w), r, r2 in zip(originals, results, again):
        inst = r["instances"]
        assert inst.image_size == (h, w) and len(inst) == TOPK
        bx = inst.pred_boxes.tensor
        assert torch.isfinite(bx).all()
        assert (bx[:, 0::2] >= 0).all() and (bx[:, 0::2] <= w).all()
        assert (bx[:, 1::2] >= 0).all() and (bx[:, 1::2] <= h).all()
        assert ((inst.pred_classes >= 0) & (inst.pred_classes < C)).all()
        assert torch.equal(bx, r2["instances"].pred_boxes.tensor)


# ------------------------------------------------------------------------------- DAB-DETR
def test_dab_anchor_refinement_shapes_and_ranges():
    model = build("dab")
    with torch.no_grad():
        enc, groups, extras, outs = raw(model, make_inputs(targets=False))
    g, out = groups[0], outs[0]
    # Single scale: C5 of a 64x160 padded batch.
    assert enc.spatial_shapes.tolist() == [[2, 5]] and model.level_embed is None
    # Zero content on the learned anchors, the same for both images.
    assert torch.equal(g.content, torch.zeros(2, Q, D)) and g.pos is None
    torch.testing.assert_close(g.reference, model.anchor_box_embed.weight.sigmoid()[None].expand(2, -1, -1))
    assert extras == {}
    assert out.num_layers == NUM_DEC
    for layer in range(NUM_DEC):
        ref, boxes = out.references[layer], out.boxes[layer]
        assert tuple(ref.shape) == tuple(boxes.shape) == (2, Q, 4)
        assert ((ref > 0) & (ref < 1)).all() and ((boxes > 0) & (boxes < 1)).all()
        # Each layer refines the anchors it was given: boxes = sigmoid(delta + logit(anchor)).
        delta = model.bbox_embed[layer](out.hidden[layer])
        torch.testing.assert_close(boxes, (delta + torch.logit(ref)).sigmoid(), atol=1e-5, rtol=1e-4)
    # The next layer's anchors are this layer's boxes, without gradient; heads are shared.
    assert torch.equal(out.references[1], out.boxes[0])
    assert model.bbox_embed[0] is model.bbox_embed[1] and model.class_embed[0] is model.class_embed[1]


def test_dab_anchor_refinement_detaches_between_layers():
    model = build("dab").train()
    enc = model.encode(model.preprocess_image(make_inputs()))
    groups, _ = model.build_query_groups(enc, None)
    out = model.decode(enc, groups)[0]
    assert out.boxes[0].requires_grad and not out.references[1].requires_grad


def test_dab_positional_queries_follow_the_anchors():
    """pos = ref_point_head(sine(anchor)); the cross-attention's sine embedding is modulated by
    w_ref / w and h_ref / h: a wider anchor scales the x channels down."""
    model = build("dab")
    anchors = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.3, 0.7, 0.1, 0.1]]])
    pos = model.query_pos(anchors, 0)
    torch.testing.assert_close(pos, model.ref_point_head(get_sine_pos_embed(anchors, D // 2)))
    layer = model.decoder_layers[0]
    tgt = torch.randn(1, 2, D)
    base = layer.anchor_sine(tgt, anchors)
    wider = anchors.clone()
    wider[..., 2] *= 2
    out = layer.anchor_sine(tgt, wider)
    torch.testing.assert_close(out[..., D // 2:], base[..., D // 2:] / 2)  # x channels
    torch.testing.assert_close(out[..., : D // 2], base[..., : D // 2])  # y channels
    assert model.decoder_layers[0].query_scale is None and model.decoder_layers[1].query_scale is not None
    assert model.decoder_layers[0].ref_anchor_head is model.decoder_layers[1].ref_anchor_head


def test_dab_transformer_starts_from_xavier_init():
    """DAB-DETR's encoder, decoder and ref_point_head matrices are xavier-uniform (as in the
    reference Transformer), not PyTorch's ~1.7x narrower default Linear init."""
    model = build("dab")
    for name, weight in [
        ("encoder ffn", model.encoder.layers[0].ffn.linear1.weight),
        ("cross-attn q_sine", model.decoder_layers[1].cross_attn.q_sine.weight),
        ("ref_point_head", model.ref_point_head.layers[0].weight),
    ]:
        fan_out, fan_in = weight.shape
        xavier, default = math.sqrt(6 / (fan_in + fan_out)), 1 / math.sqrt(fan_in)
        assert default < weight.abs().max() <= xavier, name


def test_xavier_init_keeps_deformable_attention_init():
    """Modules with their own init (deformable attention) redo it after the xavier pass."""
    model = tiny_dino()
    model.xavier_init_transformer()
    attn = model.encoder.layers[0].self_attn
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.weight) == 0


def test_dab_cross_attention_ignores_padding():
    """Changing the padded part of the memory does not change the decoder outputs."""
    model = build("dab")
    with torch.no_grad():
        enc, groups, _, outs = raw(model, make_inputs(targets=False))
        pad = enc.padding_mask
        assert pad[1].any() and not pad[0].any()
        enc.memory = enc.memory.masked_fill(pad[..., None], 123.0)
        again = model.decode(enc, groups)
    torch.testing.assert_close(outs[0].boxes[-1], again[0].boxes[-1])


# ------------------------------------------------------------------------------------ DINO
def test_dino_mixed_query_selection():
    model = build("dino")
    with torch.no_grad():
        enc, groups, extras, _ = raw(model, make_inputs(targets=False))
    g = groups[0]
    assert len(groups) == 1 and extras["dn"] is None  # no denoising at inference
    enc_out = extras["enc_outputs"]
    N = enc.memory.shape[1]
    assert tuple(enc_out["pred_logits"].shape) == (2, N, C)
    # Positions: the top-Q proposals by their best class score.
    top = enc_out["pred_logits"].max(-1).values.topk(Q, dim=1).indices
    torch.testing.assert_close(g.reference, torch.gather(enc_out["pred_boxes"], 1, top[..., None].expand(-1, -1, 4)))
    # Content: learned, the same for every image.
    torch.testing.assert_close(g.content, model.tgt_embed.weight[None].expand(2, -1, -1))
    assert g.pos is None


def test_dino_training_builds_dn_groups_of_the_interface():
    model = build("dino", dn_number=4).train()
    inputs = make_inputs()
    targets = model.prepare_targets(inputs)
    enc = model.encode(model.preprocess_image(inputs))
    groups, extras = model.build_query_groups(enc, targets)
    dn = extras["dn"]
    # max_gt = 2 -> 4 // 2 = 2 groups of 2 positives + 2 negatives.
    assert dn.num_groups == 2 and len(groups) == 3
    assert all(isinstance(g, QueryGroup) and g.attend_to_main and g.name == "dn" for g in groups[1:])
    assert not groups[0].attend_to_main
    outs = model.decode(enc, groups)
    assert [o.boxes[-1].shape[1] for o in outs] == [Q, 4, 4]
    model.eval()


def test_dino_look_forward_twice():
    """A layer's boxes keep the gradient through the previous layer's boxes; its reference does not."""
    model = build("dino").train()
    enc = model.encode(model.preprocess_image(make_inputs()))
    groups, _ = model.build_query_groups(enc, None)
    out = model.decode(enc, groups)[0]
    assert not out.references[1].requires_grad
    head = model.bbox_embed[0].layers[-1]
    model.zero_grad(set_to_none=True)
    out.boxes[1].sum().backward()
    # Layer 1's boxes reach the head's first application (layer 0) only through look-forward-twice.
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    model.eval()


def test_look_forward_twice_reaches_one_layer_back_only():
    """The last layer's box loss trains its own box head and the previous layer's (through the
    previous box), never an earlier one: DINO builds each layer's box from the detached
    reference. 3 layers with unshared heads, so each head belongs to one layer."""
    torch.manual_seed(0)
    model = tiny_dino(D, num_queries=Q, num_classes=C, dec_layers=3, share_heads=False).train()
    enc = model.encode(model.preprocess_image(make_inputs()))
    groups, _ = model.build_query_groups(enc, None)
    out = model.decode(enc, groups)[0]
    model.zero_grad(set_to_none=True)
    out.boxes[-1].sum().backward()
    grads = [model.bbox_embed[i].layers[-1].weight.grad for i in range(3)]
    assert grads[2] is not None and grads[2].abs().sum() > 0
    assert grads[1] is not None and grads[1].abs().sum() > 0
    assert grads[0] is None or grads[0].abs().sum() == 0
    # Values are unchanged by where the gradient is cut: the next reference is the box.
    for i in range(2):
        torch.testing.assert_close(out.references[i + 1], out.boxes[i].detach())
    model.eval()


def test_dino_dn_losses_are_computed_without_matching():
    """The DN losses equal the criterion's terms on the fixed assignment (positive j -> GT j),
    normalized by num_boxes * groups; the matcher is never called for them."""
    model = build("dino", dn_number=4).train()
    inputs = make_inputs()
    targets = model.prepare_targets(inputs)
    enc = model.encode(model.preprocess_image(inputs))
    torch.manual_seed(3)
    groups, extras = model.build_query_groups(enc, targets)
    outs = model.decode(enc, groups)
    calls = []
    hook = model.criterion.matcher.register_forward_hook(lambda *a: calls.append(1))
    try:
        dn_losses = model.dn_losses(outs[1:], extras["dn"], targets)
        assert not calls
        model.criterion({"pred_logits": outs[0].logits[-1], "pred_boxes": outs[0].boxes[-1]}, targets)
        assert calls  # the hook does see matching
    finally:
        hook.remove()
    dn = extras["dn"]
    indices = dn_match_indices([2, 1], dn.num_groups, dn.max_gt)
    last = {"pred_logits": torch.cat([o.logits[-1] for o in outs[1:]], 1),
            "pred_boxes": torch.cat([o.boxes[-1] for o in outs[1:]], 1)}
    expected = model.criterion.compute_losses(last, targets, indices, 3.0 * dn.num_groups, suffix="_dn")
    for k, v in expected.items():
        torch.testing.assert_close(dn_losses[k], v)
    assert set(dn_losses) == {f"{k}{s}" for k in BASE for s in ("_dn", "_dn_0")}
    model.eval()


def test_dn_dab_detr_trains_denoising_groups_and_plain_dab_detr_has_none():
    """dn_number > 0 makes DAB-DETR DN-DAB-DETR: label-embedded denoising groups behind the
    matching queries, their losses on the fixed assignment (as DINO's), gradients into
    label_enc; the matching queries' outputs are the same as without the groups. dn_number=0
    (the default) keeps DAB-DETR's parameters, checkpoint keys and losses."""
    plain = build("dab")
    assert plain.label_enc is None and not any(k.startswith("label_enc") for k in plain.state_dict())
    dn_model = build("dab", dn_number=4).train()
    assert tuple(dn_model.label_enc.weight.shape) == (C, D)
    inputs = make_inputs()
    targets = dn_model.prepare_targets(inputs)
    enc = dn_model.encode(dn_model.preprocess_image(inputs))
    groups, extras = dn_model.build_query_groups(enc, targets)
    dn = extras["dn"]
    assert dn is not None and len(groups) == 1 + dn.num_groups and all(g.name == "dn" for g in groups[1:])
    # The main group decodes the same with and without the denoising groups behind it.
    torch.testing.assert_close(dn_model.decode(enc, groups)[0].boxes[-1], dn_model.decode(enc, groups[:1])[0].boxes[-1])
    losses = dn_model(inputs)
    dn_keys = {f"{k}{s}" for k in BASE for s in ("_dn", "_dn_0")}
    assert set(losses) == expected_keys("dab") | dn_keys
    sum(losses[k] for k in dn_keys).backward()
    assert dn_model.label_enc.weight.grad is not None and dn_model.label_enc.weight.grad.abs().sum() > 0
    plain.train()
    assert set(plain(inputs)) == expected_keys("dab")
    # Inference has no denoising groups.
    dn_model.eval()
    with torch.no_grad():
        _, groups, extras, _ = raw(dn_model, inputs)
    assert len(groups) == 1 and extras == {"dn": None}


def test_dino_needs_real_label_encoder_loss():
    with pytest.raises(ValueError, match="enc_binary_labels=False"):
        from helpers import _criterion  # noqa: PLC0415
        torch.manual_seed(0)
        tiny_dino(D, num_queries=Q, criterion=_criterion(C, enc_binary_labels=True))


# ------------------------------------------------------------------------ group isolation
def random_group(seed, n, attend_to_main=False, name="x"):
    g = torch.Generator().manual_seed(seed)
    return QueryGroup(torch.randn(2, n, D, generator=g), torch.rand(2, n, 4, generator=g) * 0.6 + 0.2, None,
                      attend_to_main=attend_to_main, name=name)


def assert_same(a, b):
    for field in ("logits", "boxes", "references", "hidden"):
        for x, y in zip(getattr(a, field), getattr(b, field)):
            assert torch.equal(x, y), field


def test_group0_bit_identical_with_and_without_extra_groups(family):
    name, model = family
    with torch.no_grad():
        enc, groups, _, alone = raw(model, make_inputs(targets=False))
        extras = [random_group(1, 6, True, "dn"), random_group(2, 6, True, "dn"), random_group(3, 4, False, "ta")]
        outs = model.decode(enc, groups + extras)
    assert len(outs) == 4
    assert_same(alone[0], outs[0])


def test_extra_groups_cannot_influence_each_other(family):
    name, model = family
    with torch.no_grad():
        enc, groups, _, _ = raw(model, make_inputs(targets=False))
        base = model.decode(enc, groups + [random_group(1, 6, True), random_group(2, 4, True), random_group(3, 5)])
        other = model.decode(enc, groups + [random_group(1, 6, True), random_group(22, 4, True), random_group(3, 5)])
    for i in (0, 1, 3):
        assert_same(base[i], other[i])
    assert not torch.equal(base[2].boxes[-1], other[2].boxes[-1])


def test_dino_dn_groups_do_not_change_the_matching_queries():
    """With and without denoising groups built from GT, group 0 decodes bit-identically."""
    model = build("dino", dn_number=4).train()
    inputs = make_inputs()
    with torch.no_grad():
        enc = model.encode(model.preprocess_image(inputs))
        groups, extras = model.build_query_groups(enc, model.prepare_targets(inputs))
        assert len(groups) > 1
        with_dn = model.decode(enc, groups)
        without = model.decode(enc, groups[:1])
    assert_same(with_dn[0], without[0])
    model.eval()


def test_reference_options_of_dinos_code():
    """enc_loss_topk gives the criterion only the selected proposals; refine_from_normed=False
    refines the next reference from the raw layer output (predictions stay on the normed one)."""
    torch.manual_seed(0)
    model = tiny_dino(D, num_queries=Q, num_classes=C, dec_layers=NUM_DEC, enc_loss_topk=True, refine_from_normed=False)
    torch.nn.init.normal_(model.bbox_embed[0].layers[-1].weight, std=0.1)  # zero-initialized: any input gives 0
    # Post-norm layers already end in a LayerNorm: the decoder norm differs once it is trained.
    torch.nn.init.normal_(model.decoder_norm.weight, 1.0, 0.3)
    model.train()
    inputs = make_inputs()
    enc = model.encode(model.preprocess_image(inputs))
    groups, extras = model.build_query_groups(enc, model.prepare_targets(inputs))
    assert extras["enc_outputs"]["pred_logits"].shape[1] == Q and extras["enc_outputs"]["pred_boxes"].shape[1] == Q
    torch.testing.assert_close(extras["enc_outputs"]["pred_boxes"].detach(), groups[0].reference)
    out = model.decode(enc, groups)[0]
    # The next reference no longer equals the layer's prediction, but comes from the same head.
    assert not torch.allclose(out.references[1], out.boxes[0].detach())
    losses = model(inputs)
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_inverse_sigmoid_eps_clamps_the_refined_references(eps):
    """A reference on the image border (0) is refined from logit(eps): with the zero-initialized
    box head (delta = 0), layer 0's box is exactly eps."""
    torch.manual_seed(0)
    model = tiny_dino(D, num_queries=Q, num_classes=C, dec_layers=NUM_DEC, inverse_sigmoid_eps=eps)
    model.eval()
    with torch.no_grad():
        enc = model.encode(model.preprocess_image(make_inputs()))
        groups, _ = model.build_query_groups(enc, None)
        border = dataclasses.replace(groups[0], reference=torch.zeros_like(groups[0].reference))
        out = model.decode(enc, [border])[0]
    torch.testing.assert_close(out.boxes[0], torch.full_like(out.boxes[0], eps), rtol=1e-3, atol=0)
