# CLoCKDistill on COCO: the DINO R50 student of configs/dino/dino_r50_coco_12ep.py (its recipe,
# schedule and ImageNet R-50 init; that config is the student-alone baseline) learns from the R101
# teacher of dino_r101_teacher_coco.py.
from ..common.distill import distiller
from ..dino.dino_r50_coco_12ep import dataloader, lr_multiplier, optimizer, train
from ..dino.dino_r50_coco_12ep import model as student
from .dino_r101_teacher_coco import dataloader as teacher_dataloader
from .dino_r101_teacher_coco import model as teacher
from .dino_r101_teacher_coco import train as teacher_train

model = distiller(
    student, teacher, "configs/clock_distill/dino_r101_teacher_coco.py", teacher_train.output_dir,
    dataloader.train.dataset.names, teacher_dataloader.train.dataset.names, method="clockdistill",
)
model.distill_queries.content = "label_encoder"
train.distill = dict(warmup_iters=1000)
train.output_dir = "./output/clock_distill/dino_r101_r50_coco_clockdistill"
