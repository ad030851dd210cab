"""The distillation benchmark: a profile is a set of cells (family / method / seed), each one
training run of the standard script, resumable and skipped once its result file exists.

A cell writes ``RESULTS/cells/FAMILY__METHOD__sSEED.json`` (config, overrides, command, seed,
commit, wall time, s/iter, the KITTI AP_R40 table on val); checkpoints stay under ``--work``
(outside git). Teachers are cells too; every other cell of a family distills from the teacher
cell's ``model_final.pth``. :func:`aggregate` turns the cells into ``distill.json`` and
``results.md`` (mean ± std over seeds, gain over ``student``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["Cell", "PROFILES", "profile_cells", "run_cell", "aggregate", "METHODS", "FAMILIES"]

FAMILIES = ("dab_detr", "deformable_detr", "dino")
METHODS = ("teacher", "student", "clockdistill", "lcmd_only", "tcld_only", "kd_detr", "feature_kd")
CLASSES = ("Car", "Pedestrian", "Cyclist")
LCMD_ONLY = ("model.logit_loss=None", "model.distill_queries=None")
TCLD_ONLY = ("model.memory_loss=None",)


def _method_table(stems: Dict[str, str]) -> Dict[str, Tuple[str, Tuple[str, ...]]]:
    """method -> (config stem, extra overrides), from the config stem of each method that has
    its own config: the ablations are overrides of the CLoCKDistill config."""
    table = {m: (stem, ()) for m, stem in stems.items()}
    table["lcmd_only"] = (stems["clockdistill"], LCMD_ONLY)
    table["tcld_only"] = (stems["clockdistill"], TCLD_ONLY)
    return table


_SYNTHETIC = _method_table({m: m for m in ("teacher", "student", "clockdistill", "kd_detr", "feature_kd")})


@dataclass(frozen=True)
class Cell:
    profile: str
    family: str
    method: str
    seed: int
    config: str
    overrides: Tuple[str, ...] = ()
    tag: str = ""  # a tuning variant (``--set ... --tag NAME``), evaluated on ``tune``

    @property
    def name(self) -> str:
        return f"{self.family}/{self.method}/{self.seed}"

    @property
    def file_stem(self) -> str:
        return f"{self.family}__{self.method}{'__' + self.tag if self.tag else ''}__s{self.seed}"


@dataclass(frozen=True)
class Profile:
    """``seeds[method]``: the seeds of each method; ``config_pattern`` with ``methods[method]``
    (config stem, extra overrides) gives each cell's config; ``overrides`` go to every cell."""

    name: str
    families: Tuple[str, ...]
    seeds: Dict[str, Tuple[int, ...]]
    config_pattern: str
    overrides: Tuple[str, ...] = ()
    methods: Dict[str, Tuple[str, Tuple[str, ...]]] = field(default_factory=lambda: dict(_SYNTHETIC))
    teacher_seed: int = 42
    description: str = ""


_SEEDS3 = (1, 2, 3)
# The `quick` cells train with detectron2's loader, not the synthetic configs' resumable one
# (their default since the first cells ran), so that every cell of the table draws its batches
# from one pipeline and its config.yaml is the one its finished cells ran with. The distillation
# configs also keep the teacher's data config (``teacher_dataloader``), pinned alike.
_D2_LOADER = "{}.train._target_=detectron2.data.build_detection_train_loader"


def _with_d2_loader(methods: Dict[str, Tuple[str, Tuple[str, ...]]]) -> Dict[str, Tuple[str, Tuple[str, ...]]]:
    return {m: (stem, extra + (() if m in ("teacher", "student") else (_D2_LOADER.format("teacher_dataloader"),)))
            for m, (stem, extra) in methods.items()}


