# The DAB-DETR student distilled from the DAB-DETR teacher with CLoCKDistill (LCMD + TCLD) on the
# built-in synthetic KITTI. Same data and schedule as dab_detr_student_kitti_synthetic.py (imported
# from it); the teacher is dab_detr_teacher_kitti_synthetic.py's model_final.pth.
# Ablations are overrides: LCMD only: model.logit_loss=None model.distill_queries=None;
# TCLD only: model.memory_loss=None; masks: model.memory_loss.mask=gaussian|none.
from ..common.distill import distiller
from .dab_detr_student_kitti_synthetic import dataloader, lr_multiplier, optimizer, train
from .dab_detr_student_kitti_synthetic import model as student
from .dab_detr_teacher_kitti_synthetic import dataloader as teacher_dataloader
from .dab_detr_teacher_kitti_synthetic import model as teacher
from .dab_detr_teacher_kitti_synthetic import train as teacher_train

model = distiller(
    student, teacher, "configs/clock_distill/dab_detr_teacher_kitti_synthetic.py", teacher_train.output_dir,
    dataloader.train.dataset.names, teacher_dataloader.train.dataset.names, method="clockdistill",
)
train.distill = dict(warmup_iters=50)
train.output_dir = "./output/clock_distill/dab_detr_clockdistill_kitti_synthetic"
