"""The shared DETR core (modeling/detr.py): encode() -> EncoderOutput, decode(query_groups) with
isolated query groups, inference/postprocess at the original image size, and no hard-coded CUDA.

A tiny Deformable DETR (R18, D=32, 3 levels, 1 encoder and 2 decoder layers) stands in for any
family: everything tested here lives in DETRBase.
"""

import ast
import io
import math
import tokenize
from pathlib import Path

import pytest
import torch

import clock_distill
from clock_distill.modeling import DecoderOutput, EncoderOutput, QueryGroup
from helpers import one_thread_fixture, tiny_deformable_detr

D, L, Q, C, NUM_DEC = 32, 3, 10, 3, 2
SIZES = [(64, 160), (32, 96)]  # multiples of 32: every level has a whole number of valid cells
STRIDES = (8, 16, 32)


one_thread = pytest.fixture(scope="module", autouse=True)(one_thread_fixture)


@pytest.fixture(scope="module")
def plain_model():
    """One plain tiny model for the tests that do not change it (building one takes ~1 s)."""
    return tiny_model()


def tiny_model(with_box_refine=False, as_two_stage=False, seed=0, **kw):
    torch.manual_seed(seed)
    model = tiny_deformable_detr(
        D, L, Q, C, dec_layers=NUM_DEC, with_box_refine=with_box_refine, as_two_stage=as_two_stage, **kw
    )
    return model.eval()


def make_inputs(sizes=SIZES, seed=0, original=None):
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for i, (h, w) in enumerate(sizes):
        x = {"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)}
        if original is not None:
            x["height"], x["width"] = original[i]
        inputs.append(x)
    return inputs


@pytest.fixture(scope="module", params=["plain", "box_refine"])
def model_and_enc(request, plain_model):
    """(model, enc, ref_dim): the plain model decodes 2-d reference points, box refinement 4-d boxes."""
    refine = request.param == "box_refine"
    model = tiny_model(with_box_refine=True) if refine else plain_model
    with torch.no_grad():
        enc = model.encode(model.preprocess_image(make_inputs()))
    return model, enc, 4 if refine else 2


def group(seed, n, ref_dim, B=2, **kw):
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(B, n, D, generator=g)
    pos = torch.randn(B, n, D, generator=g)
    centers = torch.rand(B, n, 2, generator=g) * 0.6 + 0.2
    ref = centers if ref_dim == 2 else torch.cat([centers, torch.rand(B, n, 2, generator=g) * 0.3 + 0.05], -1)
    return QueryGroup(content, ref, pos, **kw)


def causal_mask(n):
    """Each query sees itself and the queries before it (True = blocked)."""
    return torch.ones(n, n, dtype=torch.bool).triu(1)


def block_mask(n, blocks):
    """DN-style: ``blocks`` equal parts that only see themselves."""
    m = torch.ones(n, n, dtype=torch.bool)
    size = n // blocks
    for b in range(blocks):
        m[b * size : (b + 1) * size, b * size : (b + 1) * size] = False
    return m


def decode(model, enc, groups):
    with torch.no_grad():
        return model.decode(enc, groups)


FIELDS = ("logits", "boxes", "references", "hidden")


def assert_equal_outputs(a: DecoderOutput, b: DecoderOutput, what=""):
    for f in FIELDS:
        xs, ys = getattr(a, f), getattr(b, f)
        assert len(xs) == len(ys) == NUM_DEC
        for i, (x, y) in enumerate(zip(xs, ys)):
            assert x.shape == y.shape, f"{what} {f}[{i}] shape {tuple(x.shape)} vs {tuple(y.shape)}"
            assert torch.equal(x, y), f"{what} {f}[{i}] differs (max {(x - y).abs().max().item():.3g})"


def assert_close_outputs(a: DecoderOutput, b: DecoderOutput, atol=1e-5):
    for f in FIELDS:
        for i, (x, y) in enumerate(zip(getattr(a, f), getattr(b, f))):
            torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, msg=lambda m: f"{f}[{i}]: {m}")


def differs(a: DecoderOutput, b: DecoderOutput) -> bool:
    return not torch.equal(a.hidden[-1], b.hidden[-1])


