# The DINO student alone on the built-in synthetic KITTI (the no-KD baseline): R18 at half
# width, D=64, 2+2 layers, 50 queries (configs/common/distill.py: synthetic_student), with the
# teacher's recipe (configs/common/kitti_synthetic_cpu.py: 1000 steps of 4 images, lr 4e-4).
# The distillation configs of this family import this file's schedule, so they train the same.
from ..common.distill import synthetic_student
from ..dino.dino_r18_kitti_synthetic import dataloader, lr_multiplier, model, optimizer, train

model = synthetic_student(model)
train.init_checkpoint = "synthetic-pretrained://R-18-w0.5"
train.output_dir = "./output/clock_distill/dino_student_kitti_synthetic"
