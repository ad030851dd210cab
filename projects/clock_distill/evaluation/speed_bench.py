"""Speed and memory, measured side by side (``python tools/benchmark.py speed``).

Every time here is a ratio of two sides measured in one process, the sides alternating (the
order flips every round), at a fixed number of threads, the median of the repeats: absolute
times on a shared machine are noise, ratios of interleaved runs much less so.

- ``peer``: our Deformable DETR and DAB-DETR against Hugging Face transformers'
  ``DeformableDetrForObjectDetection`` and ``DabDetrForObjectDetection`` (``clock_distill.peers``),
  built at our CPU-sized synthetic configs with our backbone, fed the same batch: the train step
  (forward, backward, AdamW step) and inference per image. Deformable DETR is compared with box
  refinement and *without* two-stage: transformers' two-stage computes no loss on the encoder
  proposals, so it would do less work than the method asks.
- ``msda``: the deformable-attention function alone, forward and backward, at the encoder's
  shapes (every token a query), ours against transformers' PyTorch path; on the CPU ours with
  both kernels (``pytorch``, and the fused ``cpu`` one, which ``msda_ratio`` reports). The peer
  part times our Deformable DETR with both kernels as well.
- ``distill_overhead``: a Distiller train step / (the student's own train step + the teacher's
  inference forward under ``no_grad``), same batch: what the KD machinery itself costs.
- ``deploy``: inference latency per image and parameters of each synthetic teacher and student.
- ``peak_memory_mb``: peak RSS of a fresh process that trains a few steps of the student alone
  or the Distiller (and ``torch.cuda.max_memory_allocated`` on a GPU).
- ``kitti_eval_s``: the official KITTI metric on 3,769 images x 100 detections.

Shapes: B images per batch, N memory tokens, M heads, L levels, P points.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..modeling.layers import MultiScaleDeformableAttention

__all__ = ["SpeedSettings", "alternate", "run_speed", "speed_markdown", "profile_peer_step", "FAMILIES"]

REPO = Path(__file__).resolve().parents[3]
FAMILIES = ("dab_detr", "deformable_detr", "dino")
# Our side of each peer comparison: the family's synthetic config, and overrides that match what
# the peer computes (see the module doc).
PEER_CONFIGS = {
    "deformable_detr": ("configs/deformable_detr/deformable_detr_r18_kitti_synthetic.py", ("model.as_two_stage=False",)),
    "dab_detr": ("configs/dab_detr/dab_detr_r18_kitti_synthetic.py", ()),
}


@dataclass
class SpeedSettings:
    """What to measure and how often. ``smoke`` is a tiny run that only checks the plumbing."""

    repeats: int = 7
    warmup: int = 2
    batch_size: int = 2
    threads: int = 2
    memory_steps: int = 3
    kitti_images: int = 3769
    families: Tuple[str, ...] = FAMILIES  # of the distillation, deployment and memory parts
    peer_families: Tuple[str, ...] = tuple(PEER_CONFIGS)
    device: str = "cpu"
    smoke: bool = False
    parts: Tuple[str, ...] = ("peer", "msda", "distill_overhead", "deploy", "memory", "kitti_eval")
    overrides: Tuple[str, ...] = ()  # config overrides for every model and loader built here

    @classmethod
    def for_smoke(cls, **kw) -> "SpeedSettings":
        """Tiny images, one repeat; the distillation parts for DINO only (the other families'
        Distillers are the same code; the peers need both families, each its own peer)."""
        tiny = ("dataloader.train.mapper.augmentation.1.short_edge_length=[48]",
                "dataloader.test.mapper.augmentation.0.short_edge_length=48")
        kw.setdefault("families", ("dino",))
        return cls(repeats=1, warmup=0, batch_size=1, memory_steps=1, kitti_images=50, smoke=True, overrides=tiny, **kw)


# ----------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int, device=torch.device("cpu")) -> Dict[str, Dict]:
    """Time each of ``fns`` ``repeats`` times, interleaved: round r runs them in order, r+1 in
    reverse, so that a slow spell of the machine hits every side alike. ``warmup`` untimed
    rounds first. Returns ``{name: {"median_s", "min_s", "times_s"}}``."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    for r in range(max(1, repeats)):
        for n in (names if r % 2 == 0 else names[::-1]):
            _sync(device)
            t0 = time.perf_counter()
            fns[n]()
            _sync(device)
            times[n].append(time.perf_counter() - t0)
    return {n: {"median_s": statistics.median(v), "min_s": min(v), "times_s": [round(t, 5) for t in v]}
            for n, v in times.items()}


