# The Deformable DETR student distilled from the Deformable DETR teacher with CLoCKDistill (LCMD + TCLD) on the
# built-in synthetic KITTI. Same data and schedule as deformable_detr_student_kitti_synthetic.py (imported
# from it); the teacher is deformable_detr_teacher_kitti_synthetic.py's model_final.pth.
# Ablations are overrides: LCMD only: model.logit_loss=None model.distill_queries=None;
# TCLD only: model.memory_loss=None; masks: model.memory_loss.mask=gaussian|none.
from ..common.distill import distiller
from .deformable_detr_student_kitti_synthetic import dataloader, lr_multiplier, optimizer, train
from .deformable_detr_student_kitti_synthetic import model as student
from .deformable_detr_teacher_kitti_synthetic import dataloader as teacher_dataloader
from .deformable_detr_teacher_kitti_synthetic import model as teacher
from .deformable_detr_teacher_kitti_synthetic import train as teacher_train

model = distiller(
    student, teacher, "configs/clock_distill/deformable_detr_teacher_kitti_synthetic.py", teacher_train.output_dir,
    dataloader.train.dataset.names, teacher_dataloader.train.dataset.names, method="clockdistill",
)
train.distill = dict(warmup_iters=50)
train.output_dir = "./output/clock_distill/deformable_detr_clockdistill_kitti_synthetic"
