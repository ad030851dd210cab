"""The parts of clock_distill.peers that need no transformers (benchmark-only dependency):
the inputs a peer gets and our backbone in the place of its conv encoder."""

import pytest
import torch

from helpers import one_thread_fixture, tiny_dab_detr

from clock_distill.peers import D2BackboneForHF, hf_inputs, train_side_by_side

one_thread = pytest.fixture(autouse=True)(one_thread_fixture)


def _batch():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.25, 0.6, 0.1, 0.2]])
    return [
        {"image": torch.rand(3, 64, 96) * 255, "target": {"labels": torch.tensor([0, 2]), "boxes": boxes}},
        {"image": torch.rand(3, 30, 60) * 255, "target": {"labels": torch.tensor([1]), "boxes": boxes[:1]}},
    ]


def test_peer_inputs_are_our_padded_images_with_a_valid_pixel_mask_and_our_targets():
    model = tiny_dab_detr()
    batch = _batch()
    inputs, sizes = hf_inputs(model, batch, with_labels=True)
    images = model.preprocess_image(batch)
    assert torch.equal(inputs["pixel_values"], images.tensor)
    assert list(sizes) == [(64, 96), (30, 60)]
    mask = inputs["pixel_mask"]
    assert mask.shape == (2, *images.tensor.shape[-2:])
    assert int(mask[0].sum()) == 64 * 96 and int(mask[1].sum()) == 30 * 60
    assert mask[1, :30, :60].all() and not mask[1, 30:].any() and not mask[1, :, 60:].any()
    assert torch.equal(inputs["labels"][0]["class_labels"], torch.tensor([0, 2]))
    assert torch.equal(inputs["labels"][1]["boxes"], batch[1]["target"]["boxes"])
    assert "labels" not in hf_inputs(model, batch, with_labels=False)[0]


def test_our_backbone_as_the_peers_conv_encoder_gives_features_with_downsampled_masks():
    model = tiny_dab_detr()
    enc = D2BackboneForHF(model.backbone, ("res5",))
    assert enc.intermediate_channel_sizes == [512]
    inputs, _ = hf_inputs(model, _batch(), with_labels=False)
    (feat, mask), = enc(inputs["pixel_values"], inputs["pixel_mask"])
    assert torch.equal(feat, model.backbone(inputs["pixel_values"])["res5"])
    assert mask.shape == (2, *feat.shape[-2:]) and mask.dtype == torch.bool
    assert mask[0].all() and not mask[1].all()  # the second image is padded on the right and bottom
    with pytest.raises(KeyError, match="res4"):
        D2BackboneForHF(model.backbone, ("res4",))


def test_side_by_side_refuses_an_unknown_family_or_side(tmp_path):
    with pytest.raises(KeyError, match="dino"):
        train_side_by_side(None, "dino", out_dir=tmp_path)
    with pytest.raises(ValueError, match="teacher"):
        train_side_by_side(None, "dab_detr", sides=("ours", "teacher"), out_dir=tmp_path)
