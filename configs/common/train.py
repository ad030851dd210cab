import torch

# Common training settings (detectron2's configs/common/train.py, plus DETR's gradient clipping).
train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=90000,
    amp=dict(enabled=False),  # CUDA only
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    device="cuda" if torch.cuda.is_available() else "cpu",
    clip_grad=dict(enabled=True, params=dict(max_norm=0.1, norm_type=2)),
    seed=-1,
)