PROFILES: Dict[str, Profile] = {
    # 2 CPU cores: every cell is the family's synthetic config as it is (1000 steps of 4 images,
    # pretrained R18 backbones), evaluated once at the end on val (400 images).
    "quick": Profile(
        name="quick",
        families=("dino", "deformable_detr", "dab_detr"),
        # Every method over seeds 1-3, the plan; student and clockdistill run first (the
        # targets are judged on them), the other rows' seeds 2-3 as time allows (--list: the cells
        # still to run).
        seeds={"teacher": (42,), **{m: _SEEDS3 for m in METHODS if m != "teacher"}},
        config_pattern="configs/clock_distill/{family}_{stem}_kitti_synthetic.py",
        overrides=("train.eval_period=1000000", "train.checkpointer.period=250", "train.checkpointer.max_to_keep=2",
                   _D2_LOADER.format("dataloader")),
        methods=_with_d2_loader(_SYNTHETIC),
        description="synthetic KITTI (train 1000 / val 400, 640x192), 1000 steps of 4 images, R18 teacher -> R18x0.5 student",
    ),
    # A few iterations on a tiny set, for the test and a first look; never reported.
    "smoke": Profile(
        name="smoke",
        families=("dino",),
        seeds={"teacher": (42,), "student": (1,), "clockdistill": (1,)},
        config_pattern="configs/clock_distill/{family}_{stem}_kitti_synthetic.py",
        overrides=("train.max_iter=2", "train.eval_period=1000000", "train.checkpointer.period=1000", "train.log_period=1",
                   "train.init_checkpoint=", "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
                   "dataloader.test.num_workers=0"),
        methods={**_SYNTHETIC, "clockdistill": ("clockdistill", ("train.distill.warmup_iters=1",))},
        description="tiny synthetic set, 2 steps: plumbing only",
    ),
    # Paper scale on real KITTI with ImageNet backbones, for a GPU machine (never needed here):
    # R50 teacher (the family's KITTI config) -> R18 student, every method over 3 seeds.
    "full": Profile(
        name="full",
        families=FAMILIES,
        seeds={"teacher": (42,), **{m: _SEEDS3 for m in METHODS if m != "teacher"}},
        config_pattern="configs/clock_distill/{family}_{stem}.py",
        methods=_method_table({"teacher": "teacher", "student": "r18_student_kitti", "clockdistill": "r50_r18_kitti_clockdistill",
                               "kd_detr": "r50_r18_kitti_kd_detr", "feature_kd": "r50_r18_kitti_feature_kd"}),
        description="real KITTI, ImageNet R50 teacher -> R18 student, the families' KITTI schedules (GPU)",
    ),
}
_FULL_TEACHERS = {
    "dab_detr": "configs/dab_detr/dab_detr_r50_kitti_50ep.py",
    "deformable_detr": "configs/deformable_detr/deformable_detr_r50_kitti_50ep_two_stage.py",
    "dino": "configs/dino/dino_r50_kitti_12ep.py",
}


def _config_for(profile: Profile, family: str, method: str) -> Tuple[str, Tuple[str, ...]]:
    stem, extra = profile.methods[method]
    if profile.name == "full" and method == "teacher":
        return _FULL_TEACHERS[family], extra
    return profile.config_pattern.format(family=family, stem=stem), extra


def profile_cells(profile: Profile, only: Optional[Sequence[str]] = None) -> List[Cell]:
    """The profile's cells in run order: per family the teacher first (the others need it),
    then student, clockdistill and kd_detr seed by seed (the comparison the targets are about),
    then the ablations and feature KD seed by seed."""
    cells = []
    primary = ("student", "clockdistill", "kd_detr")
    for family in profile.families:
        plan = [("teacher", profile.teacher_seed)] if "teacher" in profile.seeds else []
        for group in (primary, tuple(m for m in METHODS if m not in primary and m != "teacher")):
            methods = [m for m in METHODS if m in group and m in profile.seeds]
            for s in sorted({s for m in methods for s in profile.seeds[m]}):
                plan += [(m, s) for m in methods if s in profile.seeds[m]]
        for method, seed in plan:
            config, extra = _config_for(profile, family, method)
            cells.append(Cell(profile.name, family, method, seed, config, tuple(profile.overrides) + tuple(extra)))
    if only:
        wanted = set(only)
        unknown = wanted - {c.name for c in cells}
        if unknown:
            raise ValueError(f"--only {sorted(unknown)}: not cells of profile {profile.name!r}; "
                             f"its cells are {[c.name for c in cells]}")
        cells = [c for c in cells if c.name in wanted]
    return cells


def git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {dev}, torch {torch.__version__}"