def _ratio(res: Dict[str, Dict], a: str, b: str) -> float:
    return res[a]["median_s"] / res[b]["median_s"]


def _ratio_without(res: Dict[str, Dict], common: str) -> Optional[float]:
    """(ours - common) / (peer - common); None when the peer's rest is not positive (noise)."""
    rest_peer = res["peer"]["median_s"] - res[common]["median_s"]
    return (res["ours"]["median_s"] - res[common]["median_s"]) / rest_peer if rest_peer > 0 else None


# ----------------------------------------------------------------------------- models and batches
def load_config(path: str, overrides: Sequence[str] = ()):
    """A LazyConfig with ``overrides``, no pretrained backbone (speed does not depend on weights)
    and a single-process loader."""
    from detectron2.config import LazyConfig

    from ..config import apply_overrides

    cfg = LazyConfig.load(str(REPO / path))
    return apply_overrides(cfg, ["train.init_checkpoint=", "dataloader.train.num_workers=0", *overrides])


def train_batch(cfg, batch_size: int) -> List[Dict]:
    """The first batch of the config's train loader, ``batch_size`` images; the same on every
    run (the sampler's order and the random resize are seeded)."""
    from detectron2.config import instantiate
    from detectron2.utils.env import seed_all_rng

    cfg.dataloader.train.total_batch_size = batch_size
    seed_all_rng(0)
    return next(iter(instantiate(cfg.dataloader.train)))


def eval_images(cfg, n: int) -> List[Dict]:
    """``n`` images of the config's test loader (test-time size), one dict each."""
    from detectron2.config import instantiate

    cfg.dataloader.test.num_workers = 0
    out = []
    for batch in instantiate(cfg.dataloader.test):
        out.extend(batch)
        if len(out) >= n:
            break
    return out[:n]


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _to(batch: List[Dict], device: torch.device) -> List[Dict]:
    return [{**d, "image": d["image"].to(device)} for d in batch]


