"""Attention out of the model's own interface: ``decode(..., return_attention=True)`` gives
each group's cross-attention per layer, for every family, and changes no output."""

import pytest
import torch

from clock_distill.modeling.detr import QueryGroup
from helpers import one_thread_fixture, tiny_dab_detr, tiny_deformable_detr, tiny_dino

one_thread = pytest.fixture(autouse=True)(one_thread_fixture)

FAMILIES = {
    "deformable_plain": lambda: tiny_deformable_detr(),
    "deformable_two_stage": lambda: tiny_deformable_detr(with_box_refine=True, as_two_stage=True),
    "dab_detr": lambda: tiny_dab_detr(),
    "dino": lambda: tiny_dino(),
}


def _images(model):
    g = torch.Generator().manual_seed(0)
    # Two sizes, so that the second image is padded.
    batch = [{"image": torch.rand(3, 64, 96, generator=g) * 255}, {"image": torch.rand(3, 48, 64, generator=g) * 255}]
    return model.preprocess_image(batch)


@pytest.mark.parametrize("family", FAMILIES)
def test_return_attention_changes_nothing_and_has_the_documented_shapes(family):
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    with torch.no_grad():
        enc = model.encode(_images(model))
        groups, _ = model.build_query_groups(enc, None)
        # One more isolated group, as the distiller's target-aware queries.
        boxes = torch.tensor([[[0.3, 0.4, 0.2, 0.3], [0.6, 0.5, 0.1, 0.2]]]).expand(2, -1, -1)
        extra = model.queries_at(boxes, torch.zeros(2, 2, model.embed_dim), name="ta")
        plain = model.decode(enc, groups + [extra])
        seen = model.decode(enc, groups + [extra], return_attention=True)
    B, M = 2, model.decoder_layers[0].cross_attn.n_heads if family == "dab_detr" else model.decoder_layers[0].cross_attn.num_heads
    for a, b in zip(plain, seen):
        assert a.attention == []
        for x, y in zip(a.logits + a.boxes, b.logits + b.boxes):
            assert torch.equal(x, y)
        assert len(b.attention) == len(model.decoder_layers)
    for out in seen:
        Q = out.logits[0].shape[1]
        for att in out.attention:
            w = att["attention_weights"]
            if family == "dab_detr":
                N = enc.memory.shape[1]
                assert w.shape == (B, Q, M, N)
                assert torch.allclose(w.sum(-1), torch.ones(B, Q, M), atol=1e-5)
                assert (w[enc.padding_mask[:, None, None, :].expand_as(w)] == 0).all()
                assert enc.padding_mask[1].any()  # the test does cover padding
            else:
                L, P = model.num_levels, w.shape[-1]
                assert w.shape == (B, Q, M, L, P)
                assert att["sampling_locations"].shape == (B, Q, M, L, P, 2)
                assert torch.allclose(w.sum((-1, -2)), torch.ones(B, Q, M), atol=1e-5)
    # The isolated group decoded alone (as group 0) looks at the same places.
    with torch.no_grad():
        alone = model.decode(enc, [QueryGroup(extra.content, extra.reference, extra.pos, name="ta")], return_attention=True)[0]
    for a, b in zip(alone.attention, seen[-1].attention):
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_dab_attention_weights_are_the_ones_the_output_used():
    from clock_distill.modeling.dab_detr import ConditionalCrossAttention

    torch.manual_seed(0)
    attn = ConditionalCrossAttention(d_model=16, n_heads=4, first_layer=True).eval()
    B, Q, N = 2, 3, 7
    tgt, qpos, sine = torch.randn(B, Q, 16), torch.randn(B, Q, 16), torch.randn(B, Q, 16)
    memory, mpos = torch.randn(B, N, 16), torch.randn(B, N, 16)
    pad = torch.zeros(B, N, dtype=torch.bool)
    pad[1, 5:] = True
    out, att = attn(tgt, qpos, sine, memory, mpos, pad, return_attention=True)
    v = attn.v(memory).view(B, N, 4, -1).transpose(1, 2)  # (B, M, N, D/M)
    mixed = (att["attention_weights"].transpose(1, 2) @ v).transpose(1, 2).reshape(B, Q, 16)
    assert torch.allclose(attn.out_proj(mixed), out, atol=1e-5)
    assert torch.equal(out, attn(tgt, qpos, sine, memory, mpos, pad))
