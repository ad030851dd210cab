"""SetCriterion and sigmoid_focal_loss: values, normalization, keys, gradients, edge cases."""

import os
import subprocess
import sys
import tempfile

import pytest
import torch
import torchvision

import clock_distill
from clock_distill.modeling.criterion import SetCriterion, sigmoid_focal_loss
from clock_distill.modeling.matcher import HungarianMatcher

WEIGHTS = {"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}


def make_criterion(num_classes=3, **kw):
    return SetCriterion(num_classes, HungarianMatcher(), WEIGHTS, **kw)


def random_outputs(B=2, Q=6, C=3, seed=0, num_aux=0, enc=False):
    g = torch.Generator().manual_seed(seed)

    def one(c=C):
        return {
            "pred_logits": torch.randn(B, Q, c, generator=g, dtype=torch.float64).requires_grad_(True),
            "pred_boxes": torch.cat(
                [torch.rand(B, Q, 2, generator=g, dtype=torch.float64) * 0.6 + 0.2,
                 torch.rand(B, Q, 2, generator=g, dtype=torch.float64) * 0.3 + 0.05], -1
            ).requires_grad_(True),
        }

    out = one()
    if num_aux:
        out["aux_outputs"] = [one() for _ in range(num_aux)]
    if enc:
        out["enc_outputs"] = one()
    return out


def random_targets(sizes, C=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "labels": torch.randint(0, C, (n,), generator=g),
            "boxes": torch.cat([torch.rand(n, 2, generator=g, dtype=torch.float64) * 0.6 + 0.2,
                                torch.rand(n, 2, generator=g, dtype=torch.float64) * 0.3 + 0.05], -1),
        }
        for n in sizes
    ]


def naive_focal(logits, onehot, alpha=0.25, gamma=2.0):
    """Elementwise focal loss written from its definition."""
    p = logits.sigmoid()
    pos = -alpha * (1 - p) ** gamma * torch.log(p)
    neg = -(1 - alpha) * p**gamma * torch.log(1 - p)
    return torch.where(onehot > 0, pos, neg)


