"""How hard does each KD term pull on the student? Gradient norms per loss term and per part
of the student, on training batches, without a step.

A KD term whose gradient is orders of magnitude below the detection loss's on the parts it
reaches (LCMD: backbone, neck, encoder) changes nothing, whatever its loss value; this is how
a loss weight is checked before spending a training run on it. ``tools/kd_grad_norms.py`` runs
it on a distillation config.
"""

from __future__ import annotations

from typing import Dict, List

import torch

__all__ = ["STUDENT_PARTS", "loss_terms", "student_part", "kd_grad_norms"]

# The first top-level student module name that matches gives the part.
STUDENT_PARTS = (
    ("backbone", ("backbone",)),
    ("neck", ("neck", "input_proj", "level_embed")),
    ("encoder", ("encoder",)),
)


def student_part(name: str) -> str:
    """The part of a Distiller parameter ``name``: backbone, neck, encoder, decoder (everything
    else of the student: decoder layers, heads, queries) or adapters (the KD adapters)."""
    if not name.startswith("student."):
        return "adapters"
    top = name.split(".")[1]
    for part, prefixes in STUDENT_PARTS:
        if top in prefixes:
            return part
    return "decoder"


def loss_terms(loss_keys, distiller) -> Dict[str, List[str]]:
    """The Distiller's loss keys grouped into terms: ``detection`` (the student's own losses)
    and one term per KD loss (``lcmd``, ``feature_kd``, and the query-based one under its
    query provider's name, e.g. ``tcld``)."""
    prefixes = {"lcmd": "loss_lcmd", "feature_kd": "loss_feature_kd"}
    if distiller.distill_queries is not None:
        prefixes[distiller.distill_queries.name] = f"loss_{distiller.distill_queries.name}_"
    terms = {"detection": []}
    for key in loss_keys:
        term = next((t for t, p in prefixes.items() if key.startswith(p)), "detection")
        terms.setdefault(term, []).append(key)
    return terms


def kd_grad_norms(distiller, batched_inputs) -> Dict[str, Dict[str, float]]:
    """L2 norm of the gradient of each loss term (its weighted keys summed, times the current
    ``kd_scale`` as in training) over each part's trainable parameters, on one batch.

    Returns ``{term: {"loss": value, part: norm, ...}}`` with the parts of :func:`student_part`.
    The model's parameters and ``.grad`` are left untouched.
    """
    losses = distiller(batched_inputs)
    named = [(n, p) for n, p in distiller.named_parameters() if p.requires_grad]
    parts = sorted({student_part(n) for n, _ in named})
    out = {}
    for term, keys in loss_terms(losses, distiller).items():
        value = sum(losses[k] for k in keys)
        grads = torch.autograd.grad(value, [p for _, p in named], retain_graph=True, allow_unused=True)
        sq = dict.fromkeys(parts, 0.0)
        for (n, _), g in zip(named, grads):
            if g is not None:
                sq[student_part(n)] += float(g.detach().pow(2).sum())
        out[term] = {"loss": float(value.detach()), **{p: v ** 0.5 for p, v in sq.items()}}
    return out
