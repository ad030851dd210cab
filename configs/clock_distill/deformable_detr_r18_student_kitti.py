# The Deformable DETR (two-stage, box refinement) R18 student alone on real KITTI (the no-KD baseline of
# deformable_detr_r50_r18_kitti_clockdistill.py): configs/deformable_detr/deformable_detr_r50_kitti_50ep_two_stage.py with an R18 backbone, same
# recipe and schedule. ImageNet R18 in detectron2's format: convert torchvision's resnet18 with
# detectron2's tools/convert-torchvision-to-d2.py into pretrained/R-18.pkl.
from ..common.distill import with_depth
from ..deformable_detr.deformable_detr_r50_kitti_50ep_two_stage import dataloader, lr_multiplier, model, optimizer, train

model = with_depth(model, 18)
train.init_checkpoint = "pretrained/R-18.pkl"
train.output_dir = "./output/clock_distill/deformable_detr_r18_student_kitti"
