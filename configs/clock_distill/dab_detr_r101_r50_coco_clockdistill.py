# CLoCKDistill on COCO: the DAB-DETR R50 student of configs/dab_detr/dab_detr_r50_coco_50ep.py (its recipe,
# schedule and ImageNet R-50 init; that config is the student-alone baseline) learns from the R101
# teacher of dab_detr_r101_teacher_coco.py.
from ..common.distill import distiller
from ..dab_detr.dab_detr_r50_coco_50ep import dataloader, lr_multiplier, optimizer, train
from ..dab_detr.dab_detr_r50_coco_50ep import model as student
from .dab_detr_r101_teacher_coco import dataloader as teacher_dataloader
from .dab_detr_r101_teacher_coco import model as teacher
from .dab_detr_r101_teacher_coco import train as teacher_train

model = distiller(
    student, teacher, "configs/clock_distill/dab_detr_r101_teacher_coco.py", teacher_train.output_dir,
    dataloader.train.dataset.names, teacher_dataloader.train.dataset.names, method="clockdistill",
)
train.distill = dict(warmup_iters=1000)
train.output_dir = "./output/clock_distill/dab_detr_r101_r50_coco_clockdistill"
