"""Box conversions, IoU / GIoU (against hand values and torchvision) and inverse_sigmoid."""

import pytest
import torch
import torchvision

from clock_distill.modeling.layers import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    elementwise_box_iou,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    inverse_sigmoid,
)


def random_xyxy(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64)
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 0.5 + 0.01
    return torch.cat([xy, xy + wh], dim=1)


def test_conversions_known_values_and_roundtrip():
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.0, 0.2]])
    xyxy = torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.1, 0.8, 0.1, 1.0]])
    assert torch.allclose(box_cxcywh_to_xyxy(cxcywh), xyxy)
    assert torch.allclose(box_xyxy_to_cxcywh(xyxy), cxcywh)
    boxes = random_xyxy(20, 0).view(4, 5, 4)  # any leading shape
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes)), boxes)
    with pytest.raises(ValueError, match="last dimension of 4"):
        box_cxcywh_to_xyxy(torch.zeros(3, 5))


def test_area_and_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [3.0, 3.0, 4.0, 4.0], [0.5, 0.5, 1.5, 1.5]])
    assert torch.allclose(box_area(b), torch.tensor([4.0, 4.0, 1.0, 1.0]))
    iou, union = box_iou(a, b)
    assert iou.shape == (1, 4)
    assert torch.allclose(iou, torch.tensor([[1.0, 2.0 / 6.0, 0.0, 0.25]]))
    assert torch.allclose(union, torch.tensor([[4.0, 6.0, 5.0, 4.0]]))
    # Disjoint [0,2]^2 and [3,4]^2: enclosing 16, union 5, GIoU = 0 - 11/16.
    giou = generalized_box_iou(a, b)
    assert torch.allclose(giou, torch.tensor([[1.0, 2.0 / 6.0, -11.0 / 16.0, 0.25]]))


def test_match_torchvision_on_random_boxes():
    a, b = random_xyxy(7, 1), random_xyxy(5, 2)
    iou, _ = box_iou(a, b)
    assert torch.allclose(iou, torchvision.ops.box_iou(a, b))
    assert torch.allclose(generalized_box_iou(a, b), torchvision.ops.generalized_box_iou(a, b))


def test_elementwise_equals_diagonal():
    a, b = random_xyxy(9, 3), random_xyxy(9, 4)
    iou, union = elementwise_box_iou(a, b)
    full_iou, full_union = box_iou(a, b)
    assert torch.allclose(iou, full_iou.diag()) and torch.allclose(union, full_union.diag())
    assert torch.allclose(elementwise_generalized_box_iou(a, b), generalized_box_iou(a, b).diag())
    with pytest.raises(ValueError, match="equal shape"):
        elementwise_box_iou(a, b[:3])


def test_giou_bounds_and_gradients():
    a = random_xyxy(6, 5).requires_grad_(True)
    b = random_xyxy(6, 6)
    giou = generalized_box_iou(a, b)
    assert torch.all(giou <= 1) and torch.all(giou >= -1)
    assert torch.allclose(generalized_box_iou(b, b).diag(), torch.ones(6, dtype=torch.float64))
    (1 - elementwise_generalized_box_iou(a, b)).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_degenerate_boxes_raise():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    bad = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 0.4, 1.0]])
    with pytest.raises(ValueError, match=r"boxes2 has 1 degenerate box.*0.5"):
        generalized_box_iou(good, bad)
    with pytest.raises(ValueError, match="boxes1 has 1 degenerate"):
        elementwise_generalized_box_iou(bad, torch.cat([good, good]))
    with pytest.raises(ValueError, match="degenerate"):
        generalized_box_iou(torch.tensor([[0.0, float("nan"), 1.0, 1.0]]), good)
    # A zero-width box is allowed (x2 == x1).
    assert generalized_box_iou(torch.tensor([[0.5, 0.0, 0.5, 1.0]]), good).shape == (1, 1)


def test_empty_inputs():
    empty = torch.zeros(0, 4)
    b = random_xyxy(3, 7).float()
    assert box_iou(empty, b)[0].shape == (0, 3)
    assert generalized_box_iou(b, empty).shape == (3, 0)
    assert elementwise_generalized_box_iou(empty, empty).shape == (0,)


def test_inverse_sigmoid():
    x = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    assert torch.allclose(inverse_sigmoid(x).sigmoid(), x)
    ends = inverse_sigmoid(torch.tensor([0.0, 1.0, -0.5, 1.5]), eps=1e-5)
    expected = torch.log(torch.tensor(1e-5))
    assert torch.allclose(ends, torch.stack([expected, -expected, expected, -expected]))
    assert torch.isfinite(ends).all()
