"""tools/benchmark.py distill: the smoke profile (2 steps of DINO's teacher, student and
CLoCKDistill on a tiny set) writes well-formed cells and distill.json; finished cells are
skipped; --only names cells. No timing or AP assertions (those are the benchmark's job)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clock_distill.evaluation.distill_bench import KEYS, PROFILES, profile_cells

REPO = Path(__file__).resolve().parents[1]


def _bench(*args, timeout=600):
    return subprocess.run([sys.executable, "tools/benchmark.py", "distill", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_smoke_profile_writes_cells_and_aggregate(tmp_path):
    res, work = tmp_path / "res", tmp_path / "work"
    proc = _bench("--profile", "smoke", "--results", str(res), "--work", str(work))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cells = sorted(p.name for p in (res / "cells").glob("*.json"))
    assert cells == ["dino__clockdistill__s1.json", "dino__student__s1.json", "dino__teacher__s42.json"]
    cell = json.loads((res / "cells" / "dino__clockdistill__s1.json").read_text())
    for k in ("config", "seed", "commit", "wall_s", "sec_per_iter", "results", "command", "machine"):
        assert k in cell
    assert cell["seed"] == 1 and cell["config"] == "configs/clock_distill/dino_clockdistill_kitti_synthetic.py"
    assert "model.teacher_weights=" in cell["command"] and "train.seed=1" in cell["command"]
    assert set(KEYS) <= set(cell["results"]) and all(0 <= v <= 100 for v in cell["results"].values())
    # The distilled cell names the teacher checkpoint it loaded: the teacher cell's own.
    teacher = json.loads((res / "cells" / "dino__teacher__s42.json").read_text())
    assert len(teacher["weights_sha256"]) == 16 and cell["teacher_sha256"] == teacher["weights_sha256"]
    assert "teacher_sha256" not in json.loads((res / "cells" / "dino__student__s1.json").read_text())

    summary = json.loads((res / "distill.json").read_text())
    assert summary["profile"] == "smoke"
    rows = summary["distill"]["dino"]
    assert set(rows) == {"teacher", "student", "clockdistill"}
    for row in rows.values():
        assert len(row["seeds"]) == 1
        for k in KEYS:
            assert len(row[k]) == 1 and isinstance(row[k][0], float)
        assert "sec_per_iter" in row
    assert rows["clockdistill"]["paired_gain_moderate"]["seeds"] == [1]
    assert summary["targets"]["dino"]["gain_at_least_2"] is None  # 1 seed: not judged
    md = (res / "results.md").read_text()
    assert "| dino | clockdistill | 1 |" in md and "Targets" in md

    # A second run skips the finished cells (and only re-aggregates).
    again = _bench("--profile", "smoke", "--results", str(res), "--work", str(work), timeout=120)
    assert again.returncode == 0 and "3 done, 0 to run" in again.stdout, again.stdout[-2000:]


def test_only_rejects_unknown_cells_and_lists():
    proc = _bench("--profile", "quick", "--only", "dino/clockdistill/9", "--list", timeout=120)
    assert proc.returncode == 2 and "dino/clockdistill/9" in proc.stderr and "dino/clockdistill/1" in proc.stderr


def test_quick_profile_shape():
    cells = profile_cells(PROFILES["quick"])
    names = {c.name for c in cells}
    for fam in ("dab_detr", "deformable_detr", "dino"):
        assert f"{fam}/teacher/42" in names
        for m in ("student", "clockdistill", "lcmd_only", "tcld_only", "kd_detr", "feature_kd"):
            assert {f"{fam}/{m}/{s}" for s in (1, 2, 3)} <= names
        fam_cells = [c for c in cells if c.family == fam]
        assert fam_cells[0].method == "teacher"  # teachers run first: the others need them
    lcmd = next(c for c in cells if c.name == "dino/lcmd_only/1")
    assert "model.logit_loss=None" in lcmd.overrides and lcmd.config.endswith("dino_clockdistill_kitti_synthetic.py")
    for c in cells:
        assert (REPO / c.config).is_file(), c.config
    for c in profile_cells(PROFILES["full"]):
        assert (REPO / c.config).is_file(), c.config


def test_tuning_cells_evaluate_on_tune_only():
    refused = _bench("--profile", "quick", "--only", "dino/clockdistill/1", "--set", "model.memory_loss.weight=10", "--list", timeout=120)
    assert refused.returncode == 2 and "--split tune" in refused.stderr
    untagged = _bench("--profile", "quick", "--split", "tune", "--only", "dino/clockdistill/1", "--set", "x=1", "--list", timeout=120)
    assert untagged.returncode == 2 and "--tag" in untagged.stderr
    ok = _bench("--profile", "quick", "--split", "tune", "--only", "dino/clockdistill/1", "--set", "model.memory_loss.weight=10",
                "--tag", "w10", "--list", timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "dataloader.test.dataset.names=kitti_synthetic_tune model.memory_loss.weight=10" in ok.stdout
    # A teacher runs on tune only when named: a teacher variant (here a longer schedule).
    teacher = _bench("--profile", "quick", "--split", "tune", "--only", "dab_detr/teacher/42", "--set", "train.max_iter=4000",
                     "--tag", "sched4k", "--list", timeout=120)
    assert teacher.returncode == 0, teacher.stderr
    assert "dab_detr/teacher/42" in teacher.stdout and "kitti_synthetic_tune train.max_iter=4000" in teacher.stdout
    everything = _bench("--profile", "quick", "--split", "tune", "--list", timeout=120)
    assert everything.returncode == 0 and "dino/student/1" in everything.stdout and "/teacher/" not in everything.stdout


def test_readme_splice(tmp_path):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from benchmark import splice_results
    finally:
        sys.path.pop(0)
    readme, table = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text("intro\n<!-- results:quick -->\nold\n<!-- /results:quick -->\nafter\n")
    table.write_text("| a |\n|---|\n")
    splice_results(readme, "quick", table)
    assert readme.read_text() == "intro\n<!-- results:quick -->\n| a |\n|---|\n<!-- /results:quick -->\nafter\n"
    with pytest.raises(SystemExit, match="markers"):
        splice_results(readme, "full", table)


def _row(seeds, vals):
    return {"seeds": list(seeds), "mAP_moderate_R40": list(vals)}


def test_paired_gains_use_the_same_seeds_and_targets_wait_for_three_seeds():
    from clock_distill.evaluation.distill_bench import judge_targets, paired_gains

    student = _row((1, 2, 3), (40.0, 50.0, 45.0))
    # Seed 4 has no student partner; the student's seed spread cancels in the pairs.
    distilled = _row((1, 3, 4), (43.0, 48.5, 99.0))
    assert paired_gains(student, distilled) == {"seeds": [1, 3], "gains": [3.0, 3.5]}

    pending = judge_targets({"student": student, "clockdistill": _row((1, 2), (43.0, 53.0))})
    assert pending["gain_at_least_2"] is None and pending["gain_above_2_std"] is None and pending["beats_kd_detr"] is None

    rows = {"teacher": _row((42,), (70.0,)), "student": _row((1, 2, 3), (44.0, 45.0, 46.0)),
            "clockdistill": _row((1, 2, 3), (47.0, 48.0, 49.0)), "kd_detr": _row((1,), (48.5,))}
    t = judge_targets(rows)
    assert t["gain"] == 3.0 and t["max_std"] == 1.0
    assert t["gain_at_least_2"] is True and t["gain_above_2_std"] is True  # 3 > 2 x 1
    assert t["beats_kd_detr"] is False  # 48.0 < 48.5
    assert t["teacher_margin"] == 25.0 and t["teacher_at_least_5"] is True
    rows["clockdistill"] = _row((1, 2, 3), (45.0, 48.0, 51.0))  # same mean, std 3: the gain is noise
    assert judge_targets(rows)["gain_above_2_std"] is False


def _cell_writer(cells: Path):
    """``cell(method, seed, mAP, tag=..., **extra)`` writes a finished DINO cell of profile quick."""
    cells.mkdir()

    def cell(method, seed, mAP, tag="", **extra):
        rec = {"profile": "quick", "family": "dino", "method": method, "tag": tag, "seed": seed, "wall_s": 60.0,
               "sec_per_iter": 1.0, "commit": "abc", "machine": "m", "results": {k: mAP for k in KEYS}, **extra}
        (cells / f"dino__{method}{'__' + tag if tag else ''}__s{seed}.json").write_text(json.dumps(rec))

    return cell


def test_a_variant_both_rows_ran_is_compared_with_its_own_student(tmp_path):
    from clock_distill.evaluation.distill_bench import aggregate

    cell = _cell_writer(tmp_path / "cells")
    for seed, (s, s2k, c2k) in enumerate([(40.0, 50.0, 53.0), (42.0, 51.0, 55.0), (44.0, 52.0, 54.0)], start=1):
        cell("student", seed, s)
        cell("student", seed, s2k, tag="sched2k")
        cell("clockdistill", seed, c2k, tag="sched2k")
    cell("clockdistill", 1, 45.0, tag="lcmd_w100")  # a variant of the distillation only
    rows = aggregate(PROFILES["quick"], tmp_path / "cells", tmp_path, split="tune")["distill"]["dino"]
    # The longer schedule's distilled rows against the longer schedule's student, seed by seed.
    assert rows["clockdistill[sched2k]"]["baseline"] == "student[sched2k]"
    assert rows["clockdistill[sched2k]"]["paired_gain_moderate"] == {"seeds": [1, 2, 3], "gains": [3.0, 4.0, 2.0]}
    assert rows["clockdistill[lcmd_w100]"]["baseline"] == "student"
    assert rows["clockdistill[lcmd_w100]"]["paired_gain_moderate"]["gains"] == [5.0]
    assert rows["student[sched2k]"]["baseline"] == "student"  # the variant of the student itself
    summary = json.loads((tmp_path / "distill.json").read_text())
    t = summary["targets"]["dino[sched2k]"]
    assert t["gain"] == 3.0 and t["max_std"] == 1.0 and t["gain_above_2_std"] is True
    assert "dino" not in summary["targets"]  # no plain clockdistill row
    md = (tmp_path / "results.md").read_text()
    assert "| dino | clockdistill[sched2k] | 3 | 54.00 ± 1.00 | +3.00 (vs student[sched2k]) | +3.00 ± 1.00 [1,2,3] |" in md
    assert "- dino[sched2k]: gain +3.00 ≥ +2: met; gain > 2 × max std (2.00): met" in md


def test_cells_from_different_teacher_checkpoints_are_flagged(tmp_path):
    from clock_distill.evaluation.distill_bench import aggregate

    cell = _cell_writer(tmp_path / "cells")
    cell("teacher", 42, 60.0, weights_sha256="aaaa")
    cell("student", 1, 40.0)
    cell("clockdistill", 1, 44.0, teacher_sha256="aaaa")
    summary = aggregate(PROFILES["quick"], tmp_path / "cells", tmp_path)
    assert summary["distill"]["dino"]["clockdistill"]["teacher_sha256"] == ["aaaa"]
    assert "More than one teacher" not in (tmp_path / "results.md").read_text()

    # A teacher variant (on tune) is no cell's teacher: its weights are its own, not flagged.
    cell("teacher", 7, 61.0, weights_sha256="cccc", tag="sched4k")
    summary = aggregate(PROFILES["quick"], tmp_path / "cells", tmp_path)
    assert summary["distill"]["dino"]["teacher[sched4k]"]["weights_sha256"] == ["cccc"]
    assert "More than one teacher" not in (tmp_path / "results.md").read_text()

    # A teacher retrained on a new machine differs; the cells distilled from it say so.
    cell("clockdistill", 2, 45.0, teacher_sha256="bbbb")
    summary = aggregate(PROFILES["quick"], tmp_path / "cells", tmp_path)
    assert summary["distill"]["dino"]["clockdistill"]["teacher_sha256"] == ["aaaa", "bbbb"]
    md = (tmp_path / "results.md").read_text()
    assert "More than one teacher" in md and "- dino: teacher aaaa; clockdistill aaaa, bbbb" in md


def test_eval_curve_and_sec_per_iter_read_one_metrics_file(tmp_path):
    from clock_distill.evaluation.distill_bench import eval_curve, sec_per_iter

    key = "kitti/mAP/moderate/AP_R40"
    rows = [{"iteration": 479, "time": 0.5}, {"iteration": 499, key: 1.0}, {"iteration": 519, "total_loss": 3.0, "time": 0.9},
            {"iteration": 539, "time": 0.7},
            {"iteration": 999, key: 2.0},  # the run stopped after step 1000 and resumed from its checkpoint at 750
            {"iteration": 999, key: 2.5}, {"iteration": 1499, key: 4.0}, {"iteration": 2000, key: 5.123456}]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert eval_curve(tmp_path) == [[500, 1.0], [1000, 2.5], [1500, 4.0], [2000, 5.1235]]
    assert eval_curve(tmp_path / "missing") == []
    # The median of the logged windows; the evaluation rows carry no time.
    assert sec_per_iter(tmp_path) == 0.7
    # A finished cell always has metrics.json, so its absence is an error, not a missing number.
    with pytest.raises(FileNotFoundError):
        sec_per_iter(tmp_path / "missing")


def test_a_cell_folder_of_another_config_is_set_aside_not_resumed(tmp_path):
    from clock_distill.evaluation.distill_bench import resolved_config_yaml, set_aside_stale_run

    out = tmp_path / "s1"
    base = [sys.executable, "tools/lazyconfig_train_net.py", "--config-file",
            "configs/clock_distill/dino_clockdistill_kitti_synthetic.py", "train.seed=1", f"train.output_dir={out}"]
    out.mkdir()
    (out / "last_checkpoint").write_text("model_final.pth")
    (out / "config.yaml").write_text(resolved_config_yaml(base, REPO))
    # The same config (with or without --resume): resumed, nothing moved.
    assert set_aside_stale_run(out, base[:4] + ["--resume"] + base[4:], REPO, log=lambda *a: None) is None
    assert (out / "last_checkpoint").is_file()
    # A default changed since the folder's run (here as an override): the old run is kept aside,
    # the cell starts in an empty folder.
    logs = []
    moved = set_aside_stale_run(out, base + ["model.memory_loss.weight=7"], REPO, log=logs.append)
    assert moved == tmp_path / "s1.stale-1" and (moved / "last_checkpoint").is_file()
    assert out.is_dir() and not any(out.iterdir())
    assert "config.yaml differs" in logs[0] and "s1.stale-1" in logs[0]


def test_quick_cells_pin_detectron2s_loader_where_the_configs_resume_exactly(tmp_path):
    """The synthetic configs train with the resumable loader; the `quick` table's cells keep
    detectron2's, the one its first cells ran with (student and distiller, teacher data too)."""
    from clock_distill.evaluation.distill_bench import cell_command, resolved_config_yaml

    quick = PROFILES["quick"]
    for name in ("dino/student/1", "dino/clockdistill/1"):
        cell = profile_cells(quick, [name])[0]
        cmd = cell_command(cell, tmp_path, quick)
        pinned = resolved_config_yaml(cmd, REPO)
        as_configured = resolved_config_yaml(cmd[:cmd.index("--config-file") + 2], REPO)
        assert "_target_: clock_distill.data.resumable.build_resumable_train_loader" in as_configured, name
        assert "resumable" not in pinned, name
        loaders = pinned.count("_target_: detectron2.data.build_detection_train_loader")
        assert loaders == (1 if cell.method == "student" else 2), name  # the distiller's teacher_dataloader too