def _step_fn(model, optimizer, loss_of: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """One train step: forward (``loss_of``), backward, optimizer step."""

    def step():
        model.train()
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _optimizer(cfg, model):
    from detectron2.config import instantiate

    cfg.optimizer.params.model = model
    return instantiate(cfg.optimizer)


def _eval_fn(model, batch) -> Callable[[], None]:
    def infer():
        model.eval()
        with torch.no_grad():
            model(batch)

    return infer


# ----------------------------------------------------------------------------- the parts
def _peer_pair(family: str, s: SpeedSettings):
    """Ours at ``PEER_CONFIGS[family]`` and its transformers peer, one train batch, and a train
    step of each: ``(cfg, device, ours, peer, batch, {"ours": step, "peer": step})``."""
    from detectron2.config import instantiate

    from ..peers import PEER_BUILDERS, hf_inputs

    path, overrides = PEER_CONFIGS[family]
    cfg = load_config(path, overrides + s.overrides)
    device = torch.device(s.device)
    torch.manual_seed(0)
    ours = instantiate(cfg.model).to(device)
    peer = PEER_BUILDERS[family](ours).to(device)
    batch = _to(train_batch(cfg, s.batch_size), device)
    # The peer's inputs are made once, outside the timing: ours also gets its tensors ready-made.
    inputs, _ = hf_inputs(ours, batch, with_labels=True)
    steps = {"ours": _step_fn(ours, _optimizer(cfg, ours), lambda: sum(ours(batch).values())),
             "peer": _step_fn(peer, _optimizer(cfg, peer), lambda: peer(**inputs).loss)}
    return cfg, device, ours, peer, batch, steps


def peer_speed(family: str, s: SpeedSettings) -> Dict:
    """Ours against the transformers peer: train step and inference per image (ratios ours/peer)."""
    from ..peers import HFDetector

    cfg, device, ours, peer, batch, steps = _peer_pair(family, s)
    path, overrides = PEER_CONFIGS[family]
    pixels = ours.preprocess_image(batch).tensor

    def backbone_step():
        # The backbone's share of a step, which both sides run (the peer has a copy of ours):
        # even a transformer that cost nothing could not bring the ratio below backbone / peer.
        ours.train()
        sum(f.sum() for f in ours.backbone(pixels).values()).backward()
        ours.zero_grad(set_to_none=True)

    # On the CPU, ours also with the fused deformable-attention kernel (model.msda_kernel=cpu),
    # a copy of the same weights.
    fused = None
    if device.type == "cpu" and any(isinstance(m, MultiScaleDeformableAttention) for m in ours.modules()):
        fused = copy.deepcopy(ours)
        fused.set_msda_kernel("cpu")
        steps["ours_cpu_kernel"] = _step_fn(fused, _optimizer(cfg, fused), lambda: sum(fused(batch).values()))
    train = alternate({**steps, "backbone": backbone_step}, s.repeats, s.warmup, device)
    image = _to(eval_images(cfg, 1), device)
    image_pixels = ours.preprocess_image(image).tensor

    def backbone_infer():
        ours.eval()
        with torch.no_grad():
            ours.backbone(image_pixels)

    infers = {"ours": _eval_fn(ours, image), "peer": _eval_fn(HFDetector(peer, ours), image), "backbone": backbone_infer}
    if fused is not None:
        infers["ours_cpu_kernel"] = _eval_fn(fused, image)
    infer = alternate(infers, s.repeats, s.warmup, device)
    kernel = {} if fused is None else {"cpu_kernel": {
        "train_step_ratio": _ratio(train, "ours_cpu_kernel", "peer"), "inference_ratio": _ratio(infer, "ours_cpu_kernel", "peer")}}
    return {**kernel,
        "config": path, "overrides": list(overrides), "batch_size": s.batch_size,
        "image_hw": list(batch[0]["image"].shape[-2:]), "test_image_hw": list(image[0]["image"].shape[-2:]),
        "train_step_ratio": _ratio(train, "ours", "peer"), "inference_ratio": _ratio(infer, "ours", "peer"),
        "train_step_s": {k: v["median_s"] for k, v in train.items()},
        "inference_ms": {k: 1000 * v["median_s"] for k, v in infer.items()},
        "params_ours": num_params(ours), "params_peer": num_params(peer),
        "backbone_floor": {"train_step": _ratio(train, "backbone", "peer"), "inference": _ratio(infer, "backbone", "peer")},
        # What differs between the sides: everything but the shared backbone (a difference of
        # medians, so noisier than the ratios above).
        "without_backbone_ratio": {"train_step": _ratio_without(train, "backbone"), "inference": _ratio_without(infer, "backbone")},
    }


def profile_peer_step(family: str, s: SpeedSettings, row_limit: int = 15) -> str:
    """``torch.profiler`` tables (ops by self CPU time) of two train steps of ours and of the
    peer, at :func:`peer_speed`'s config and batch, with the convolutions' share of each: where
    the time goes, before any code is changed for speed."""
    from torch.profiler import ProfilerActivity, profile

    _, device, _, _, _, steps = _peer_pair(family, s)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    out = []
    for name, step in steps.items():
        for _ in range(max(1, s.warmup)):
            step()
        with profile(activities=activities) as prof:
            step()
            step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key)
        out.append(f"{name}: convolutions (forward and backward) {100 * conv / total:.1f}% of the self CPU time\n"
                   + events.table(sort_by="self_cpu_time_total", row_limit=row_limit))
    return "\n".join(out)


