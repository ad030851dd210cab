"""Multi-scale deformable attention: both kernels (grid_sample, and the fused C++ kernel for
the CPU, built here on first use) against a naive per-point bilinear loop, and the module's
wiring and initialization."""

import math

import pytest
import torch

from clock_distill.modeling.layers import MultiScaleDeformableAttention, multi_scale_deformable_attention

# Level sizes are chosen so that every hand-picked location below maps to a
# pixel coordinate that is exact in binary: there both implementations sit on
# the same side of a bilinear kink and their gradients must agree exactly.
SHAPES = [(4, 8), (2, 4), (3, 5)]


def naive_msda(value, shapes, locations, weights):
    """Per-point bilinear sampling with grid_sample's rules (align_corners=False:
    pixel coordinate = loc * size - 0.5; corners outside the map read zero)."""
    B, N, M, D = value.shape
    _, Q, _, L, P, _ = locations.shape
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    out = []
    for b in range(B):
        per_query = []
        for q in range(Q):
            per_head = []
            for m in range(M):
                acc = value.new_zeros(D)
                for lvl, (h, w) in enumerate(shapes):
                    for p in range(P):
                        # The same float expression as ATen's unnormalize, fed 2*loc-1.
                        gx = 2 * locations[b, q, m, lvl, p, 0] - 1
                        gy = 2 * locations[b, q, m, lvl, p, 1] - 1
                        ix = ((gx + 1) * w - 1) / 2
                        iy = ((gy + 1) * h - 1) / 2
                        x0 = math.floor(ix.item())
                        y0 = math.floor(iy.item())
                        fx = ix - x0
                        fy = iy - y0
                        corners = [
                            (y0, x0, (1 - fy) * (1 - fx)),
                            (y0, x0 + 1, (1 - fy) * fx),
                            (y0 + 1, x0, fy * (1 - fx)),
                            (y0 + 1, x0 + 1, fy * fx),
                        ]
                        for yy, xx, cw in corners:
                            if 0 <= yy < h and 0 <= xx < w:
                                v = value[b, starts[lvl] + yy * w + xx, m]
                                acc = acc + weights[b, q, m, lvl, p] * cw * v
                per_head.append(acc)
            per_query.append(torch.cat(per_head))
        out.append(torch.stack(per_query))
    return torch.stack(out)


