#!/usr/bin/env python
"""Train or evaluate a clock_distill model from a LazyConfig file (detectron2's conventions).

    python tools/lazyconfig_train_net.py --config-file configs/deformable_detr/deformable_detr_r18_kitti_synthetic.py
    python tools/lazyconfig_train_net.py --config-file CFG --eval-only train.init_checkpoint=output/model_final.pth
    python tools/lazyconfig_train_net.py --config-file CFG --resume train.max_iter=2000 --num-gpus 8

The config provides ``model``, ``dataloader.train``, ``dataloader.test``, ``optimizer``,
``lr_multiplier`` and ``train`` (configs/common/train.py). ``dataloader.evaluator`` is optional:
without it the evaluator is chosen from the test dataset's ``evaluator_type`` (kitti or coco).
"""

import logging
import os

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_argument_parser, default_setup, default_writers, hooks, launch
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from clock_distill.config import apply_overrides
from clock_distill.data.resumable import ResumeStateHook, preserved_rng
from clock_distill.distill import DistillationHook, unwrap_distiller
from clock_distill.distill.distiller import load_teacher_weights
from clock_distill.engine import AtomicCheckpointer, DETRTrainer, launch_cpu
from clock_distill.evaluation.kitti_evaluator import build_evaluator

logger = logging.getLogger("detectron2")


def build_test_evaluator(cfg):
    if "evaluator" in cfg.dataloader:
        return instantiate(cfg.dataloader.evaluator)
    names = cfg.dataloader.test.dataset.names
    name = names if isinstance(names, str) else names[0]
    return build_evaluator(name, output_dir=cfg.train.output_dir)


def do_test(cfg, model):
    # An evaluation in the middle of training leaves the random state as it found it, so that
    # a resumed run draws what the uninterrupted one draws.
    with preserved_rng():
        ret = inference_on_dataset(model, instantiate(cfg.dataloader.test), build_test_evaluator(cfg))
    if comm.is_main_process():
        print_csv_format(ret)
    return ret


def ddp_model(model, cfg):
    """detectron2's ``create_ddp_model`` (a no-op in one process); CPU processes get no device ids."""
    kwargs = dict(cfg.train.ddp)
    if next(model.parameters()).device.type == "cpu":
        kwargs["device_ids"] = None
    return create_ddp_model(model, **kwargs)


def do_train(args, cfg):
    model = instantiate(cfg.model)
    logger.info("Model:\n%s", model)
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = ddp_model(model, cfg)
    trainer = DETRTrainer(
        model, train_loader, optim,
        clip_grad_params=cfg.train.clip_grad.params if cfg.train.clip_grad.enabled else None,
        amp=cfg.train.amp.enabled,
    )
    # Written whole or not at all: a kill during a save keeps the previous checkpoint for --resume.
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    # A Distiller gets its hook (teacher checks, KD warm-up, KD and teacher metrics, student
    # export), configured by train.distill; before PeriodicWriter, which writes what it logs.
    distill_hook = None
    if unwrap_distiller(model) is not None:
        distill_hook = DistillationHook(
            cfg.train.output_dir, **{"teacher_loss_period": cfg.train.log_period, **cfg.train.get("distill", {})}
        )
    # Exact --resume (same data order, augmentations and random state) with the resumable loader.
    sampler = getattr(train_loader, "resumable_sampler", None)
    resume_hook = ResumeStateHook(sampler, cfg.dataloader.train.total_batch_size) if sampler is not None else None
    if sampler is None and args.resume:
        logger.warning("dataloader.train is not clock_distill.data.resumable.build_resumable_train_loader: after "
                       "--resume the data order and augmentations restart from the beginning of the stream")
    trainer.register_hooks(
        [
            resume_hook,
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            distill_hook,
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
            if comm.is_main_process()
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    # The checkpoint stores the iteration that just finished.
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def load_for_eval(model, path: str) -> None:
    """``--eval-only`` loads the whole model strictly: a checkpoint of another family, class
    count or size, or a backbone-only one, would otherwise report the AP of random weights."""
    if not path:
        raise SystemExit("error: --eval-only needs train.init_checkpoint=PATH, the trained model to evaluate "
                         "(without it the evaluation would score random weights)")
    load_teacher_weights(model, path, role="model")


def main(args):
    cfg = LazyConfig.load(args.config_file)
    # Refuses keys the config does not have (a typo would otherwise be ignored silently).
    cfg = apply_overrides(cfg, args.opts)
    if getattr(args, "cpu_processes", 0):
        cfg.train.device = "cpu"  # asked for by --cpu-processes, even where a GPU exists
    default_setup(cfg, args)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        load_for_eval(model, cfg.train.init_checkpoint)
        model = ddp_model(model, cfg)
        return do_test(cfg, model)
    do_train(args, cfg)


if __name__ == "__main__":
    parser = default_argument_parser()
    parser.add_argument("--cpu-processes", type=int, default=0,
                        help="train on CPU in N processes on this machine (gloo); --num-gpus and the machine "
                             "flags are for GPUs (detectron2's launch, NCCL)")
    args = parser.parse_args()
    if args.cpu_processes:
        if args.num_gpus > 1 or args.num_machines > 1:
            raise SystemExit("error: --cpu-processes is for one machine without GPUs; do not combine it with "
                             "--num-gpus or --num-machines")
        launch_cpu(main, args.cpu_processes, args=(args,))
    else:
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