def msda_speed(s: SpeedSettings) -> Dict:
    """The deformable-attention function, forward + backward, at the encoder's shapes of the
    Deformable DETR config (levels of the batch's padded image, every token a query)."""
    from ..modeling.layers.ms_deform_attn import multi_scale_deformable_attention
    from ..peers import require_transformers

    require_transformers()
    from transformers.models.deformable_detr.modeling_deformable_detr import MultiScaleDeformableAttention as HFMSDA

    from detectron2.config import instantiate

    path, overrides = PEER_CONFIGS["deformable_detr"]
    cfg = load_config(path, overrides + s.overrides)
    device = torch.device(s.device)
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(device).eval()
    batch = _to(train_batch(cfg, s.batch_size), device)
    with torch.no_grad():
        enc = model.encode(model.preprocess_image(batch))
    shapes = [tuple(hw) for hw in enc.spatial_shapes.tolist()]
    attn = model.encoder.layers[0].self_attn
    B, N = enc.memory.shape[:2]
    M, L, P, Dh = attn.num_heads, attn.num_levels, attn.num_points, attn.value_dim // attn.num_heads
    g = torch.Generator().manual_seed(0)
    value = torch.randn(B, N, M, Dh, generator=g).to(device).requires_grad_()
    # Locations spread a little beyond [0, 1], as trained offsets do.
    loc = (torch.rand(B, N, M, L, P, 2, generator=g) * 1.2 - 0.1).to(device).requires_grad_()
    weights = torch.rand(B, N, M, L, P, generator=g).to(device).flatten(-2).softmax(-1).view(B, N, M, L, P).requires_grad_()
    shapes_t = enc.spatial_shapes
    starts = enc.level_start_index
    hf = HFMSDA()

    def ours(kernel):
        return lambda: multi_scale_deformable_attention(value, shapes, loc, weights, kernel).sum().backward()

    def peer():
        hf(value, shapes_t, shapes, starts, loc, weights, 64).sum().backward()

    sides = {"ours": ours("pytorch"), "peer": peer}
    if device.type == "cpu":
        sides["ours_cpu_kernel"] = ours("cpu")
    res = alternate(sides, s.repeats, s.warmup, device)
    out = {"shapes": {"B": B, "N": N, "heads": M, "levels": shapes, "points": P, "head_dim": Dh},
           "ratio": _ratio(res, "ours", "peer"), "ms": {k: 1000 * v["median_s"] for k, v in res.items()}}
    if "ours_cpu_kernel" in res:
        out["ratio_cpu_kernel"] = _ratio(res, "ours_cpu_kernel", "peer")
    return out


def _random_teacher(cfg, tmp: Path) -> str:
    """A teacher checkpoint of random weights (speed does not depend on them)."""
    from detectron2.config import instantiate

    torch.manual_seed(1)
    path = tmp / "teacher.pth"
    torch.save({"model": instantiate(cfg.model.teacher).state_dict()}, path)
    return str(path)


def distiller_config(family: str, tmp: Path, extra: Sequence[str] = ()):
    """The family's CLoCKDistill synthetic config with a random teacher checkpoint."""
    from detectron2.config import LazyConfig

    path = f"configs/clock_distill/{family}_clockdistill_kitti_synthetic.py"
    teacher = _random_teacher(LazyConfig.load(str(REPO / path)), tmp)
    return load_config(path, [f"model.teacher_weights={teacher}", *extra])