def make_inputs(seed=0, B=2, Q=3, M=2, D=3, P=3):
    g = torch.Generator().manual_seed(seed)
    L = len(SHAPES)
    N = sum(h * w for h, w in SHAPES)
    value = torch.randn(B, N, M, D, generator=g, dtype=torch.float64)
    # Random locations cover [-0.2, 1.2], i.e. inside, on and past the borders.
    loc = torch.rand(B, Q, M, L, P, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    # Hand-picked points on borders, pixel centres and past the edges, per level.
    special = {
        0: [(0.0, 0.0), (1.0, 1.0), (0.5 / 8, 0.5 / 4), (-0.5 / 8, 1.0 + 0.5 / 4), (1.25, -0.25), (0.375, 0.625)],
        1: [(0.0, 1.0), (1.0, 0.0), (0.125, 0.25), (-0.125, 0.5), (1.125, 0.75), (0.5, 0.5)],
        2: [(0.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0.0, 0.5), (1.0, 0.5), (0.5, 1.0)],
    }
    for lvl, pts in special.items():
        flat = loc[:, :, :, lvl].reshape(-1, 2)
        for k, (x, y) in enumerate(pts):
            flat[k * 3] = torch.tensor([x, y], dtype=torch.float64)
        loc[:, :, :, lvl] = flat.view(B, Q, M, P, 2)
    weights = torch.rand(B, Q, M, L, P, generator=g, dtype=torch.float64)
    return value, loc, weights


KERNELS = ["pytorch", "cpu"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_naive_loop_forward_and_gradients(kernel):
    value, loc, weights = make_inputs()
    shapes_t = torch.tensor(SHAPES, dtype=torch.long)
    inputs = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    ref_inputs = [t.clone().requires_grad_(True) for t in (value, loc, weights)]

    out = multi_scale_deformable_attention(inputs[0], shapes_t, inputs[1], inputs[2], kernel)
    ref = naive_msda(ref_inputs[0], SHAPES, ref_inputs[1], ref_inputs[2])
    assert out.shape == (2, 3, 2 * 3)
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)

    grad_out = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, inputs, grad_out)
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad_out)
    for name, g, rg in zip(("value", "sampling_locations", "attention_weights"), grads, ref_grads):
        assert torch.allclose(g, rg, atol=1e-10, rtol=0), name
    # Points fully outside the map read zero and get no location gradient.
    # Level 0 is 4 x 8: half a cell is 1/16 in x and 1/8 in y.
    loc0 = loc[:, :, :, 0]
    half = torch.tensor([1 / 16, 1 / 8], dtype=torch.float64)
    far_l0 = ((loc0 < -half) | (loc0 > 1 + half)).any(-1)
    assert far_l0.any()
    assert torch.all(grads[1][:, :, :, 0][far_l0] == 0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradcheck_generic_points(kernel):
    g = torch.Generator().manual_seed(3)
    shapes = [(3, 4), (2, 2)]
    value = torch.randn(1, 16, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
    loc = (torch.rand(1, 2, 2, 2, 2, 2, dtype=torch.float64, generator=g) * 1.2 - 0.1).requires_grad_(True)
    w = torch.rand(1, 2, 2, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, l, a: multi_scale_deformable_attention(v, shapes, l, a, kernel), (value, loc, w)
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_pixel_centres_read_exact_values(kernel):
    # One level, one head: sampling at the centre of cell (i, j) returns that cell.
    h, w = 3, 5
    value = torch.arange(h * w, dtype=torch.float64).view(1, h * w, 1, 1)
    ii, jj = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    loc = torch.stack([(jj + 0.5) / w, (ii + 0.5) / h], -1).reshape(1, h * w, 1, 1, 1, 2)
    out = multi_scale_deformable_attention(value, [(h, w)], loc, torch.ones(1, h * w, 1, 1, 1, dtype=torch.float64), kernel)
    assert torch.allclose(out.view(-1), value.view(-1))


def test_cpu_kernel_matches_pytorch_in_float32_at_encoder_shapes():
    # 8 heads of 16 channels over 3 levels of a 192x640 image, every token a query, as the
    # synthetic Deformable DETR's encoder; points spread past the borders, as trained offsets do.
    g = torch.Generator().manual_seed(0)
    shapes = [(24, 80), (12, 40), (6, 20)]
    N = sum(h * w for h, w in shapes)
    value = torch.randn(2, N, 8, 16, generator=g, requires_grad=True)
    loc = (torch.rand(2, N, 8, 3, 4, 2, generator=g) * 1.2 - 0.1).requires_grad_(True)
    w = torch.rand(2, N, 8, 3, 4, generator=g).requires_grad_(True)
    outs, grads = [], []
    for kernel in KERNELS:
        out = multi_scale_deformable_attention(value, shapes, loc, w, kernel)
        outs.append(out)
        grads.append(torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(), (value, loc, w)))
    assert torch.allclose(outs[0], outs[1], atol=1e-4, rtol=1e-5)
    for name, a, b in zip(("value", "sampling_locations", "attention_weights"), *grads):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-4), name


def test_cpu_kernel_refuses_what_it_cannot_run():
    value, loc, weights = make_inputs()
    with pytest.raises(ValueError, match="kernel 'cpu' runs on the CPU, but value is on meta"):
        multi_scale_deformable_attention(value.to("meta"), SHAPES, loc.to("meta"), weights.to("meta"), "cpu")
    with pytest.raises(ValueError, match="float32 or float64, got torch.bfloat16"):
        multi_scale_deformable_attention(value.bfloat16(), SHAPES, loc.bfloat16(), weights.bfloat16(), "cpu")
    # Locations that are NaN or far beyond any float-to-int cast read zero, as outside points do.
    far = loc.clone()
    far[0, 0, 0, 0, 0] = torch.tensor([float("nan"), 0.5])
    far[0, 0, 0, 1, 0] = torch.tensor([1e30, -1e30])
    out = multi_scale_deformable_attention(value, SHAPES, far, weights, "cpu")
    near = loc.clone()
    near[0, 0, 0, 0, 0] = near[0, 0, 0, 1, 0] = torch.tensor([5.0, 5.0])
    assert torch.equal(out, multi_scale_deformable_attention(value, SHAPES, near, weights, "cpu"))
    with pytest.raises(ValueError, match="unknown deformable-attention kernel 'cuda'"):
        multi_scale_deformable_attention(value, SHAPES, loc, weights, "cuda")


def test_shape_errors_name_the_shapes():
    value, loc, weights = make_inputs()
    with pytest.raises(ValueError, match=r"sum\(H\*W\).*N=52"):
        multi_scale_deformable_attention(value[:, :52], SHAPES, loc, weights)
    with pytest.raises(ValueError, match="attention_weights"):
        multi_scale_deformable_attention(value, SHAPES, loc, weights[..., :2])
    with pytest.raises(ValueError, match="sampling_locations"):
        multi_scale_deformable_attention(value[:, :40], SHAPES[:2], loc, weights)


def _module_inputs(ref_dim, B=2, Q=5, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[4, 6], [2, 3]])
    N = 24 + 6
    return dict(
        query=torch.randn(B, Q, D, generator=g),
        reference_points=torch.rand(B, Q, 2, ref_dim, generator=g),
        value=torch.randn(B, N, D, generator=g),
        spatial_shapes=shapes,
        level_start_index=torch.tensor([0, 24]),
    )