# ------------------------------------------------------------------------------ EncoderOutput
def test_encoder_output_shapes_and_padding(plain_model):
    model = plain_model
    with torch.no_grad():
        images = model.preprocess_image(make_inputs())
        enc = model.encode(images)
    assert isinstance(enc, EncoderOutput)
    assert tuple(images.tensor.shape) == (2, 3, 64, 160)
    shapes = [(64 // s, 160 // s) for s in STRIDES]  # (8, 20), (4, 10), (2, 5)
    N = sum(h * w for h, w in shapes)
    assert enc.spatial_shapes.dtype == torch.long and enc.spatial_shapes.tolist() == [list(s) for s in shapes]
    assert enc.level_start_index.tolist() == [0, 160, 200]
    assert tuple(enc.memory.shape) == (2, N, D) and torch.isfinite(enc.memory).all()
    assert tuple(enc.pos.shape) == (2, N, D) and torch.isfinite(enc.pos).all()
    assert tuple(enc.padding_mask.shape) == (2, N) and enc.padding_mask.dtype == torch.bool
    assert [tuple(f.shape) for f in enc.features] == [(2, D, h, w) for h, w in shapes]
    assert [tuple(s) for s in enc.image_sizes] == SIZES

    # valid_ratios (B, L, 2) = (w, h) valid fractions: 1 for the full image, (96/160, 32/64) for the other.
    assert tuple(enc.valid_ratios.shape) == (2, L, 2)
    assert ((enc.valid_ratios > 0) & (enc.valid_ratios <= 1)).all()
    torch.testing.assert_close(enc.valid_ratios[0], torch.ones(L, 2))
    torch.testing.assert_close(enc.valid_ratios[1], torch.tensor([[0.6, 0.5]] * L))

    # padding_mask: True exactly on the cells beyond each image's own (h/stride, w/stride).
    for lvl, ((h, w), s, stride) in enumerate(zip(shapes, enc.level_start_index.tolist(), STRIDES)):
        mask = enc.padding_mask[:, s : s + h * w].view(2, h, w)
        for b, (ih, iw) in enumerate(SIZES):
            expected = torch.ones(h, w, dtype=torch.bool)
            expected[: ih // stride, : iw // stride] = False
            assert torch.equal(mask[b], expected), f"level {lvl} image {b}"


def test_encoder_output_unaffected_by_smaller_images_in_the_batch(plain_model):
    """The largest image (no padding) encodes the same alone and batched with a smaller one."""
    model = plain_model
    with torch.no_grad():
        both = model.encode(model.preprocess_image(make_inputs()))
        alone = model.encode(model.preprocess_image(make_inputs()[:1]))
    assert not alone.padding_mask.any()
    torch.testing.assert_close(both.memory[:1], alone.memory, atol=1e-5, rtol=1e-4)


def test_level_maps_round_trip(plain_model):
    model = plain_model
    with torch.no_grad():
        enc = model.encode(model.preprocess_image(make_inputs()))
    maps = enc.level_maps()
    assert [tuple(m.shape) for m in maps] == [(2, D, h, w) for h, w in enc.spatial_shapes.tolist()]
    assert torch.equal(torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1), enc.memory)
    # Any (B, N, D) tokens: the flattened neck features come back as the features.
    tokens = torch.cat([f.flatten(2).transpose(1, 2) for f in enc.features], 1)
    for got, want in zip(enc.level_maps(tokens), enc.features):
        assert torch.equal(got, want)
    # A different channel count works too (e.g. a per-token score map).
    scores = torch.arange(2 * tokens.shape[1], dtype=torch.float32).view(2, -1, 1)
    first = enc.level_maps(scores)[0]
    assert tuple(first.shape) == (2, 1, 8, 20) and first[0, 0, 1, 0].item() == 20.0  # row-major


def test_encode_checks_the_number_of_levels(plain_model, monkeypatch):
    model = plain_model
    monkeypatch.setattr(model, "num_levels", L + 1)
    with pytest.raises(ValueError, match="levels"):
        model.encode(model.preprocess_image(make_inputs()))


# --------------------------------------------------------------------------- decode: groups
def test_decode_shapes_and_references(model_and_enc):
    model, enc, rd = model_and_enc
    main, extra = group(0, Q, rd), group(1, 7, 4, name="dn")
    outs = decode(model, enc, [main, extra])
    assert len(outs) == 2
    for out, n in zip(outs, (Q, 7)):
        assert out.num_layers == NUM_DEC
        for lg, bx, hd in zip(out.logits, out.boxes, out.hidden):
            assert tuple(lg.shape) == (2, n, C) and tuple(bx.shape) == (2, n, 4) and tuple(hd.shape) == (2, n, D)
            assert ((bx > 0) & (bx < 1)).all()
    # The first layer's reference is the group's own; with box refinement each next layer's is
    # the previous layer's boxes, detached; without, it stays fixed.
    for out, g in zip(outs, (main, extra)):
        assert torch.equal(out.references[0], g.reference)
        for i in range(1, NUM_DEC):
            if model.box_refine:
                assert torch.equal(out.references[i], out.boxes[i - 1]) and not out.references[i].requires_grad
            else:
                assert torch.equal(out.references[i], g.reference)
    as_out = outs[0].as_outputs()
    assert as_out["pred_logits"] is outs[0].logits[-1] and as_out["pred_boxes"] is outs[0].boxes[-1]
    assert len(as_out["aux_outputs"]) == NUM_DEC - 1


def test_decode_needs_a_group(model_and_enc):
    model, enc, rd = model_and_enc
    with pytest.raises(ValueError):
        model.decode(enc, [])


def test_extra_groups_must_share_reference_size(model_and_enc):
    model, enc, rd = model_and_enc
    with pytest.raises(ValueError, match="reference"):
        model.decode(enc, [group(0, Q, rd), group(1, 4, 2), group(2, 4, 4)])


def _extras(rd):
    return {
        "one": [group(1, 6, rd)],
        "one_attends_main": [group(1, 6, rd, attend_to_main=True)],
        "one_with_mask": [group(1, 6, rd, self_attn_mask=causal_mask(6))],
        "several_isolated": [group(1, 6, rd), group(2, 4, rd), group(3, 5, rd)],
        "several_attend_main": [group(1, 6, rd, attend_to_main=True), group(2, 4, rd, attend_to_main=True)],
        "several_mixed_masks": [
            group(1, 6, rd, attend_to_main=True, self_attn_mask=block_mask(6, 2), name="dn"),
            group(2, 4, rd, attend_to_main=False, self_attn_mask=causal_mask(4), name="ta"),
            group(3, 5, rd, attend_to_main=True, name="x"),
            group(4, 3, rd, attend_to_main=False, name="y"),
        ],
    }


@pytest.mark.parametrize("main_mask", [False, True], ids=["main", "main_masked"])
@pytest.mark.parametrize("case", list(_extras(2)))
def test_group0_bit_identical_with_and_without_extra_groups(model_and_enc, case, main_mask):
    model, enc, rd = model_and_enc
    main = group(0, Q, rd, self_attn_mask=block_mask(Q, 2) if main_mask else None)
    alone = decode(model, enc, [main])[0]
    outs = decode(model, enc, [main] + _extras(rd)[case])
    assert len(outs) == 1 + len(_extras(rd)[case])
    assert_equal_outputs(alone, outs[0], what=case)


@pytest.mark.parametrize("attend", [(False, False), (True, True), (True, False), (False, True)])
def test_extra_groups_cannot_influence_each_other(model_and_enc, attend):
    model, enc, rd = model_and_enc
    a1, a2 = attend

    def groups(seed2):
        return [
            group(0, Q, rd),
            group(1, 6, rd, attend_to_main=a1, self_attn_mask=causal_mask(6)),
            group(seed2, 4, rd, attend_to_main=a2),
            group(3, 5, rd, attend_to_main=True),
        ]

    base = decode(model, enc, groups(2))
    other = decode(model, enc, groups(22))  # group 2: new content, positions and references
    assert_equal_outputs(base[0], other[0], "group 0")
    assert_equal_outputs(base[1], other[1], "group 1")
    assert_equal_outputs(base[3], other[3], "group 3")
    assert differs(base[2], other[2])


def test_only_groups_that_attend_to_main_see_group0(model_and_enc):
    model, enc, rd = model_and_enc
    extras = [group(1, 6, rd, attend_to_main=True), group(2, 4, rd), group(3, 5, rd, self_attn_mask=causal_mask(5))]
    base = decode(model, enc, [group(0, Q, rd)] + extras)
    other = decode(model, enc, [group(10, Q, rd)] + extras)  # a different group 0
    assert differs(base[0], other[0])
    assert differs(base[1], other[1])  # attends to group 0
    assert_equal_outputs(base[2], other[2], "isolated group")
    assert_equal_outputs(base[3], other[3], "isolated masked group")


def test_isolated_extra_group_decodes_as_if_alone(model_and_enc):
    """An extra group that does not attend to group 0 gets what it would get as group 0."""
    model, enc, rd = model_and_enc
    g1 = group(1, 6, rd, self_attn_mask=causal_mask(6))
    g2 = group(2, 4, rd)
    outs = decode(model, enc, [group(0, Q, rd), g1, g2])
    assert_close_outputs(outs[1], decode(model, enc, [g1])[0])
    assert_close_outputs(outs[2], decode(model, enc, [g2])[0])


def test_attend_to_main_sees_group0_state_of_the_same_layer(model_and_enc):
    """A copy of group 0 that attends to group 0 sees every key twice, which leaves softmax
    attention unchanged, so it decodes exactly like group 0 (at every layer) only if each
    layer's prefix is group 0's input to that same layer."""
    model, enc, rd = model_and_enc
    main = group(0, Q, rd)
    copy = QueryGroup(main.content.clone(), main.reference.clone(), main.pos.clone(), attend_to_main=True, name="copy")
    outs = decode(model, enc, [main, copy, group(5, 4, rd)])
    assert_close_outputs(outs[1], outs[0])


@pytest.mark.parametrize("index", [0, 1], ids=["group0", "extra_group"])
def test_self_attn_mask_blocks_within_group(model_and_enc, index):
    """With a causal mask, query 0 of a group does not depend on the later queries of its group."""
    model, enc, rd = model_and_enc
    g = group(1, 6, rd, self_attn_mask=causal_mask(6))
    changed = QueryGroup(g.content.clone(), g.reference, g.pos, self_attn_mask=g.self_attn_mask)
    changed.content[:, 1:] += 1.0
    others = [group(0, Q, rd)]
    a = decode(model, enc, others[:index] + [g] + others[index:])[index]
    b = decode(model, enc, others[:index] + [changed] + others[index:])[index]
    for f in FIELDS:
        for x, y in zip(getattr(a, f), getattr(b, f)):
            torch.testing.assert_close(x[:, :1], y[:, :1], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a.hidden[-1][:, 1:], b.hidden[-1][:, 1:])


@pytest.mark.parametrize("ref_dim", [2, 4])
def test_small_ta_group_as_group0(model_and_enc, ref_dim):
    """The teacher decodes only a few target-aware queries (boxes from GT) as its group 0."""
    model, enc, _ = model_and_enc
    ta = group(7, 3, ref_dim, name="ta")
    alone = decode(model, enc, [ta])
    assert len(alone) == 1
    assert tuple(alone[0].logits[-1].shape) == (2, 3, C) and tuple(alone[0].boxes[-1].shape) == (2, 3, 4)
    assert torch.isfinite(alone[0].boxes[-1]).all()
    with_extras = decode(model, enc, [ta, group(8, Q, ref_dim, attend_to_main=True), group(9, 5, ref_dim)])
    assert_equal_outputs(alone[0], with_extras[0], "ta")
    assert tuple(with_extras[1].logits[-1].shape) == (2, Q, C)
    # A single query works as well.
    one = decode(model, enc, [group(11, 1, ref_dim, name="ta")])[0]
    assert tuple(one.boxes[-1].shape) == (2, 1, 4)


def test_group0_gradients_do_not_come_from_isolated_groups():
    model = tiny_model(with_box_refine=True).train()
    enc = model.encode(model.preprocess_image(make_inputs()))
    main = group(0, Q, 4)
    main.content.requires_grad_(True)
    extra = group(1, 5, 4)
    extra.content.requires_grad_(True)
    outs = model.decode(enc, [main, extra])
    (grad_main,) = torch.autograd.grad(outs[1].logits[-1].sum(), [main.content], allow_unused=True)
    assert grad_main is None or not grad_main.any()
    (grad_extra,) = torch.autograd.grad(outs[1].logits[-1].sum(), [extra.content])
    assert grad_extra.abs().sum() > 0


# --------------------------------------------------------------------------- postprocessing
def hand_made_output(boxes_by_image, B=2, Qh=4):
    """A one-layer DecoderOutput: image b's query q_b predicts class c_b (logit 3 - b) with box
    boxes_by_image[b]; all other logits are -10, all other boxes (0.5, 0.5, 0.1, 0.1)."""
    logits = torch.full((B, Qh, C), -10.0)
    boxes = torch.tensor([0.5, 0.5, 0.1, 0.1]).repeat(B, Qh, 1)
    for b, (q, c, box) in enumerate(boxes_by_image):
        logits[b, q, c] = 3.0 - b
        boxes[b, q] = torch.tensor(box)
    return DecoderOutput([logits], [boxes], [boxes], [torch.zeros(B, Qh, D)])


KNOWN = [(2, 1, (0.5, 0.25, 0.2, 0.1)), (0, 2, (0.25, 0.5, 0.5, 0.5))]


def test_inference_maps_normalized_boxes_to_resized_pixels(plain_model):
    model = plain_model
    out = hand_made_output(KNOWN)
    results = model.inference(out, SIZES)
    assert [r.image_size for r in results] == SIZES
    assert len(results[0]) == 4 * C  # top-k, k = min(select_box_nums_for_evaluation=100, Q*C)
    # Image 0 (64x160): cxcywh (0.5, 0.25, 0.2, 0.1) -> xyxy (0.4, 0.2, 0.6, 0.3) * (160, 64, 160, 64).
    torch.testing.assert_close(results[0].pred_boxes.tensor[0], torch.tensor([64.0, 12.8, 96.0, 19.2]))
    assert results[0].pred_classes[0].item() == 1
    assert results[0].scores[0].item() == pytest.approx(1 / (1 + math.exp(-3.0)))
    # Image 1 (32x96): (0.25, 0.5, 0.5, 0.5) -> (0, 0.25, 0.5, 0.75) * (96, 32, 96, 32).
    torch.testing.assert_close(results[1].pred_boxes.tensor[0], torch.tensor([0.0, 8.0, 48.0, 24.0]))
    assert results[1].pred_classes[0].item() == 2
    for r in results:
        assert (r.scores[:-1] >= r.scores[1:]).all()


def test_inference_top_k_and_clipping(plain_model, monkeypatch):
    model = plain_model
    monkeypatch.setattr(model, "select_box_nums_for_evaluation", 5)
    out = hand_made_output([(0, 0, (0.95, 0.9, 0.3, 0.4)), (3, 1, (0.05, 0.05, 0.2, 0.2))])
    results = model.inference(out, SIZES)
    assert [len(r) for r in results] == [5, 5]
    # Boxes that cross the border are clipped to the image.
    torch.testing.assert_close(results[0].pred_boxes.tensor[0], torch.tensor([128.0, 44.8, 160.0, 64.0]))
    torch.testing.assert_close(results[1].pred_boxes.tensor[0], torch.tensor([0.0, 0.0, 14.4, 4.8]))


def test_postprocess_rescales_to_original_size(plain_model):
    model = plain_model
    out = hand_made_output(KNOWN)
    originals = [(96, 240), (48, 144)]  # 1.5x the network input sizes
    processed = model.postprocess(out, SIZES, [{"height": h, "width": w} for h, w in originals])
    insts = [p["instances"] for p in processed]
    assert [i.image_size for i in insts] == originals
    torch.testing.assert_close(insts[0].pred_boxes.tensor[0], torch.tensor([96.0, 19.2, 144.0, 28.8]))
    torch.testing.assert_close(insts[1].pred_boxes.tensor[0], torch.tensor([0.0, 12.0, 72.0, 36.0]))
    assert insts[0].pred_classes[0].item() == 1 and insts[1].pred_classes[0].item() == 2
    # Without height/width the network input size is kept.
    kept = model.postprocess(out, SIZES, [{}, {}])
    assert [p["instances"].image_size for p in kept] == SIZES


def test_forward_inference_at_original_size_matches_raw_decode(plain_model, monkeypatch):
    model = plain_model
    monkeypatch.setattr(model, "select_box_nums_for_evaluation", 20)
    originals = [(96, 240), (48, 144)]
    inputs = make_inputs(original=originals)
    with torch.no_grad():
        results = model(inputs)
        images = model.preprocess_image(inputs)
        enc = model.encode(images)
        groups, _ = model.build_query_groups(enc, None)
        raw = model.decode(enc, groups)[0]
    assert len(results) == 2
    for b, ((h, w), r) in enumerate(zip(originals, results)):
        inst = r["instances"]
        assert inst.image_size == (h, w)
        assert 0 < len(inst) <= 20
        bx = inst.pred_boxes.tensor
        assert (bx[:, 0::2] >= 0).all() and (bx[:, 0::2] <= w).all()
        assert (bx[:, 1::2] >= 0).all() and (bx[:, 1::2] <= h).all()
        assert ((inst.pred_classes >= 0) & (inst.pred_classes < C)).all()
        # The best detection, from the raw outputs: its normalized box times the original size.
        probs = raw.logits[-1][b].sigmoid()
        q, c = divmod(int(probs.flatten().argmax()), C)
        cx, cy, bw, bh = raw.boxes[-1][b, q].tolist()
        expected = torch.tensor([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
        expected = torch.minimum(expected.clamp(min=0), torch.tensor([w, h, w, h], dtype=torch.float32))
        torch.testing.assert_close(bx[0], expected, atol=1e-3, rtol=1e-5)
        assert inst.pred_classes[0].item() == c
        assert inst.scores[0].item() == pytest.approx(probs.max().item())


def test_preprocess_and_device(plain_model):
    model = plain_model
    assert model.device == torch.device("cpu")
    images = model.preprocess_image(make_inputs())
    assert images.tensor.device == model.device and images.tensor.dtype == torch.float32
    assert [tuple(s) for s in images.image_sizes] == SIZES
    # Normalized with pixel_mean/std; the padding is zero.
    raw = make_inputs()[1]["image"].float()
    torch.testing.assert_close(images.tensor[1, :, :32, :96], (raw - model.pixel_mean) / model.pixel_std)
    assert not images.tensor[1, :, 32:].any() and not images.tensor[1, :, :, 96:].any()


def test_training_forward_needs_targets(plain_model):
    plain_model.train()
    try:
        with pytest.raises(KeyError, match="target"):
            plain_model(make_inputs())
    finally:
        plain_model.eval()


# ------------------------------------------------------------------------ device-agnostic code
PACKAGE = Path(clock_distill.__file__).resolve().parent
# (file, the line must contain one of) where "cuda" is allowed: AMP is CUDA-only.
CUDA_ALLOWED = {
    "engine/trainer.py": ("torch.amp.", "torch.autocast(", 'device.type != "cuda"'),
    # The speed benchmark synchronizes and reads CUDA memory when its --device is a GPU.
    "evaluation/speed_bench.py": ('.type == "cuda"', 'device.startswith("cuda")'),
}


def cuda_uses(path: Path):
    """(line, text) of every `.cuda(` call and every "cuda"/"cuda:N" string literal in ``path``.
    Comments and docstrings do not count."""
    src = path.read_text()
    lines = src.splitlines()
    toks = [t for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type not in (tokenize.NL, tokenize.COMMENT)]
    hits = []
    for i, t in enumerate(toks):
        if t.type == tokenize.STRING:
            try:
                value = ast.literal_eval(t.string)
            except (ValueError, SyntaxError):  # f-strings
                value = t.string
            if isinstance(value, str) and (value == "cuda" or value.startswith("cuda:")):
                hits.append((t.start[0], lines[t.start[0] - 1].strip()))
        elif (t.type == tokenize.NAME and t.string == "cuda" and 0 < i < len(toks) - 1
              and toks[i - 1].string == "." and toks[i + 1].string == "("):
            hits.append((t.start[0], lines[t.start[0] - 1].strip()))
    return hits


def test_cuda_scanner_finds_what_it_should(tmp_path):
    p = tmp_path / "x.py"
    p.write_text('"""Docstring mentioning "cuda" and .cuda()."""\n# x.cuda()\n'
                 'a = x.cuda()\nb = torch.device("cuda")\nc = "cuda:1"\nd = torch.cuda.is_available()\n')
    assert [line for line, _ in cuda_uses(p)] == [3, 4, 5]


def test_no_hard_coded_cuda():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    bad = []
    for path in files:
        rel = path.relative_to(PACKAGE).as_posix()
        allowed = CUDA_ALLOWED.get(rel, ())
        for line, text in cuda_uses(path):
            if not any(a in text for a in allowed):
                bad.append(f"{rel}:{line}: {text}")
    assert not bad, "hard-coded CUDA:\n" + "\n".join(bad)
