# The neck-feature KD baseline (FGD-style masked MSE on the neck features) on real KITTI, the peer of
# deformable_detr_r50_r18_kitti_clockdistill.py: the Deformable DETR (two-stage, box refinement) R18 student (ImageNet init, as
# deformable_detr_r18_student_kitti.py, whose recipe and schedule it shares) learns from the R50 teacher
# trained by configs/deformable_detr/deformable_detr_r50_kitti_50ep_two_stage.py (its model_final.pth; override with
# model.teacher_weights=PATH).
from ..common.distill import distiller
from ..deformable_detr.deformable_detr_r50_kitti_50ep_two_stage import dataloader as teacher_dataloader
from ..deformable_detr.deformable_detr_r50_kitti_50ep_two_stage import model as teacher
from ..deformable_detr.deformable_detr_r50_kitti_50ep_two_stage import train as teacher_train
from .deformable_detr_r18_student_kitti import dataloader, lr_multiplier, optimizer, train
from .deformable_detr_r18_student_kitti import model as student

model = distiller(
    student, teacher, "configs/deformable_detr/deformable_detr_r50_kitti_50ep_two_stage.py", teacher_train.output_dir,
    dataloader.train.dataset.names, teacher_dataloader.train.dataset.names, method="feature_kd",
)
train.distill = dict(warmup_iters=500)
train.output_dir = "./output/clock_distill/deformable_detr_r50_r18_kitti_feature_kd"