def distill_overhead(family: str, s: SpeedSettings) -> Dict:
    """Distiller step / (student step + teacher inference), on one batch."""
    from detectron2.config import instantiate

    device = torch.device(s.device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = distiller_config(family, Path(tmp), s.overrides)
        torch.manual_seed(0)
        distiller = instantiate(cfg.model).to(device)
    batch = _to(train_batch(cfg, s.batch_size), device)
    student, teacher = distiller.student, distiller.teacher
    opt_kd = _optimizer(cfg, distiller)
    opt_student = _optimizer(cfg, student)

    def teacher_forward():
        with torch.no_grad():
            teacher(batch)  # the teacher stays in eval mode: its inference forward

    res = alternate({
        "distiller": _step_fn(distiller, opt_kd, lambda: sum(distiller(batch).values())),
        "student": _step_fn(student, opt_student, lambda: sum(student(batch).values())),
        "teacher_forward": teacher_forward,
    }, s.repeats, s.warmup, device)
    med = {k: v["median_s"] for k, v in res.items()}
    return {"ratio": med["distiller"] / (med["student"] + med["teacher_forward"]), "seconds": med}


def deploy(family: str, s: SpeedSettings) -> Dict:
    """Inference per image and parameters of the synthetic teacher and student of ``family``."""
    from detectron2.config import instantiate

    device = torch.device(s.device)
    models, image = {}, None
    for role in ("teacher", "student"):
        cfg = load_config(f"configs/clock_distill/{family}_{role}_kitti_synthetic.py", s.overrides)
        torch.manual_seed(0)
        models[role] = instantiate(cfg.model).to(device).eval()
        image = image or _to(eval_images(cfg, 1), device)
    res = alternate({r: _eval_fn(m, image) for r, m in models.items()}, s.repeats, s.warmup, device)
    return {
        "teacher_ms": 1000 * res["teacher"]["median_s"], "student_ms": 1000 * res["student"]["median_s"],
        "speedup": _ratio(res, "teacher", "student"),
        "teacher_params": num_params(models["teacher"]), "student_params": num_params(models["student"]),
        "image_hw": list(image[0]["image"].shape[-2:]),
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: on Linux that survives
    ``exec`` and reports the parent's peak in a child started by subprocess."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def memory_child(family: str, mode: str, steps: int, batch_size: int, device: str, overrides: Sequence[str] = ()) -> Dict:
    """In a fresh process: peak RSS (MB) after ``steps`` train steps of ``mode`` ("student" or
    "distiller"), and on a GPU the peak allocated CUDA memory."""
    from detectron2.config import instantiate

    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "distiller":
            cfg = distiller_config(family, Path(tmp), overrides)
        elif mode == "student":
            cfg = load_config(f"configs/clock_distill/{family}_student_kitti_synthetic.py", overrides)
        else:
            raise ValueError(f"mode must be 'student' or 'distiller', got {mode!r}")
        torch.manual_seed(0)
        model = instantiate(cfg.model).to(dev)
    batch = _to(train_batch(cfg, batch_size), dev)
    step = _step_fn(model, _optimizer(cfg, model), lambda: sum(model(batch).values()))
    rss_before = _peak_rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(steps):
        step()
    out = {"rss_peak_mb": _peak_rss_mb(), "rss_peak_before_steps_mb": rss_before}
    if dev.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def peak_memory(family: str, s: SpeedSettings) -> Dict:
    """:func:`memory_child` for each mode, each in its own process (RSS peaks never go down)."""
    out = {}
    for mode in ("student", "distiller"):
        code = ("import json, torch; from clock_distill.evaluation.speed_bench import memory_child; "
                f"torch.set_num_threads({s.threads}); "
                f"print('MEMORY ' + json.dumps(memory_child({family!r}, {mode!r}, {s.memory_steps}, {s.batch_size}, {s.device!r}, {list(s.overrides)!r})))")
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"memory measurement of {family}/{mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        out[mode] = json.loads(lines[-1][len("MEMORY "):])
    return out


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = f"{os.cpu_count()} CPU cores ({cpu})"
    if device.startswith("cuda") and torch.cuda.is_available():
        where = f"{torch.cuda.get_device_name(torch.device(device))}; {where}"
    return f"{where}, torch {torch.__version__}"


# ----------------------------------------------------------------------------- all together
def run_speed(s: SpeedSettings, log=print) -> Dict:
    """Measure the parts in ``s.parts`` for ``s.families``; the ``speed.json`` dict.

    The peer parts need transformers (``make bench``); without it they are recorded as skipped,
    with the reason, and the rest is measured."""
    torch.set_num_threads(s.threads)
    out: Dict = {"machine": machine(s.device), "device": s.device, "threads": s.threads, "smoke": s.smoke,
                 "settings": {k: v for k, v in asdict(s).items() if k not in ("families", "parts")}}
    try:
        import transformers

        out["transformers"] = transformers.__version__
        have_peer = True
    except ImportError:
        have_peer = False
    skipped = {"skipped": "Hugging Face transformers is not installed (make bench installs it)"}
    t_all = time.perf_counter()

    def part(name, fn, *args):
        t0 = time.perf_counter()
        res = fn(*args)
        log(f"[speed] {name}: {json.dumps(_rounded(res))[:300]} ({time.perf_counter() - t0:.0f} s)")
        return res

    if "peer" in s.parts:
        out["peer"] = {f: part(f"peer/{f}", peer_speed, f, s) if have_peer else skipped
                       for f in s.peer_families}
    if "msda" in s.parts:
        if have_peer:
            out["msda"] = part("msda", msda_speed, s)
            # Ours at its best on this device: the fused kernel where it runs (the CPU).
            out["msda_ratio"] = out["msda"].get("ratio_cpu_kernel", out["msda"]["ratio"])
        else:
            out["msda"], out["msda_ratio"] = skipped, None
    if "distill_overhead" in s.parts:
        out["distill_overhead_detail"] = {f: part(f"distill_overhead/{f}", distill_overhead, f, s) for f in s.families}
        out["distill_overhead"] = {f: v["ratio"] for f, v in out["distill_overhead_detail"].items()}
    if "deploy" in s.parts:
        out["deploy"] = {f: part(f"deploy/{f}", deploy, f, s) for f in s.families}
    if "memory" in s.parts:
        out["peak_memory_mb"] = {f: part(f"memory/{f}", peak_memory, f, s) for f in s.families}
    if "kitti_eval" in s.parts:
        from .bench_kitti import bench_kitti_eval

        res = part("kitti_eval", bench_kitti_eval, s.kitti_images, 100, 0, max(1, min(3, s.repeats)))
        out["kitti_eval"] = res
        out["kitti_eval_s"] = res["seconds_median"]
    out["total_s"] = time.perf_counter() - t_all
    return out


def _rounded(x, nd: int = 4):
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, dict):
        return {k: _rounded(v, nd) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v, nd) for v in x]
    return x


