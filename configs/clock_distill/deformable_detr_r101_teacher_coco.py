# The Deformable DETR (two-stage, box refinement) R101 teacher on COCO: configs/deformable_detr/deformable_detr_r50_coco_50ep.py with an R101 backbone
# (ImageNet R101: convert torchvision's resnet101, whose bottlenecks match this backbone, with
# detectron2's tools/convert-torchvision-to-d2.py into pretrained/R-101.pkl), same recipe. Its model_final.pth teaches
# deformable_detr_r101_r50_coco_clockdistill.py.
from ..common.distill import with_depth
from ..deformable_detr.deformable_detr_r50_coco_50ep import dataloader, lr_multiplier, model, optimizer, train

model = with_depth(model, 101)
train.init_checkpoint = "pretrained/R-101.pkl"
train.output_dir = "./output/clock_distill/deformable_detr_r101_teacher_coco"
