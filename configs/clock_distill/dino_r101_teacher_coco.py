# The DINO R101 teacher on COCO: configs/dino/dino_r50_coco_12ep.py with an R101 backbone
# (ImageNet R101: convert torchvision's resnet101, whose bottlenecks match this backbone, with
# detectron2's tools/convert-torchvision-to-d2.py into pretrained/R-101.pkl), same recipe. Its model_final.pth teaches
# dino_r101_r50_coco_clockdistill.py.
from ..common.distill import with_depth
from ..dino.dino_r50_coco_12ep import dataloader, lr_multiplier, model, optimizer, train

model = with_depth(model, 101)
train.init_checkpoint = "pretrained/R-101.pkl"
train.output_dir = "./output/clock_distill/dino_r101_teacher_coco"
