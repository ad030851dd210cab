#!/usr/bin/env python
"""Two pure-PyTorch alternatives to the deformable-attention function, measured against ours
(clock_distill.modeling.layers.ms_deform_attn.multi_scale_deformable_attention: one
grid_sample per level, then the weighted sum), forward + backward, side by side. Both were
dropped (README, "Speed and memory"); this script is the evidence.

- atlas: every level packed side by side into one zero-guttered map, one grid_sample call
  (locations clamped to the level and its gutter, so out-of-level taps read zero).
- bag: the four bilinear taps as indices into the flattened value, weighted and summed by
  F.embedding_bag(per_sample_weights=...) in one fused gather.

    .venv/bin/python benchmarks/experiments/msda_variants.py [THREADS]
"""
import sys

import torch
import torch.nn.functional as F

from clock_distill.evaluation.speed_bench import alternate
from clock_distill.modeling.layers.ms_deform_attn import multi_scale_deformable_attention as ref

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)


def msda_bag(value, shapes, loc, attn):
    B, N, M, D = value.shape
    _, Q, _, L, P, _ = loc.shape
    dev = value.device
    sh = torch.tensor(shapes, device=dev)  # (L,2) h,w
    H = sh[:, 0].to(loc.dtype); W = sh[:, 1].to(loc.dtype)
    starts = torch.cat([sh.new_zeros(1), (sh[:, 0] * sh[:, 1]).cumsum(0)[:-1]])
    x = loc[..., 0] * W[:, None] - 0.5   # (B,Q,M,L,P)
    y = loc[..., 1] * H[:, None] - 0.5
    x0 = x.floor(); y0 = y.floor()
    fx = x - x0; fy = y - y0
    x0i = x0.long(); y0i = y0.long()
    Wi = sh[:, 1][:, None]; Hi = sh[:, 0][:, None]
    idx, wts = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi = x0i + dx; yi = y0i + dy
            valid = (xi >= 0) & (xi < Wi) & (yi >= 0) & (yi < Hi)
            ii = starts[:, None] + yi.clamp(0) * Wi + xi.clamp(0)
            ii = torch.where(valid, ii, torch.zeros_like(ii))
            idx.append(ii); wts.append(wx * wy * valid.to(x.dtype))
    idx = torch.stack(idx, -1)  # (B,Q,M,L,P,4)
    wts = torch.stack(wts, -1) * attn[..., None]
    # table rows: (b, m, n) -> b*M*N + m*N + n
    base = (torch.arange(B, device=dev)[:, None] * M * N + torch.arange(M, device=dev)[None] * N)  # (B,M)
    idx = idx + base[:, None, :, None, None, None]
    table = value.permute(0, 2, 1, 3).reshape(B * M * N, D)
    out = F.embedding_bag(idx.reshape(-1, L * P * 4), table, per_sample_weights=wts.reshape(-1, L * P * 4), mode="sum")
    return out.view(B, Q, M * D)


def atlas_msda(value, shapes, loc, attn):
    B, N, M, D = value.shape
    _, Q, _, L, P, _ = loc.shape
    # levels side by side, a zero gutter column after each; rows beyond a level's height are zero
    Hmax = max(h for h, w in shapes)
    Wt = sum(w + 1 for h, w in shapes) + 1
    vt = value.permute(0, 2, 3, 1).reshape(B * M, D, N)  # one copy
    atlas = vt.new_zeros(B * M, D, Hmax + 1, Wt)
    x0 = 1; start = 0; offs = []
    for h, w in shapes:
        atlas[:, :, :h, x0:x0 + w] = vt[:, :, start:start + h * w].view(B * M, D, h, w)
        offs.append(x0); start += h * w; x0 += w + 1
    sh = torch.tensor(shapes, dtype=loc.dtype, device=loc.device)  # (L,2) h w
    off = torch.tensor(offs, dtype=loc.dtype, device=loc.device)
    px = (loc[..., 0] * sh[:, 1, None] - 0.5).clamp(min=-1.0).minimum(sh[:, 1, None]) + off[:, None]
    py = (loc[..., 1] * sh[:, 0, None] - 0.5).clamp(min=-1.0).minimum(sh[:, 0, None])
    # rows: y=-1 must read zero: shift by one zero row on top? use padding_mode zeros: y=-1 is outside -> zero. ok
    gx = (px + 0.5) * (2.0 / Wt) - 1
    gy = (py + 0.5) * (2.0 / (Hmax + 1)) - 1
    grid = torch.stack([gx, gy], -1)  # (B,Q,M,L,P,2)
    grid = grid.permute(0, 2, 1, 3, 4, 5).reshape(B * M, Q, L * P, 2)
    sampled = F.grid_sample(atlas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (BM, D, Q, LP)
    w = attn.permute(0, 2, 1, 3, 4).reshape(B * M, 1, Q, L * P)
    out = (sampled * w).sum(-1)
    return out.view(B, M * D, Q).transpose(1, 2).contiguous()


torch.manual_seed(0)
# The encoder levels of the synthetic Deformable DETR (strides 16/32/64 of 192x608) and of the
# same at strides 8/16/32 (192x640).
for shapes in ([(12, 38), (6, 19), (3, 10)], [(24, 80), (12, 40), (6, 20)]):
    N = sum(h * w for h, w in shapes)
    B, M, D, L, P = 2, 8, 16, 3, 4
    for Q in (N, 100):
        value = torch.randn(B, N, M, D, requires_grad=True)
        loc = (torch.rand(B, Q, M, L, P, 2) * 1.4 - 0.2).requires_grad_()
        attn = torch.rand(B, Q, M, L, P).softmax(-1).requires_grad_()
        fns = {"ours": ref, "atlas": atlas_msda, "bag": msda_bag}
        o_ref = ref(value, shapes, loc, attn)
        for name in ("atlas", "bag"):
            print(f"N={N} Q={Q} {name}: max |out - ours| {(fns[name](value, shapes, loc, attn) - o_ref).abs().max().item():.1e}")

        def timed(f):
            return lambda: f(value, shapes, loc, attn).sum().backward()

        r = alternate({k: timed(f) for k, f in fns.items()}, 9, 2)
        print(f"N={N} Q={Q} ms: " + ", ".join(f"{k} {v['median_s'] * 1000:.1f}" for k, v in r.items())
              + " | vs ours: " + ", ".join(f"{k} {r[k]['median_s'] / r['ours']['median_s']:.2f}x" for k in ("atlas", "bag")))
