#!/usr/bin/env python
"""Two ways to make the shared R18 backbone cheaper on CPU, measured against detectron2's
ResNet as we build it (NCHW, FrozenBN as its own op), side by side. The backbone is 57-62%
of a Deformable DETR train step on both sides (profile_deformable_detr_step.txt), so only a
faster backbone could bring the train step to 0.8x the peer's. Neither was adopted (README,
"Speed and memory"); this script is the evidence.

- channels_last: the input (hence every conv's activations) in NHWC, which oneDNN prefers.
- fold_bn: each FrozenBN folded into its conv (weight x scale, bias = shift), one op
  instead of conv + multiply + add; the gradient reaches the conv weight through the product.

Shapes: batch 2 of 192x640, R18 with the stem and res2 frozen (freeze_at=2), res3-res5 out.
Train = forward + backward of a sum of squares of the outputs; inference under no_grad.

    .venv/bin/python benchmarks/experiments/backbone_variants.py [THREADS]
"""
import sys
import types

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d

from clock_distill.evaluation.speed_bench import alternate
from clock_distill.modeling.backbone import build_resnet

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)


def _folded_forward(self, x):
    n = self.norm
    scale = n.weight * (n.running_var + n.eps).rsqrt()
    shift = n.bias - n.running_mean * scale
    x = F.conv2d(x, self.weight * scale.reshape(-1, 1, 1, 1), shift, self.stride, self.padding, self.dilation, self.groups)
    return self.activation(x) if self.activation is not None else x


def backbone(fold_bn: bool, state=None):
    torch.manual_seed(0)
    m = build_resnet(18, freeze_at=2)
    if state is None:
        for mod in m.modules():  # non-trivial statistics, so a wrong fold would show
            if isinstance(mod, FrozenBatchNorm2d):
                mod.running_mean.normal_(); mod.running_var.uniform_(0.5, 2); mod.weight.normal_(); mod.bias.normal_()
    else:
        m.load_state_dict(state)
    if fold_bn:
        for mod in m.modules():
            if isinstance(mod, Conv2d) and isinstance(mod.norm, FrozenBatchNorm2d) and mod.bias is None:
                mod.forward = types.MethodType(_folded_forward, mod)
    return m


def main():
    base = backbone(False)
    folded = backbone(True, base.state_dict())
    x = torch.randn(2, 3, 192, 640)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def train(m, inp):
        return lambda: sum(v.square().mean() for v in m(inp).values()).backward()

    def infer(m, inp):
        def f():
            with torch.no_grad():
                m(inp)
        return f

    with torch.no_grad():
        ref = base(x)
        for name, m, inp in (("channels_last", base, x_cl), ("fold_bn", folded, x), ("both", folded, x_cl)):
            out = m(inp)
            err = max(float((out[k] - ref[k]).abs().max() / ref[k].abs().max()) for k in ref)
            print(f"{name}: max relative |out - base| {err:.1e}")
    for mode, make in (("train", train), ("inference", infer)):
        res = alternate({"base": make(base, x), "channels_last": make(base, x_cl), "fold_bn": make(folded, x),
                         "both": make(folded, x_cl)}, repeats=10, warmup=2)
        b = res["base"]["median_s"]
        print(f"{mode} ms: " + ", ".join(f"{k} {1e3 * v['median_s']:.1f}" for k, v in res.items())
              + " | vs base: " + ", ".join(f"{k} {v['median_s'] / b:.2f}x" for k, v in res.items() if k != "base"))


if __name__ == "__main__":
    main()
