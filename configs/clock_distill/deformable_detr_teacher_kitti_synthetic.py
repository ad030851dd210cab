# The Deformable DETR teacher on the built-in synthetic KITTI: the CPU-sized model of
# configs/deformable_detr/deformable_detr_r18_kitti_synthetic.py (R18-GN, D=128, 3+3 layers, 100 queries), trained
# 1000 steps of 4 images. Its model_final.pth is the teacher_weights of every
# deformable_detr_*_kitti_synthetic.py distillation config here.
from ..deformable_detr.deformable_detr_r18_kitti_synthetic import dataloader, lr_multiplier, model, optimizer, train

train.output_dir = "./output/clock_distill/deformable_detr_teacher_kitti_synthetic"