def test_sigmoid_focal_loss_matches_definition_and_torchvision():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    onehot = (torch.rand(2, 5, 4, generator=g) > 0.7).double()
    got = sigmoid_focal_loss(logits, onehot, num_boxes=3.0)
    assert torch.allclose(got, naive_focal(logits, onehot).sum() / 5 / 3.0)
    tv = torchvision.ops.sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="none")
    assert torch.allclose(got, tv.mean(1).sum() / 3.0)
    no_alpha = sigmoid_focal_loss(logits, onehot, 1.0, alpha=-1, gamma=0.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    assert torch.allclose(no_alpha, bce.mean(1).sum())
    with pytest.raises(ValueError, match=r"\(B, Q, C\)"):
        sigmoid_focal_loss(logits[0], onehot[0], 1.0)


def test_loss_values_against_explicit_computation():
    crit = make_criterion()
    outputs = random_outputs()
    targets = random_targets([2, 3])
    indices = crit.matcher(outputs["pred_logits"], outputs["pred_boxes"], targets)
    losses = crit(outputs, targets)
    assert set(losses) == {"loss_class", "loss_bbox", "loss_giou"}

    num_boxes = 5.0
    onehot = torch.zeros_like(outputs["pred_logits"])
    l1 = giou_loss = 0.0
    for b, (src, tgt) in enumerate(indices):
        for q, t in zip(src.tolist(), tgt.tolist()):
            onehot[b, q, targets[b]["labels"][t]] = 1.0
            pred, gt = outputs["pred_boxes"][b, q], targets[b]["boxes"][t]
            l1 = l1 + (pred - gt).abs().sum()
            xyxy = torchvision.ops.box_convert(torch.stack([pred, gt]), "cxcywh", "xyxy")
            giou_loss = giou_loss + 1 - torchvision.ops.generalized_box_iou(xyxy[:1], xyxy[1:])[0, 0]
    cls = naive_focal(outputs["pred_logits"], onehot).sum() / num_boxes
    assert torch.allclose(losses["loss_class"], 2.0 * cls)
    assert torch.allclose(losses["loss_bbox"], 5.0 * l1 / num_boxes)
    assert torch.allclose(losses["loss_giou"], 2.0 * giou_loss / num_boxes)


def test_perfect_prediction_gives_zero_box_losses():
    targets = random_targets([3, 1], seed=2)
    outputs = random_outputs(Q=5, seed=3)
    with torch.no_grad():
        logits = torch.full_like(outputs["pred_logits"], -20.0)
        boxes = outputs["pred_boxes"].clone()
        for b, t in enumerate(targets):
            n = len(t["labels"])
            boxes[b, :n] = t["boxes"]
            logits[b, torch.arange(n), t["labels"]] = 20.0
    losses = make_criterion()({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert losses["loss_bbox"].item() == pytest.approx(0.0, abs=1e-12)
    assert losses["loss_giou"].item() == pytest.approx(0.0, abs=1e-12)
    assert losses["loss_class"].item() < 1e-8


def test_keys_weights_and_gradients_with_aux_and_enc():
    crit = make_criterion()
    outputs = random_outputs(num_aux=2, enc=True)
    targets = random_targets([2, 4])
    losses = crit(outputs, targets)
    expected = {f"{k}{s}" for k in WEIGHTS for s in ("", "_0", "_1", "_enc")}
    assert set(losses) == expected
    for v in losses.values():
        assert v.dim() == 0 and torch.isfinite(v)
    sum(losses.values()).backward()
    for part in [outputs, outputs["enc_outputs"], *outputs["aux_outputs"]]:
        assert part["pred_logits"].grad.abs().sum() > 0
        assert part["pred_boxes"].grad.abs().sum() > 0

    unit = SetCriterion(3, HungarianMatcher(), {k: 1.0 for k in WEIGHTS})(outputs, targets)
    for k, v in losses.items():
        assert torch.allclose(v, unit[k] * WEIGHTS[k.split("_")[0] + "_" + k.split("_")[1]])


def test_aux_layer_equals_main_loss_of_same_tensors():
    crit = make_criterion()
    outputs = random_outputs(seed=4)
    outputs["aux_outputs"] = [{"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]}]
    losses = crit(outputs, random_targets([3, 2]))
    for k in WEIGHTS:
        assert torch.allclose(losses[k], losses[k + "_0"])


def test_enc_outputs_use_binary_labels_by_default():
    targets = random_targets([3, 2], seed=5)
    outputs = random_outputs(seed=6, enc=True)
    enc = outputs["enc_outputs"]
    binary = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
    crit = make_criterion()
    losses = crit(outputs, targets)
    expected = crit.compute_losses(enc, binary, crit.matcher(enc["pred_logits"], enc["pred_boxes"], binary), 5.0)
    for k in WEIGHTS:
        assert torch.allclose(losses[k + "_enc"], expected[k])
    # The caller's targets are untouched.
    assert any(t["labels"].any() for t in targets)

    crit_real = make_criterion(enc_binary_labels=False)
    losses_real = crit_real(outputs, targets)
    expected_real = crit.compute_losses(enc, targets, crit.matcher(enc["pred_logits"], enc["pred_boxes"], targets), 5.0)
    assert torch.allclose(losses_real["loss_class_enc"], expected_real["loss_class"])
    assert not torch.allclose(losses_real["loss_class_enc"], losses["loss_class_enc"])

    # A one-channel objectness head is accepted for binary encoder targets.
    outputs["enc_outputs"] = {"pred_logits": enc["pred_logits"][..., :1], "pred_boxes": enc["pred_boxes"]}
    assert torch.isfinite(crit(outputs, targets)["loss_class_enc"])


def test_zero_target_images():
    crit = make_criterion()
    outputs = random_outputs(num_aux=1, enc=True)
    losses = crit(outputs, random_targets([0, 3]))
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    # The image without targets is still pushed towards "no object" everywhere.
    assert outputs["pred_logits"].grad[0].abs().sum() > 0
    assert outputs["pred_boxes"].grad[0].abs().sum() == 0

    outputs = random_outputs(seed=7)
    losses = crit(outputs, random_targets([0, 0]))
    assert losses["loss_bbox"].item() == 0 and losses["loss_giou"].item() == 0
    all_negative = naive_focal(outputs["pred_logits"], torch.zeros_like(outputs["pred_logits"])).sum()  # num_boxes 1
    assert torch.allclose(losses["loss_class"], 2.0 * all_negative)


def test_num_boxes_normalization_and_precomputed_indices():
    crit = make_criterion()
    outputs = random_outputs(seed=8)
    targets = random_targets([2, 2], seed=9)
    assert crit.get_num_boxes(targets, torch.device("cpu")) == 4.0
    assert crit.get_num_boxes(random_targets([0, 0]), torch.device("cpu")) == 1.0
    indices = crit.matcher(outputs["pred_logits"], outputs["pred_boxes"], targets)
    via_forward = crit(outputs, targets)
    direct = crit.compute_losses(outputs, targets, indices, 4.0)
    halved = crit.compute_losses(outputs, targets, indices, 8.0, suffix="_dn")
    for k in WEIGHTS:
        assert torch.allclose(via_forward[k], direct[k])
        assert torch.allclose(halved[k + "_dn"], direct[k] / 2)
    raw = crit.loss_boxes(outputs, targets, indices, 4.0)
    assert torch.allclose(raw["loss_bbox"] * 5.0, direct["loss_bbox"])
    assert set(crit.loss_labels(outputs, targets, indices, 4.0)) == {"loss_class"}


def test_construction_and_input_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        SetCriterion(3, HungarianMatcher(), WEIGHTS, losses=("class", "masks"))
    with pytest.raises(ValueError, match="loss_giou"):
        SetCriterion(3, HungarianMatcher(), {"loss_class": 1.0, "loss_bbox": 1.0})
    only_class = SetCriterion(3, HungarianMatcher(), {"loss_class": 1.0}, losses=("class",))
    assert set(only_class(random_outputs(), random_targets([1, 1]))) == {"loss_class"}
    crit = make_criterion(num_classes=4)
    with pytest.raises(ValueError, match="num_classes=4"):
        crit(random_outputs(), random_targets([1, 1]))
    with pytest.raises(KeyError, match="pred_boxes"):
        make_criterion()({"pred_logits": torch.zeros(2, 6, 3)}, random_targets([1, 1]))


_DDP_SCRIPT = """
import sys, torch
from clock_distill.modeling.criterion import SetCriterion
rank, init_file = int(sys.argv[1]), sys.argv[2]
torch.distributed.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=2)
n = [5, 1][rank]  # the average over the two ranks is 3
targets = [{"labels": torch.zeros(n, dtype=torch.int64), "boxes": torch.zeros(n, 4)}]
print(SetCriterion.get_num_boxes(targets, torch.device("cpu")))
torch.distributed.destroy_process_group()
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_num_boxes_is_averaged_over_ranks():
    # Two real gloo processes; plain subprocesses import far less than mp.spawn
    # re-importing this test module.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(clock_distill.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        procs = [
            subprocess.Popen([sys.executable, "-c", _DDP_SCRIPT, str(r), init_file], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for r in range(2)
        ]
        results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert float(out.strip().splitlines()[-1]) == 3.0
