# The DINO teacher on the built-in synthetic KITTI: the CPU-sized DINO of
# configs/dino/dino_r18_kitti_synthetic.py (R18-GN, D=128, 3+3 layers, 100 queries, 3 levels at
# strides 16/32/64), trained 1000 steps of 4 images. Its model_final.pth is the teacher_weights
# of every dino_*_kitti_synthetic.py distillation config here.
from ..dino.dino_r18_kitti_synthetic import dataloader, lr_multiplier, model, optimizer, train

train.output_dir = "./output/clock_distill/dino_teacher_kitti_synthetic"
