# The DINO R18 student alone on real KITTI (the no-KD baseline of
# dino_r50_r18_kitti_clockdistill.py): configs/dino/dino_r50_kitti_12ep.py with an R18 backbone, same
# recipe and schedule. ImageNet R18 in detectron2's format: convert torchvision's resnet18 with
# detectron2's tools/convert-torchvision-to-d2.py into pretrained/R-18.pkl.
from ..common.distill import with_depth
from ..dino.dino_r50_kitti_12ep import dataloader, lr_multiplier, model, optimizer, train

model = with_depth(model, 18)
train.init_checkpoint = "pretrained/R-18.pkl"
train.output_dir = "./output/clock_distill/dino_r18_student_kitti"
