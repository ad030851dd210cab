# Deformable DETR + iterative bounding box refinement, R50, KITTI, 50 epochs: the recipe of
# deformable_detr_r50_kitti_50ep.py (epoch arithmetic there: 232 iterations per epoch,
# max_iter 11600, lr decay at 9280, eval/checkpoint every 1160).
from .deformable_detr_r50_kitti_50ep import dataloader, lr_multiplier, model, optimizer, train

model.with_box_refine = True

train.output_dir = "./output/deformable_detr_r50_kitti_50ep_box_refine"
