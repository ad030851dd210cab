"""DINO's contrastive denoising (modeling/denoising.py): the attention mask entry by entry, the
queries built from GT (layout, noise ranges, label flips), the fixed DN assignment, and that
the shared decoder's block mask is the same rule as DINO's one-matrix mask."""

import pytest
import torch
from torch import nn

from clock_distill.modeling import DETRBase, QueryGroup
from clock_distill.modeling.denoising import build_cdn_queries, dn_attention_mask, dn_match_indices
from clock_distill.modeling.layers import box_cxcywh_to_xyxy

D, C = 8, 5


def targets_two_images():
    return [
        {"labels": torch.tensor([0, 3, 4]),
         "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.6, 0.5, 0.1, 0.2], [0.5, 0.5, 0.3, 0.1]])},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.45, 0.55, 0.25, 0.2]])},
    ]


def label_enc(seed=0):
    torch.manual_seed(seed)
    return nn.Embedding(C, D)


# ------------------------------------------------------------------------------------- mask
def test_dn_attention_mask_entry_by_entry():
    """2 groups of 2 (1 positive + 1 negative), 3 matching queries: T = 7. Rows are queries,
    columns keys, 1 = blocked. Written out by hand from DINO's rule."""
    expected = torch.tensor(
        [
            # g0 g0 g1 g1 m  m  m
            [0, 0, 1, 1, 0, 0, 0],  # group 0 sees itself and the matching queries
            [0, 0, 1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0],  # group 1 likewise
            [1, 1, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0],  # matching queries see no DN query
            [1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(dn_attention_mask(2, 2, 3), expected)


def test_decoder_block_mask_is_dinos_mask():
    """The core's merged stream for G DN groups (attend_to_main) carries DINO's mask: its rows
    are the DN rows of dn_attention_mask with the matching-query columns moved first."""
    G, size, Q = 3, 4, 5
    groups = [QueryGroup(torch.zeros(1, size, D), torch.rand(1, size, 4), None, attend_to_main=True) for _ in range(G)]
    stream = DETRBase._merged_stream(groups, Q)
    full = dn_attention_mask(G, size, Q)
    pad = G * size
    expected = torch.cat([full[:pad, pad:], full[:pad, :pad]], 1)  # (pad, Q + pad)
    assert stream["sees_main"]
    assert torch.equal(stream["mask"], expected)
    # Group 0 (the matching queries) runs apart; DINO's mask also keeps it from every DN key.
    assert full[pad:, :pad].all() and not full[pad:, pad:].any()


# ------------------------------------------------------------------------------ CDN queries
def test_layout_groups_and_padding():
    enc = label_enc()
    dn = build_cdn_queries(targets_two_images(), enc, dn_number=7, label_noise_ratio=0.0, box_noise_scale=0.0)
    # max_gt = 3 -> 7 // 3 = 2 groups of 3 positives + 3 negatives.
    assert dn.num_groups == 2 and dn.max_gt == 3 and dn.group_size == 6
    assert len(dn.groups) == 2
    for g in dn.groups:
        assert isinstance(g, QueryGroup) and g.attend_to_main and g.pos is None and g.name == "dn"
        assert tuple(g.content.shape) == (2, 6, D) and tuple(g.reference.shape) == (2, 6, 4)
    t = targets_two_images()
    for gi in range(2):
        labels = dn.labels[:, gi]
        # Image 0: 3 positives then 3 negatives, all of its GT in order.
        assert labels[0].tolist() == [0, 3, 4, 0, 3, 4]
        # Image 1: one GT; the other slots are padding (-1), with zero content and a centred box.
        assert labels[1].tolist() == [2, -1, -1, 2, -1, -1]
        for b in range(2):
            for j, lab in enumerate(labels[b].tolist()):
                content = dn.groups[gi].content[b, j]
                if lab < 0:
                    assert torch.equal(content, torch.zeros(D))
                    assert torch.equal(dn.groups[gi].reference[b, j], torch.full((4,), 0.5))
                else:
                    assert torch.equal(content, enc.weight[lab])
        # Without box noise every (positive and negative) box is its GT box.
        ref = dn.groups[gi].reference
        torch.testing.assert_close(ref[0, :3], t[0]["boxes"])
        torch.testing.assert_close(ref[0, 3:], t[0]["boxes"])
        torch.testing.assert_close(ref[1, 0], t[1]["boxes"][0])


def test_number_of_groups_follows_the_budget():
    enc = label_enc()
    t = targets_two_images()
    assert build_cdn_queries(t, enc, 100, 0.5, 1.0).num_groups == 33  # 100 // 3
    assert build_cdn_queries(t, enc, 2, 0.5, 1.0).num_groups == 1  # at least one group
    assert build_cdn_queries(t, enc, 0, 0.5, 1.0) is None
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}] * 2
    assert build_cdn_queries(empty, enc, 100, 0.5, 1.0) is None


@pytest.mark.parametrize("scale", [0.4, 1.0])
def test_box_noise_ranges(scale):
    """Positives: every corner within scale * half-size of the GT corner. Negatives: every corner
    between 1x and 2x that, except where clipped to the image (or to 1e-3 from its border). Boxes are away from the border
    at scale 0.4, so nothing is clipped there."""
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1], [0.7, 0.4, 0.3, 0.2]])
    t = [{"labels": torch.tensor([0, 1, 2]), "boxes": gt}]
    gen = torch.Generator().manual_seed(0)
    dn = build_cdn_queries(t, label_enc(), 300, 0.0, scale, generator=gen)
    assert dn.num_groups == 100
    boxes = dn.boxes[0].view(100, 2, 3, 4)  # (G, positive/negative, n, 4)
    xyxy = box_cxcywh_to_xyxy(boxes)
    gt_xyxy = box_cxcywh_to_xyxy(gt)
    half = torch.cat([gt[:, 2:] / 2, gt[:, 2:] / 2], -1)
    rel = (xyxy - gt_xyxy).abs() / (half * scale)  # shift in units of scale * half-size
    eps = 1e-4
    assert (rel[:, 0] <= 1 + eps).all()
    assert (xyxy >= 0).all() and (xyxy <= 1).all()
    # Clipped to the image, then each cxcywh coordinate to [1e-3, 1 - 1e-3] (DINO's logit eps).
    assert (boxes >= 1e-3 - 1e-7).all() and (boxes <= 1 - 1e-3 + 1e-7).all()
    inner = (boxes[..., 2:] > 1e-3 + 1e-6).all(-1, keepdim=True)
    unclipped = (xyxy[:, 1] > 2e-3) & (xyxy[:, 1] < 1 - 2e-3) & inner[:, 1]
    neg = rel[:, 1][unclipped]
    assert (neg >= 1 - eps).all() and (neg <= 2 + eps).all()
    if scale == 0.4:
        assert unclipped.all()
    # Both directions and the whole range occur.
    assert rel[:, 0].max() > 0.9 and rel[:, 0].min() < 0.1
    assert (xyxy[:, 0] > gt_xyxy).any() and (xyxy[:, 0] < gt_xyxy).any()
    assert neg.max() > 1.9 and neg.min() < 1.1


