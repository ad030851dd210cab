# The neck-feature KD baseline (FGD-style masked MSE on the neck features) on real KITTI, the peer of
# dino_r50_r18_kitti_clockdistill.py: the DINO R18 student (ImageNet init, as
# dino_r18_student_kitti.py, whose recipe and schedule it shares) learns from the R50 teacher
# trained by configs/dino/dino_r50_kitti_12ep.py (its model_final.pth; override with
# model.teacher_weights=PATH).
from ..common.distill import distiller
from ..dino.dino_r50_kitti_12ep import dataloader as teacher_dataloader
from ..dino.dino_r50_kitti_12ep import model as teacher
from ..dino.dino_r50_kitti_12ep import train as teacher_train
from .dino_r18_student_kitti import dataloader, lr_multiplier, optimizer, train
from .dino_r18_student_kitti import model as student

model = distiller(
    student, teacher, "configs/dino/dino_r50_kitti_12ep.py", teacher_train.output_dir,
    dataloader.train.dataset.names, teacher_dataloader.train.dataset.names, method="feature_kd",
)
train.distill = dict(warmup_iters=500)
train.output_dir = "./output/clock_distill/dino_r50_r18_kitti_feature_kd"
