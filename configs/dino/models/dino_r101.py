from .dino_r50 import model

model.backbone.depth = 101