def weights_sha256(path: Path) -> str:
    """The first 16 hex digits of a checkpoint's sha256: which teacher a cell distilled from.
    Teacher checkpoints live outside git and are retrained on a new machine, and a retrained
    teacher need not equal the first (the code may have changed since), so cells record it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _teacher_weights(work: Path, profile: Profile, family: str) -> Path:
    return work / family / "teacher" / f"s{profile.teacher_seed}" / "model_final.pth"


def cell_dir(work: Path, cell: Cell) -> Path:
    return work / cell.family / (f"{cell.method}__{cell.tag}" if cell.tag else cell.method) / f"s{cell.seed}"


def cell_command(cell: Cell, work: Path, profile: Profile, teacher_work: Optional[Path] = None) -> List[str]:
    out = cell_dir(work, cell)
    cmd = [sys.executable, "tools/lazyconfig_train_net.py", "--config-file", cell.config]
    if (out / "last_checkpoint").exists():
        cmd.append("--resume")
    cmd += [*cell.overrides, f"train.seed={cell.seed}", f"train.output_dir={out}"]
    if cell.method not in ("teacher", "student"):
        cmd.append(f"model.teacher_weights={_teacher_weights(teacher_work or work, profile, cell.family)}")
    return cmd


def resolved_config_yaml(command: List[str], repo: Path) -> str:
    """The config.yaml that ``tools/lazyconfig_train_net.py`` would save for ``command`` (its
    config file and KEY=VALUE overrides), as text."""
    import tempfile

    from detectron2.config import LazyConfig

    from ..config import apply_overrides

    config = command[command.index("--config-file") + 1]
    overrides = [a for a in command[command.index("--config-file") + 2:] if a != "--resume"]
    cfg = apply_overrides(LazyConfig.load(str(repo / config)), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        LazyConfig.save(cfg, f"{tmp}/config.yaml")
        return Path(f"{tmp}/config.yaml").read_text()


def set_aside_stale_run(out: Path, command: List[str], repo: Path, log=print) -> Optional[Path]:
    """A cell resumes from the checkpoints in its folder; that is right only for a run of the same
    config. When the folder holds a run of another config (a default changed since, e.g. a loss
    weight; or ``--only`` reruns a finished cell after such a change), resuming would continue,
    or merely re-evaluate, the old model. Such a folder is renamed ``sSEED.stale-N`` (kept, not
    deleted) and the cell starts afresh. Returns the new name, or None when nothing was moved."""
    if not (out / "last_checkpoint").exists():
        return None
    saved = out / "config.yaml"
    if saved.is_file() and saved.read_text() == resolved_config_yaml(command, repo):
        return None
    why = "config.yaml differs" if saved.is_file() else "no config.yaml"
    n = 1
    while out.with_name(f"{out.name}.stale-{n}").exists():
        n += 1
    moved = out.rename(out.with_name(f"{out.name}.stale-{n}"))
    log(f"{out} held a run of another config ({why}): "
        f"moved to {moved.name}; the cell starts afresh")
    out.mkdir(parents=True)
    return moved


def read_results(output_dir: Path) -> Dict[str, float]:
    """The final KITTI report as flat keys: ``mAP_moderate_R40``, ``Car_easy_R40``, ..."""
    report = output_dir / "kitti_report.json"
    if not report.is_file():
        raise FileNotFoundError(f"{report} not found: the run did not finish its evaluation")
    res = json.loads(report.read_text())["results"]
    return {f"{cls}_{level}_R40": round(float(res[cls][level]["AP_R40"]), 4)
            for cls in (*CLASSES, "mAP") for level in ("easy", "moderate", "hard")}


def _metrics_rows(output_dir: Path) -> List[dict]:
    """The rows of detectron2's ``metrics.json`` (one JSON object per line) in ``output_dir``."""
    path = output_dir / "metrics.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sec_per_iter(output_dir: Path) -> Optional[float]:
    """The median of the logged per-step times (detectron2's ``time``, averaged over each log
    window): a pause inflates one window, not the median."""
    times = [r["time"] for r in _metrics_rows(output_dir) if "time" in r]
    return round(statistics.median(times), 4) if times else None


