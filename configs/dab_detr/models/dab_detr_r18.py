from .dab_detr_r50 import model

model.backbone.depth = 18
model.neck.in_channels = (512,)
