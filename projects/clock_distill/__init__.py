"""clock_distill: CLoCKDistill knowledge distillation for DETR detectors, as a detectron2 project.

Importing this package has no side effects: datasets are registered only when
``clock_distill.data.register_*`` is called, and no optional heavy package is
imported here.
"""

__version__ = "0.1.0"
