"""The inspection pictures (clock_distill.visualization.inspect, tools/visualize.py): every mode
on every family, on tiny models, writes a picture of the documented size."""

import numpy as np
import pytest
import torch
from detectron2.data import Metadata
from PIL import Image

from clock_distill.visualization.inspect import (
    Sample,
    draw_attention,
    draw_memory,
    draw_predictions,
    draw_target_queries,
    save_png,
    select_queries,
)
from helpers import one_thread_fixture, tiny_dab_detr, tiny_deformable_detr, tiny_dino

one_thread = pytest.fixture(autouse=True)(one_thread_fixture)

FAMILIES = {
    "deformable_detr": lambda **kw: tiny_deformable_detr(with_box_refine=True, **kw),
    "dab_detr": lambda **kw: tiny_dab_detr(**kw),
    "dino": lambda **kw: tiny_dino(**kw),
}
META = Metadata(name="tiny").set(thing_classes=["Car", "Pedestrian", "Cyclist"])
H, W = 60, 150  # the original image; the model sees it resized to 48 x 120


def _sample():
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(H, W, 3, generator=g) * 255).to(torch.uint8).numpy()
    resized = torch.nn.functional.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(48, 120))[0]
    boxes = torch.tensor([[10.0, 20.0, 50.0, 45.0], [90.0, 5.0, 120.0, 55.0]])
    return Sample(image, {"image": resized, "height": H, "width": W}, boxes, torch.tensor([0, 2]), name="x")


def _pair(family):
    torch.manual_seed(0)
    teacher = FAMILIES[family](embed_dim=32).eval()
    torch.manual_seed(1)
    student = FAMILIES[family](embed_dim=16).eval()
    return {"teacher": teacher, "student": student}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_mode_draws_a_picture_of_the_documented_size(family, tmp_path):
    models, s = _pair(family), _sample()
    pictures = {
        "predictions": (draw_predictions(models, s, META, score_thresh=0.0), 3),
        "queries": (draw_target_queries(models, s, META, layer=0), 1),
        "attention_gt": (draw_attention(models, s, META, queries="gt"), 2),
        "attention_topk": (draw_attention(models, s, META, queries="topk:3", layer=0), 2),
        "attention_idx": (draw_attention(models, s, META, queries="idx:0,4"), 2),
    }
    levels = models["teacher"].num_levels
    pictures["memory"] = (draw_memory(models["teacher"], {"alone": models["student"], "distilled": models["student"]},
                                      s, META), levels * 4)
    for mode, (pic, panels) in pictures.items():
        assert pic.dtype == np.uint8 and pic.shape == (H * panels, W, 3), (mode, pic.shape)
        assert pic.std() > 0
        save_png(tmp_path / f"{mode}.png", pic)
        assert Image.open(tmp_path / f"{mode}.png").size == (W, H * panels)
    # Not a blank copy of the input: every panel has drawn something on the image.
    for mode, (pic, panels) in pictures.items():
        for p in range(panels):
            assert (pic[p * H:(p + 1) * H] != s.image).any(), (mode, p)


def test_query_selection_and_errors():
    models, s = _pair("dino"), _sample()
    model = models["teacher"]
    with torch.no_grad():
        enc = model.encode(model.preprocess_image([s.model_input]))
    g, idx, labels = select_queries("gt", model, enc, s)
    assert g.num_queries == 2 and idx == [0, 1]
    g, idx, _ = select_queries("topk:3", model, enc, s)
    assert len(idx) == 3 and g.num_queries == model.num_queries
    with pytest.raises(ValueError, match="out of range"):
        select_queries("idx:0,999", model, enc, s)
    with pytest.raises(ValueError, match="expected 'gt'"):
        select_queries("best", model, enc, s)
    empty = Sample(s.image, s.model_input, name="no_gt.png")
    with pytest.raises(ValueError, match="no_gt.png.*ground-truth"):
        draw_target_queries(models, empty, META)