def eval_curve(output_dir: Path, key: str = "kitti/mAP/moderate/AP_R40") -> List[List[float]]:
    """``[[step, value], ...]``: every evaluation of the run in ``metrics.json`` (one at the end
    for the table's cells; one every ``train.eval_period`` steps for a schedule variant)."""
    if not (output_dir / "metrics.json").is_file():
        return []
    evals = [r for r in _metrics_rows(output_dir) if key in r]
    # detectron2's EvalHook logs a periodic evaluation at the index of the step it follows (step
    # - 1) and the final one, after training, at max_iter. A resumed run logs a step again: the
    # last entry wins.
    curve = {r["iteration"] + (i < len(evals) - 1): round(float(r[key]), 4) for i, r in enumerate(evals)}
    return [[step, curve[step]] for step in sorted(curve)]


def run_cell(cell: Cell, profile: Profile, results: Path, work: Path, repo: Path, env: Optional[dict] = None,
             log=print, teacher_work: Optional[Path] = None) -> dict:
    """Train and evaluate one cell; write and return its result JSON. ``teacher_work``: where
    the teacher cells live if not under ``work`` (tuning cells)."""
    out = cell_dir(work, cell)
    out.mkdir(parents=True, exist_ok=True)
    if cell.method not in ("teacher", "student"):
        teacher = _teacher_weights(teacher_work or work, profile, cell.family)
        if not teacher.is_file():
            raise FileNotFoundError(f"{cell.name} needs the teacher {teacher}: run the cell {cell.family}/teacher/"
                                    f"{profile.teacher_seed} first (it runs first in the profile's order)")
    set_aside_stale_run(out, cell_command(cell, work, profile, teacher_work), repo, log)
    cmd = cell_command(cell, work, profile, teacher_work)
    commit = git_commit(repo)  # the code the cell starts with
    log(f"[{cell.name}] {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    with open(out / "cell_log.txt", "a") as f:
        proc = subprocess.run(cmd, cwd=repo, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cell {cell.name} failed (exit {proc.returncode}); see {out / 'cell_log.txt'}")
    record = {
        "profile": cell.profile, "family": cell.family, "method": cell.method, "tag": cell.tag, "seed": cell.seed,
        "config": cell.config, "overrides": list(cell.overrides), "command": " ".join(["python", *cmd[1:]]),
        "commit": commit, "machine": machine(), "wall_s": round(wall, 1),
        "sec_per_iter": sec_per_iter(out), "results": read_results(out),
        "curve_mAP_moderate_R40": eval_curve(out),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    if cell.method == "teacher":
        record["weights_sha256"] = weights_sha256(out / "model_final.pth")
    elif cell.method != "student":
        record["teacher_sha256"] = weights_sha256(teacher)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{cell.file_stem}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    log(f"[{cell.name}] done in {wall / 60:.1f} min: mAP moderate {record['results']['mAP_moderate_R40']:.2f} -> {path}")
    return record


def _mean_std(v: List[float]) -> Tuple[float, float]:
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


KEYS = ("mAP_moderate_R40", "mAP_easy_R40", "mAP_hard_R40", "Car_moderate_R40", "Pedestrian_moderate_R40",
        "Cyclist_moderate_R40")


def _row_name(method: str, tag: str = "") -> str:
    """A table row: ``method``, or ``method[tag]`` for a tuning variant."""
    return f"{method}[{tag}]" if tag else method


def _split_row(row: str) -> Tuple[str, str]:
    """``(method, tag)`` of a row name made by ``_row_name``."""
    method, _, tag = row.partition("[")
    return method, tag[:-1]


def _row_order(rows) -> List[str]:
    """The methods in METHODS order, each followed by its tuning variants (``method[tag]``)."""
    return [r for m in METHODS for r in [m, *sorted(x for x in rows if x.startswith(m + "["))] if r in rows]


def aggregate(profile: Profile, cells_dir: Path, out_dir: Path, split: str = "val") -> dict:
    """``distill.json`` and ``results.md`` from every cell file of the profile present."""
    by = {}
    for path in sorted(cells_dir.glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("profile") != profile.name:
            continue
        row = _row_name(rec["method"], rec.get("tag", ""))
        by.setdefault(rec["family"], {}).setdefault(row, []).append(rec)
    table, targets = {}, {}
    for family in profile.families:
        for method in _row_order(by.get(family, {})):
            recs = sorted(by[family][method], key=lambda r: r["seed"])
            row = {"seeds": [r["seed"] for r in recs]}
            for k in KEYS:
                row[k] = [r["results"][k] for r in recs]
            spi = [r["sec_per_iter"] for r in recs if r.get("sec_per_iter")]
            row["sec_per_iter"] = round(statistics.median(spi), 4) if spi else None
            row["wall_s"] = [r["wall_s"] for r in recs]
            row["commits"] = sorted({r["commit"] for r in recs})
            teachers = {r.get("weights_sha256") or r.get("teacher_sha256") for r in recs} - {None}
            if teachers:
                # A teacher variant on tune (``teacher[TAG]``) is no cell's teacher: its own
                # weights are not listed among the family's teacher checkpoints.
                row["weights_sha256" if method.startswith("teacher[") else "teacher_sha256"] = sorted(teachers)
            table.setdefault(family, {})[method] = row
        rows = table.get(family, {})
        for method, row in rows.items():
            base = baseline_row(rows, method)
            if base:
                row["baseline"] = base
                row["paired_gain_moderate"] = paired_gains(rows[base], row)
        if "student" in rows and "clockdistill" in rows:
            targets[family] = judge_targets(rows)
        # A variant of the whole recipe (say a longer schedule) run for both rows is judged too.
        for tag in sorted({t for m, t in map(_split_row, rows) if m == "student" and t}):
            if _row_name("clockdistill", tag) in rows:
                targets[_row_name(family, tag)] = judge_targets({m: rows[_row_name(m, tag)] for m in ("student", "clockdistill", "kd_detr")
                                                                 if _row_name(m, tag) in rows})
    machines = sorted({r["machine"] for fam in by.values() for recs in fam.values() for r in recs})
    summary = {"profile": profile.name, "split": split, "description": profile.description, "machine": machines,
               "cpu_hours": round(sum(r["wall_s"] for fam in by.values() for recs in fam.values() for r in recs) / 3600, 2),
               "distill": table, "targets": targets}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "distill.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "results.md").write_text(results_markdown(summary))
    return summary


def baseline_row(rows: dict, method: str) -> Optional[str]:
    """The student row ``method`` is compared with: ``student[TAG]`` for ``METHOD[TAG]`` when the
    student ran that variant too (a change of the recipe, such as the schedule, applies to both),
    else ``student``; None for the student and teacher rows themselves or without a student."""
    name, tag = _split_row(method)
    if name == "teacher" or method == "student":
        return None
    if tag and name != "student" and _row_name("student", tag) in rows:
        return _row_name("student", tag)
    return "student" if "student" in rows else None


def paired_gains(student: dict, row: dict) -> dict:
    """Moderate mAP of ``row`` minus the student's on the *same* seed (same init and data order),
    for the seeds both rows have: the seed-to-seed spread of the student cancels out."""
    base = dict(zip(student["seeds"], student["mAP_moderate_R40"]))
    pairs = [(s, v - base[s]) for s, v in zip(row["seeds"], row["mAP_moderate_R40"]) if s in base]
    return {"seeds": [s for s, _ in pairs], "gains": [round(g, 4) for _, g in pairs]}


def judge_targets(rows: dict) -> dict:
    """Issue 11's targets for one family, each ``True``/``False``, or ``None`` while a row has
    fewer than 3 seeds (or is missing): the std of 1-2 seeds says nothing."""
    def stats(m):
        return _mean_std(rows[m]["mAP_moderate_R40"]) if m in rows else (None, None)

    n = {m: len(rows[m]["seeds"]) if m in rows else 0 for m in ("student", "clockdistill", "kd_detr")}
    (s_mean, s_std), (c_mean, c_std), (k_mean, _) = stats("student"), stats("clockdistill"), stats("kd_detr")
    enough = n["student"] >= 3 and n["clockdistill"] >= 3
    gain = c_mean - s_mean
    out = {"gain": round(gain, 4), "max_std": round(max(s_std, c_std), 4), "n": n,
           "gain_at_least_2": (gain >= 2.0) if enough else None,
           "gain_above_2_std": (gain > 2 * max(s_std, c_std)) if enough else None,
           "beats_kd_detr": (c_mean > k_mean) if enough and n["kd_detr"] >= 1 else None}
    if "teacher" in rows:
        out["teacher_margin"] = round(statistics.fmean(rows["teacher"]["mAP_moderate_R40"]) - s_mean, 4)
        out["teacher_at_least_5"] = out["teacher_margin"] >= 5.0 if n["student"] >= 3 else None
    return out


def results_markdown(summary: dict) -> str:
    variants = any("[" in m for rows in summary["distill"].values() for m in rows)
    lines = [f"Profile `{summary['profile']}`: {summary['description']}.",
             f"Machine: {'; '.join(summary['machine']) or '-'}. Wall time of the cells so far: {summary['cpu_hours']} h.",
             f"KITTI AP_R40 on {summary.get('split', 'val')}, mean ± std over the seeds (n); gain = mean - the student's mean; "
             "paired = mean ± std of (row - student) on the same seeds (same init and data order), seeds in brackets"
             + ("; a variant METHOD[TAG] is compared with student[TAG] where the student ran it too." if variants else "."), ""]
    head = "| family | method | n | mAP mod. | gain | paired | mAP easy | mAP hard | Car mod. | Ped. mod. | Cyc. mod. | s/iter |"
    lines += [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def ms(v, signed=False):
        m, s = _mean_std(v)
        m = f"{m:+.2f}" if signed else f"{m:.2f}"
        return f"{m} ± {s:.2f}" if len(v) > 1 else m

    verdicts, teachers = [], []
    for family, rows in summary["distill"].items():
        seen = sorted({h for r in rows.values() for h in r.get("teacher_sha256", ())})
        if len(seen) > 1:
            teachers.append(f"- {family}: " + "; ".join(f"{m} {', '.join(rows[m]['teacher_sha256'])}"
                                                         for m in _row_order(rows) if rows[m].get("teacher_sha256")))
        for method in _row_order(rows):
            r = rows[method]
            pg = r.get("paired_gain_moderate")
            paired = f"{ms(pg['gains'], signed=True)} [{','.join(map(str, pg['seeds']))}]" if pg and pg["gains"] else ""
            base = r.get("baseline")
            gain = f"{statistics.fmean(r['mAP_moderate_R40']) - statistics.fmean(rows[base]['mAP_moderate_R40']):+.2f}" if base else ""
            if base and base != "student":
                gain += f" (vs {base})"
            spi = f"{r['sec_per_iter']:.2f}" if r["sec_per_iter"] else "-"
            lines.append(f"| {family} | {method} | {len(r['seeds'])} | {ms(r['mAP_moderate_R40'])} | {gain} | {paired} | "
                         f"{ms(r['mAP_easy_R40'])} | {ms(r['mAP_hard_R40'])} | {ms(r['Car_moderate_R40'])} | "
                         f"{ms(r['Pedestrian_moderate_R40'])} | {ms(r['Cyclist_moderate_R40'])} | {spi} |")
        verdicts += [f"- {key}: " + _verdict(t) for key, t in summary.get("targets", {}).items()
                     if key == family or key.startswith(family + "[")]
    if teachers:
        lines += ["", "More than one teacher checkpoint (sha256 of model_final.pth; the teacher row's own, "
                  "or the one each distilled cell loaded; cells finished before this was recorded have none):",
                  *teachers]
    if verdicts:
        lines += ["", "Targets (clockdistill against student" + (", FAMILY[TAG]: the variant both ran" if variants else "")
                  + "; judged once both have 3 seeds):", *verdicts]
    return "\n".join(lines) + "\n"


def _verdict(t: dict) -> str:
    def mark(v):
        return "pending" if v is None else ("met" if v else "missed")

    parts = [f"gain {t['gain']:+.2f} ≥ +2: {mark(t['gain_at_least_2'])}",
             f"gain > 2 × max std ({2 * t['max_std']:.2f}): {mark(t['gain_above_2_std'])}",
             f"beats kd_detr: {mark(t['beats_kd_detr'])}"]
    if "teacher_margin" in t:
        parts.append(f"teacher ≥ student + 5 ({t['teacher_margin']:+.2f}): {mark(t['teacher_at_least_5'])}")
    return "; ".join(parts) + f" (seeds: student {t['n']['student']}, clockdistill {t['n']['clockdistill']})"
