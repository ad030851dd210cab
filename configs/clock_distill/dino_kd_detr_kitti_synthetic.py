# The DINO student distilled from the DINO teacher with the KD-DETR baseline on the
# built-in synthetic KITTI. Same data and schedule as dino_student_kitti_synthetic.py (imported
# from it); the teacher is dino_teacher_kitti_synthetic.py's model_final.pth.
from ..common.distill import distiller
from .dino_student_kitti_synthetic import dataloader, lr_multiplier, optimizer, train
from .dino_student_kitti_synthetic import model as student
from .dino_teacher_kitti_synthetic import dataloader as teacher_dataloader
from .dino_teacher_kitti_synthetic import model as teacher
from .dino_teacher_kitti_synthetic import train as teacher_train

model = distiller(
    student, teacher, "configs/clock_distill/dino_teacher_kitti_synthetic.py", teacher_train.output_dir,
    dataloader.train.dataset.names, teacher_dataloader.train.dataset.names, method="kd_detr",
)
train.distill = dict(warmup_iters=50)
train.output_dir = "./output/clock_distill/dino_kd_detr_kitti_synthetic"
