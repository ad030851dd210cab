"""Hungarian matcher: cost formula, optimality against brute force, edge cases."""

import itertools

import pytest
import torch
import torchvision

from clock_distill.modeling.matcher import HungarianMatcher


def random_problem(B, Q, C, sizes, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, Q, C, generator=g, dtype=torch.float64) * 2
    boxes = torch.cat(
        [torch.rand(B, Q, 2, generator=g, dtype=torch.float64) * 0.6 + 0.2,
         torch.rand(B, Q, 2, generator=g, dtype=torch.float64) * 0.3 + 0.05], dim=-1
    )
    targets = []
    for n in sizes:
        targets.append({
            "labels": torch.randint(0, C, (n,), generator=g),
            "boxes": torch.cat([torch.rand(n, 2, generator=g, dtype=torch.float64) * 0.6 + 0.2,
                                torch.rand(n, 2, generator=g, dtype=torch.float64) * 0.3 + 0.05], dim=-1),
        })
    return logits, boxes, targets


def reference_cost(logits, boxes, labels, tgt_boxes, wc=2.0, wb=5.0, wg=2.0, alpha=0.25, gamma=2.0):
    """(Q, n) cost written out independently (torchvision GIoU, explicit L1)."""
    p = logits.sigmoid()[:, labels]
    focal_pos = alpha * (1 - p) ** gamma * -torch.log(p + 1e-8)
    focal_neg = (1 - alpha) * p**gamma * -torch.log(1 - p + 1e-8)
    l1 = (boxes[:, None, :] - tgt_boxes[None, :, :]).abs().sum(-1)
    giou = torchvision.ops.generalized_box_iou(
        torchvision.ops.box_convert(boxes, "cxcywh", "xyxy"), torchvision.ops.box_convert(tgt_boxes, "cxcywh", "xyxy")
    )
    return wc * (focal_pos - focal_neg) + wb * l1 - wg * giou


def brute_force(cost):
    """Minimum total cost over all injective assignments of the smaller side."""
    Q, n = cost.shape
    cost = cost.tolist()
    best, best_pairs = float("inf"), None
    if n <= Q:
        for perm in itertools.permutations(range(Q), n):
            total = sum(cost[q][t] for t, q in enumerate(perm))
            if total < best:
                best, best_pairs = total, sorted((q, t) for t, q in enumerate(perm))
    else:
        for perm in itertools.permutations(range(n), Q):
            total = sum(cost[q][t] for q, t in enumerate(perm))
            if total < best:
                best, best_pairs = total, sorted((q, t) for q, t in enumerate(perm))
    return best, best_pairs


def test_cost_matrix_formula():
    logits, boxes, targets = random_problem(1, 6, 5, [4], seed=0)
    matcher = HungarianMatcher()
    cost = matcher.cost_matrix(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"])
    assert cost.shape == (6, 4)
    assert torch.allclose(cost, reference_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"]))
    other = HungarianMatcher(cost_class=1.0, cost_bbox=3.0, cost_giou=0.5, focal_alpha=0.5, focal_gamma=1.0)
    cost = other.cost_matrix(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"])
    expected = reference_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"], 1.0, 3.0, 0.5, 0.5, 1.0)
    assert torch.allclose(cost, expected)


@pytest.mark.parametrize("seed", range(6))
def test_equals_brute_force(seed):
    sizes = [[3, 5, 1], [0, 2, 6], [4, 4, 7], [6, 1, 2], [5, 5, 5], [2, 7, 3]][seed]  # 7 > Q=6 included
    logits, boxes, targets = random_problem(3, 6, 4, sizes, seed=seed + 10)
    matcher = HungarianMatcher()
    indices = matcher(logits, boxes, targets)
    assert len(indices) == 3
    for i, (src, tgt) in enumerate(indices):
        n = sizes[i]
        assert src.dtype == torch.int64 and tgt.dtype == torch.int64
        assert src.device.type == "cpu"
        assert len(src) == len(tgt) == min(6, n)
        assert torch.all(src[1:] > src[:-1])  # sorted, distinct
        assert len(set(tgt.tolist())) == len(tgt)
        if n == 0:
            continue
        cost = reference_cost(logits[i], boxes[i], targets[i]["labels"], targets[i]["boxes"])
        best, best_pairs = brute_force(cost)
        got = cost[src, tgt].sum().item()
        assert got == pytest.approx(best, abs=1e-9)
        assert sorted(zip(src.tolist(), tgt.tolist())) == best_pairs


def test_zero_targets():
    logits, boxes, targets = random_problem(2, 5, 3, [0, 0], seed=1)
    indices = HungarianMatcher()(logits, boxes, targets)
    for src, tgt in indices:
        assert src.shape == (0,) and tgt.shape == (0,)
        assert src.dtype == torch.int64 and tgt.dtype == torch.int64
    logits, boxes, targets = random_problem(2, 5, 3, [0, 3], seed=2)
    indices = HungarianMatcher()(logits, boxes, targets)
    assert indices[0][0].numel() == 0 and indices[1][0].numel() == 3


def test_subset_of_queries_and_no_grad():
    logits, boxes, targets = random_problem(2, 8, 3, [2, 3], seed=3)
    logits.requires_grad_(True)
    matcher = HungarianMatcher()
    full = matcher(logits[:, 4:], boxes[:, 4:], targets)
    for i, (src, tgt) in enumerate(full):
        assert not src.requires_grad
        assert src.max() < 4  # relative to the slice
        cost = reference_cost(logits[i, 4:].detach(), boxes[i, 4:], targets[i]["labels"], targets[i]["boxes"])
        assert cost[src, tgt].sum().item() == pytest.approx(brute_force(cost)[0], abs=1e-9)


def test_obvious_assignment_and_float32():
    # Each target sits exactly on one prediction, with a confident right class.
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.3, 0.1, 0.3], [0.4, 0.8, 0.2, 0.1]]])
    logits = torch.full((1, 4, 3), -5.0)
    logits[0, 1, 2] = logits[0, 3, 0] = 5.0
    targets = [{"labels": torch.tensor([0, 2]), "boxes": boxes[0, [3, 1]].clone()}]
    (src, tgt), = HungarianMatcher()(logits, boxes, targets)
    assert src.tolist() == [1, 3] and tgt.tolist() == [1, 0]


def test_invalid_inputs_raise():
    logits, boxes, targets = random_problem(1, 4, 3, [2], seed=4)
    matcher = HungarianMatcher()
    with pytest.raises(ValueError, match="labels must lie in"):
        matcher(logits, boxes, [{"labels": torch.tensor([0, 3]), "boxes": targets[0]["boxes"]}])
    bad = logits.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        matcher(bad, boxes, targets)
    bad = boxes.clone()
    bad[0, 0, 2] = -0.1  # negative width
    with pytest.raises(ValueError, match="degenerate"):
        matcher(logits, bad, targets)
    with pytest.raises(ValueError, match="target dicts"):
        matcher(logits, boxes, targets * 2)
    with pytest.raises(ValueError, match="boxes"):
        matcher(logits, boxes, [{"labels": targets[0]["labels"], "boxes": targets[0]["boxes"][:1]}])
    with pytest.raises(ValueError, match="at least one non-zero"):
        HungarianMatcher(0, 0, 0)