def test_label_noise_rate():
    """A label flips to a uniformly random class with probability ratio / 2 (DINO's convention),
    so it changes with probability ratio / 2 * (C - 1) / C."""
    n = 50
    t = [{"labels": torch.zeros(n, dtype=torch.long), "boxes": torch.rand(n, 4) * 0.5 + 0.25}]
    gen = torch.Generator().manual_seed(0)
    dn = build_cdn_queries(t, label_enc(), 50 * 200, 0.5, 1.0, generator=gen)  # 200 groups
    changed = (dn.labels != 0).float().mean().item()
    assert changed == pytest.approx(0.25 * (C - 1) / C, abs=0.01)
    assert dn.labels.min() >= 0 and dn.labels.max() < C
    dn0 = build_cdn_queries(t, label_enc(), 50 * 10, 0.0, 1.0)
    assert (dn0.labels == 0).all()


def test_dn_match_indices():
    """Positive j of every group predicts GT j; negatives and padding are never assigned."""
    idx = dn_match_indices([3, 1, 0], num_groups=2, max_gt=3)  # group size 6
    assert idx[0][0].tolist() == [0, 1, 2, 6, 7, 8] and idx[0][1].tolist() == [0, 1, 2, 0, 1, 2]
    assert idx[1][0].tolist() == [0, 6] and idx[1][1].tolist() == [0, 0]
    assert idx[2][0].numel() == 0 and idx[2][1].numel() == 0
