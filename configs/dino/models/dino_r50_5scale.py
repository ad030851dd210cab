from .dino_r50 import model

# DINO-5scale: C2-C5 + one extra level (strides 4 to 64). Much slower and hungrier than 4 scales.
model.backbone.out_features = ("res2", "res3", "res4", "res5")
model.neck.in_features = ("res2", "res3", "res4", "res5")
model.neck.in_channels = (256, 512, 1024, 2048)
model.neck.num_outs = 5
model.encoder.n_levels = 5
model.decoder_layers.n_levels = 5