def _x(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


_NAMES = {"dab_detr": "DAB-DETR", "deformable_detr": "Deformable DETR", "dino": "DINO"}


def speed_markdown(r: Dict) -> str:
    """The README table of a ``speed.json`` dict."""
    lines = [f"Measured on {r['machine']}, {r['threads']} threads"
             + (f", transformers {r['transformers']}" if "transformers" in r else "") + "."]
    if r.get("smoke"):
        lines.append("**Smoke run: tiny images and one repeat; these numbers are not measurements.**")
    if r.get("peer"):
        lines += ["", "Against Hugging Face transformers (ours / peer, median time; below 1 is faster):", "",
                  "| family | train step | inference / image | ours s/step | peer s/step | ours ms/img | peer ms/img | params ours | params peer | backbone floor (train / inference) | without the backbone (train / inference) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for f, v in r["peer"].items():
            if "skipped" in v:
                lines.append(f"| {_NAMES[f]} | skipped: {v['skipped']} |||||||||| ")
                continue
            lines.append(f"| {_NAMES[f]} | {v['train_step_ratio']:.2f}x | {v['inference_ratio']:.2f}x | "
                         f"{v['train_step_s']['ours']:.3f} | {v['train_step_s']['peer']:.3f} | "
                         f"{v['inference_ms']['ours']:.1f} | {v['inference_ms']['peer']:.1f} | "
                         f"{v['params_ours'] / 1e6:.2f}M | {v['params_peer'] / 1e6:.2f}M | "
                         f"{v['backbone_floor']['train_step']:.2f}x / {v['backbone_floor']['inference']:.2f}x | "
                         f"{_x(v['without_backbone_ratio']['train_step'])} / {_x(v['without_backbone_ratio']['inference'])} |")
        for f, v in r["peer"].items():
            if "cpu_kernel" in v:
                k = v["cpu_kernel"]
                lines.append(f"| {_NAMES[f]}, `model.msda_kernel=cpu` | {k['train_step_ratio']:.2f}x | {k['inference_ratio']:.2f}x | "
                             f"{v['train_step_s']['ours_cpu_kernel']:.3f} | {v['train_step_s']['peer']:.3f} | "
                             f"{v['inference_ms']['ours_cpu_kernel']:.1f} | {v['inference_ms']['peer']:.1f} | "
                             f"{v['params_ours'] / 1e6:.2f}M | {v['params_peer'] / 1e6:.2f}M | | |")
        lines += ["", "The backbone floor is the shared backbone's time over the peer's: the ratio that a "
                      "transformer, heads and loss costing nothing would reach. \"Without the backbone\" is "
                      "(ours - backbone) / (peer - backbone): the transformer, heads and loss alone."]
    if r.get("msda") and "skipped" not in r["msda"]:
        m = r["msda"]
        lines += ["", f"Deformable attention alone, forward + backward at the encoder's shapes "
                      f"(B={m['shapes']['B']}, N={m['shapes']['N']}): ours {m['ms']['ours']:.1f} ms, peer "
                      f"{m['ms']['peer']:.1f} ms, **{m['ratio']:.2f}x**"
                      + (f"; with the fused CPU kernel (`model.msda_kernel=cpu`) {m['ms']['ours_cpu_kernel']:.1f} ms, "
                         f"**{m['ratio_cpu_kernel']:.2f}x**." if "ratio_cpu_kernel" in m else ".")]
    if r.get("distill_overhead"):
        lines += ["", "Distillation (synthetic configs; overhead = Distiller step / (student step + teacher forward)), "
                      "deployment (inference per image) and peak memory (RSS of a process training "
                      f"{r['settings']['memory_steps']} steps):", "",
                  "| family | overhead | Distiller s/step | student s/step | teacher fwd s | teacher ms/img | student ms/img | speed-up | teacher params | student params | RSS student MB | RSS Distiller MB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for f, ratio in r["distill_overhead"].items():
            sec = r["distill_overhead_detail"][f]["seconds"]
            d = r.get("deploy", {}).get(f, {})
            mem = r.get("peak_memory_mb", {}).get(f, {})
            cells = [f"{ratio:.2f}", f"{sec['distiller']:.3f}", f"{sec['student']:.3f}", f"{sec['teacher_forward']:.3f}"]
            cells += ([f"{d['teacher_ms']:.1f}", f"{d['student_ms']:.1f}", f"{d['speedup']:.2f}x",
                       f"{d['teacher_params'] / 1e6:.2f}M", f"{d['student_params'] / 1e6:.2f}M"] if d else [""] * 5)
            cells += [f"{mem[m]['rss_peak_mb']:.0f}" if m in mem else "" for m in ("student", "distiller")]
            lines.append(f"| {_NAMES[f]} | " + " | ".join(cells) + " |")
        if any("cuda_max_allocated_mb" in m.get("student", {}) for m in r.get("peak_memory_mb", {}).values()):
            lines += ["", "CUDA max allocated (MB): " + "; ".join(
                f"{_NAMES[f]} student {m['student']['cuda_max_allocated_mb']:.0f}, Distiller {m['distiller']['cuda_max_allocated_mb']:.0f}"
                for f, m in r["peak_memory_mb"].items())]
    if r.get("kitti_eval_s") is not None:
        k = r["kitti_eval"]
        lines += ["", f"Official KITTI evaluation of {k['num_images']:,} images x {k['dets_per_image']} detections: "
                      f"{r['kitti_eval_s']:.2f} s."]
    return "\n".join(lines) + "\n"