@pytest.mark.parametrize("ref_dim", [2, 4])
def test_module_shapes_and_gradients(ref_dim):
    attn = MultiScaleDeformableAttention(embed_dim=16, num_heads=4, num_levels=2, num_points=3)
    kw = _module_inputs(ref_dim)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[1, 20:24] = True
    kw["query"].requires_grad_(True)
    kw["value"].requires_grad_(True)
    out = attn(**kw, key_padding_mask=mask, query_pos=torch.randn(2, 5, 16))
    assert out.shape == (2, 5, 16)
    out.sum().backward()
    assert kw["value"].grad.abs().sum() > 0
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0


def test_module_query_pos_and_padding_mask():
    attn = MultiScaleDeformableAttention(embed_dim=16, num_heads=4, num_levels=2, num_points=3).double()
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.1)
    kw = {k: (v.double() if v.is_floating_point() else v) for k, v in _module_inputs(2).items()}
    pos = torch.randn_like(kw["query"])
    a = attn(**kw, query_pos=pos)
    b = attn(**{**kw, "query": kw["query"] + pos})
    assert torch.allclose(a, b)

    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[:, 18:24] = True
    mask[:, 28:] = True
    changed = kw["value"].clone()
    changed[mask] = 1e3 * torch.randn_like(changed[mask])
    out1 = attn(**kw, key_padding_mask=mask)
    out2 = attn(**{**kw, "value": changed}, key_padding_mask=mask)
    assert torch.allclose(out1, out2)


def _identity_module(num_points=2):
    """One head, value/output projections = identity, all points at offset (dx, dy)
    set through the bias, attention uniform."""
    attn = MultiScaleDeformableAttention(embed_dim=1, num_heads=1, num_levels=2, num_points=num_points).double()
    with torch.no_grad():
        attn.value_proj.weight.fill_(1.0)
        attn.output_proj.weight.fill_(1.0)
    return attn


def test_module_2d_offsets_are_in_cells_of_each_level():
    attn = _identity_module()
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, 0.0]).repeat(2 * 2))  # +1 cell in x
    shapes = torch.tensor([[2, 4], [1, 2]])
    v0 = torch.arange(8, dtype=torch.float64)  # level 0, rows [0..3], [4..7]
    v1 = torch.tensor([100.0, 200.0], dtype=torch.float64)
    value = torch.cat([v0, v1]).view(1, 10, 1)
    # Reference at the centre of level-0 cell (row 0, col 0) = (0.125, 0.25) and of level-1 cell 0 = (0.25, 0.5).
    ref = torch.tensor([[0.125, 0.25], [0.25, 0.5]], dtype=torch.float64).view(1, 1, 2, 2)
    out = attn(torch.zeros(1, 1, 1, dtype=torch.float64), ref, value, shapes, torch.tensor([0, 8]))
    # One cell right: level 0 reads v0[1] = 1, level 1 reads 200; uniform weights over 2 levels x 2 points.
    assert torch.allclose(out.view(()), torch.tensor((1.0 + 200.0) / 2, dtype=torch.float64))


def test_module_4d_offsets_scale_with_box_size():
    P = 2
    attn = _identity_module(num_points=P)
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([float(P), 0.0]).repeat(2 * P))  # offset / P * w/2 = w/2
    shapes = torch.tensor([[1, 4], [1, 4]])
    value = torch.arange(8, dtype=torch.float64).view(1, 8, 1)
    # Box centred on cell 0 (x=0.125) with w=0.5: the right edge x=0.375 is the centre of cell 1.
    ref = torch.tensor([0.125, 0.5, 0.5, 1.0], dtype=torch.float64).view(1, 1, 1, 4).expand(1, 1, 2, 4)
    out = attn(torch.zeros(1, 1, 1, dtype=torch.float64), ref, value, shapes, torch.tensor([0, 4]))
    assert torch.allclose(out.view(()), torch.tensor((1.0 + 5.0) / 2, dtype=torch.float64))


