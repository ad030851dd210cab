#!/usr/bin/env python
"""Installs the package ``clock_distill`` from ``projects/clock_distill``.

Like detectron2's own ``projects/*``, the sources live under ``projects/``; ``package_dir``
maps them to the top-level import name. Dependencies are pinned in ``requirements.txt`` and
installed by ``make setup`` (detectron2 is not on the package index: see
``tools/install_detectron2.py``), so ``install_requires`` lists only what is checked at import.
"""

from setuptools import find_packages, setup

packages = find_packages(where="projects", include=["clock_distill", "clock_distill.*"])

setup(
    name="clock_distill",
    version="0.1.0",
    description="CLoCKDistill: knowledge distillation for DETR detectors, as a detectron2 project",
    python_requires=">=3.10",
    package_dir={"clock_distill": "projects/clock_distill"},
    packages=packages,
    # The fused CPU deformable-attention kernel is compiled from source on first use.
    package_data={"clock_distill.modeling.layers": ["csrc/*.cpp"]},
    install_requires=["torch", "torchvision", "numpy", "scipy"],
)
