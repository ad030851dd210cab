"""Sine position embeddings and the MLP head."""

import math

import pytest
import torch

from clock_distill.modeling.layers import MLP, PositionEmbeddingSine, get_sine_pos_embed


def expected_channels(coord, num_pos_feats, temperature=10000):
    """Embedding of one scalar phase ``coord`` by the textbook formula."""
    out = []
    for i in range(num_pos_feats):
        freq = temperature ** (2 * (i // 2) / num_pos_feats)
        out.append(math.sin(coord / freq) if i % 2 == 0 else math.cos(coord / freq))
    return torch.tensor(out)


@pytest.mark.parametrize("offset", [0.0, -0.5])
def test_position_embedding_sine_formula(offset):
    F = 8
    pe = PositionEmbeddingSine(num_pos_feats=F, offset=offset)
    mask = torch.zeros(1, 3, 4, dtype=torch.bool)
    pos = pe(mask)
    assert pos.shape == (1, 2 * F, 3, 4) and pos.dtype == torch.float32
    for i in range(3):
        for j in range(4):
            y = (i + 1 + offset) / (3 + 1e-6) * 2 * math.pi
            x = (j + 1 + offset) / (4 + 1e-6) * 2 * math.pi
            assert torch.allclose(pos[0, :F, i, j], expected_channels(y, F), atol=1e-5)
            assert torch.allclose(pos[0, F:, i, j], expected_channels(x, F), atol=1e-5)


def test_position_embedding_sine_padding_gives_each_image_its_own_extent():
    pe = PositionEmbeddingSine(num_pos_feats=16, offset=-0.5)
    mask = torch.zeros(2, 6, 7, dtype=torch.bool)
    mask[1, 4:, :] = True
    mask[1, :, 5:] = True  # image 1 is 4 x 5 inside the 6 x 7 batch
    pos = pe(mask)
    alone = pe(torch.zeros(1, 4, 5, dtype=torch.bool))
    assert torch.allclose(pos[1, :, :4, :5], alone[0], atol=1e-6)
    assert torch.allclose(pos[0], pe(torch.zeros(1, 6, 7, dtype=torch.bool))[0])


def test_position_embedding_sine_unnormalized_and_errors():
    pe = PositionEmbeddingSine(num_pos_feats=4, normalize=False)
    pos = pe(torch.zeros(1, 2, 3, dtype=torch.bool))
    assert torch.allclose(pos[0, :4, 1, 2], expected_channels(2.0, 4))  # row count 2
    assert torch.allclose(pos[0, 4:, 1, 2], expected_channels(3.0, 4))  # column count 3
    with pytest.raises(ValueError, match="bool"):
        pe(torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="even"):
        PositionEmbeddingSine(num_pos_feats=5)


def test_get_sine_pos_embed_order_and_values():
    F = 6
    box = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    emb = get_sine_pos_embed(box, num_pos_feats=F)
    assert emb.shape == (1, 4 * F) and emb.dtype == torch.float64
    blocks = emb.view(4, F)
    # exchange_xy: (y, x, w, h)
    for k, coord in enumerate([0.2, 0.1, 0.3, 0.4]):
        assert torch.allclose(blocks[k], expected_channels(coord * 2 * math.pi, F).double())
    plain = get_sine_pos_embed(box, num_pos_feats=F, exchange_xy=False).view(4, F)
    assert torch.allclose(plain[0], blocks[1]) and torch.allclose(plain[1], blocks[0])
    # Leading dimensions are kept; halves are computed in float32.
    pts = torch.rand(2, 3, 2).half()
    out = get_sine_pos_embed(pts)
    assert out.shape == (2, 3, 256) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="even"):
        get_sine_pos_embed(box, num_pos_feats=5)


def test_mlp():
    mlp = MLP(4, 16, 3, num_layers=3)
    assert [(l.in_features, l.out_features) for l in mlp.layers] == [(4, 16), (16, 16), (16, 3)]
    x = torch.randn(2, 5, 4)
    h = torch.relu(mlp.layers[1](torch.relu(mlp.layers[0](x))))
    assert torch.allclose(mlp(x), mlp.layers[2](h))
    single = MLP(4, 16, 3, num_layers=1)
    assert torch.allclose(single(x), single.layers[0](x))
    with pytest.raises(ValueError, match="num_layers"):
        MLP(4, 16, 3, num_layers=0)