def test_module_init_values():
    M, L, P = 8, 3, 4
    attn = MultiScaleDeformableAttention(embed_dim=32, num_heads=M, num_levels=L, num_points=P)
    assert torch.all(attn.sampling_offsets.weight == 0)
    bias = attn.sampling_offsets.bias.detach().view(M, L, P, 2)
    directions = torch.tensor([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]]).float()
    for p in range(P):
        for lvl in range(L):
            assert torch.allclose(bias[:, lvl, p], directions * (p + 1), atol=1e-6)
    assert torch.all(attn.attention_weights.weight == 0) and torch.all(attn.attention_weights.bias == 0)
    for lin in (attn.value_proj, attn.output_proj):
        bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
        assert torch.all(lin.bias == 0)
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.5 * bound


def test_module_value_proj_ratio():
    attn = MultiScaleDeformableAttention(embed_dim=16, num_heads=4, num_levels=2, num_points=3, value_proj_ratio=0.5)
    assert attn.value_proj.out_features == 8 and attn.output_proj.in_features == 8
    assert attn(**_module_inputs(2)).shape == (2, 5, 16)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MultiScaleDeformableAttention(embed_dim=16, num_heads=4, value_proj_ratio=0.4)


def test_module_input_errors():
    attn = MultiScaleDeformableAttention(embed_dim=16, num_heads=4, num_levels=2, num_points=3)
    kw = _module_inputs(2)
    with pytest.raises(ValueError, match=r"sum\(H\*W\)"):
        attn(**{**kw, "value": kw["value"][:, :29]})
    with pytest.raises(ValueError, match="level_start_index"):
        attn(**{**kw, "level_start_index": torch.tensor([0, 23])})
    with pytest.raises(ValueError, match="num_levels=2"):
        attn(**{**kw, "spatial_shapes": torch.tensor([[5, 6]]), "level_start_index": torch.tensor([0])})
    with pytest.raises(ValueError, match="reference_points"):
        attn(**{**kw, "reference_points": torch.rand(2, 5, 2, 3)})
    with pytest.raises(ValueError, match="key_padding_mask"):
        attn(**kw, key_padding_mask=torch.zeros(2, 31, dtype=torch.bool))


def _detection_inputs():
    g = torch.Generator().manual_seed(0)
    return [
        {"image": torch.randint(0, 256, (3, 64, 96), generator=g, dtype=torch.uint8),
         "target": {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.15, 0.25]])}},
        {"image": torch.randint(0, 256, (3, 48, 80), generator=g, dtype=torch.uint8),
         "target": {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.3]])}},
    ]


@pytest.mark.parametrize("family", ["deformable_detr", "dino"])
def test_model_msda_kernel_switches_every_layer_and_keeps_the_losses(family):
    from helpers import tiny_deformable_detr, tiny_dino

    build = {"deformable_detr": lambda **kw: tiny_deformable_detr(as_two_stage=True, with_box_refine=True, **kw),
             "dino": tiny_dino}[family]
    torch.manual_seed(0)
    ref = build()
    fused = build(msda_kernel="cpu")
    fused.load_state_dict(ref.state_dict())
    layers = [m for m in fused.modules() if isinstance(m, MultiScaleDeformableAttention)]
    assert len(layers) == 3 and all(m.kernel == "cpu" for m in layers)  # 1 encoder + 2 decoder layers
    results = []
    for model in (ref, fused):
        model.train()
        torch.manual_seed(1)  # DINO's denoising noise
        losses = model(_detection_inputs())
        sum(losses.values()).backward()
        results.append((losses, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (l_ref, g_ref), (l_fused, g_fused) = results
    assert l_ref.keys() == l_fused.keys()
    for k in l_ref:
        assert torch.allclose(l_ref[k], l_fused[k], rtol=1e-4, atol=1e-5), k
    assert g_ref.keys() == g_fused.keys()
    for n in g_ref:
        assert torch.allclose(g_ref[n], g_fused[n], rtol=1e-3, atol=1e-4), n
    fused.set_msda_kernel("pytorch")
    assert all(m.kernel == "pytorch" for m in layers)


def test_model_msda_kernel_errors():
    from helpers import tiny_dab_detr, tiny_deformable_detr

    with pytest.raises(ValueError, match="msda_kernel='cpu', but DABDETR has no deformable attention"):
        tiny_dab_detr(msda_kernel="cpu")
    tiny_dab_detr(msda_kernel="pytorch")
    with pytest.raises(ValueError, match="unknown deformable-attention kernel 'fast'"):
        tiny_deformable_detr(msda_kernel="fast")
