"""DETRTrainer: a NaN or inf loss stops training before it reaches the weights, with the term
and the iteration named."""

import pytest
import torch

from clock_distill.engine import DETRTrainer


class Toy(torch.nn.Module):
    def __init__(self, bad_at):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.bad_at, self.calls = bad_at, 0

    def forward(self, batch):
        self.calls += 1
        bbox = (self.w * batch).sum()
        if self.calls - 1 == self.bad_at:
            bbox = bbox * float("nan")
        return {"loss_class": self.w.pow(2).sum(), "loss_bbox": bbox, "loss_giou": self.w.sum() * 0 + 1}


def test_nan_loss_names_the_term_and_iteration_and_leaves_the_weights():
    model = Toy(bad_at=3)
    data = iter([torch.ones(3)] * 10)
    trainer = DETRTrainer(model, data, torch.optim.SGD(model.parameters(), lr=0.1), clip_grad_params={"max_norm": 1.0})
    snapshots = []  # the weights before each step
    from detectron2.engine import HookBase

    hook = type("SnapHook", (HookBase,), {"before_step": lambda self: snapshots.append(model.w.detach().clone())})()
    trainer.register_hooks([hook])
    with pytest.raises(FloatingPointError) as e:
        trainer.train(0, 10)
    msg = str(e.value)
    assert msg.startswith("loss became NaN or inf at iteration 3: loss_bbox=nan.")
    assert "loss_class" not in msg and "--resume" in msg
    assert len(snapshots) == 4 and not torch.equal(snapshots[0], snapshots[3])  # it did train before
    assert torch.equal(model.w.detach(), snapshots[3])  # the bad step changed nothing
