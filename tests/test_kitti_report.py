"""KITTI reports (clock_distill.evaluation.report) and the tools/kitti_eval.py command line."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from clock_distill.evaluation.kitti import evaluate_kitti, write_kitti_result_file
from clock_distill.evaluation.report import compare_reports, kitti_markdown_table, write_kitti_report

REPO = Path(__file__).resolve().parents[1]
DIFFS = ("easy", "moderate", "hard")
BOX = {"Car": [100.0, 100.0, 200.0, 150.0], "Pedestrian": [400.0, 100.0, 430.0, 160.0],
       "Cyclist": [600.0, 100.0, 640.0, 150.0]}


def label_objects(n=80, occluded_car_every=0):
    """n images with one easy Car, Pedestrian and Cyclist each (as read_kitti_label_file gives)."""
    images = []
    for k in range(n):
        objs = []
        for c, box in BOX.items():
            occ = 2 if (c == "Car" and occluded_car_every and k % occluded_car_every == 0) else 0
            objs.append({"type": c, "truncated": 0.0, "occluded": occ, "alpha": 0.0, "bbox": list(box),
                         "dimensions": [1.5, 1.6, 3.9], "location": [1.0, 1.7, 20.0], "rotation_y": 0.0})
        images.append(objs)
    return images


def annos(images, with_fp=False):
    """GT annos and detections that find everything (scores decreasing with the image index),
    plus, with ``with_fp``, one top-scored Car FP in image 0."""
    gts, dts = [], []
    for k, objs in enumerate(images):
        names = np.array([o["type"] for o in objs])
        boxes = np.array([o["bbox"] for o in objs])
        gts.append({"name": names, "bbox": boxes, "truncated": np.zeros(len(objs)),
                    "occluded": np.array([o["occluded"] for o in objs])})
        d = {"name": names, "bbox": boxes, "score": np.full(len(objs), (90 - k) / 100)}
        if with_fp and k == 0:
            d = {"name": np.append(names, "Car"), "bbox": np.vstack([boxes, [300, 100, 400, 150]]),
                 "score": np.append(d["score"], 0.95)}
        dts.append(d)
    return gts, dts


def load_cli():
    spec = importlib.util.spec_from_file_location("kitti_eval_cli", REPO / "tools" / "kitti_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------
def test_write_kitti_report_files_and_numbers(tmp_path):
    res, curves = evaluate_kitti(*annos(label_objects(), with_fp=True), return_curves=True)
    car_mod = res["Car"]["moderate"]["AP_R40"]
    assert car_mod == pytest.approx(100 * 80 / 81)  # one FP above every TP
    paths = write_kitti_report(res, tmp_path / "rep", curves, title="unit test")
    assert set(paths) == {"markdown", "json", "pr_Car", "pr_Pedestrian", "pr_Cyclist"}
    md = paths["markdown"].read_text()
    assert md.startswith("# unit test")
    assert f"| Car | {car_mod:.2f} | {car_mod:.2f} | {car_mod:.2f} |" in md  # R40 easy/mod/hard
    assert "| Pedestrian | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | 80 |" in md
    mAP = res["mAP"]["moderate"]["AP_R40"]
    assert f"{mAP:.2f}" in md and "pr_Car.png" in md
    payload = json.loads(paths["json"].read_text())
    assert payload["results"]["Car"]["moderate"]["AP_R40"] == pytest.approx(car_mod)
    assert len(payload["pr_curves"]["Cyclist"]["hard"]["precision"]) == 41
    from matplotlib.image import imread

    for c in BOX:
        png = paths[f"pr_{c}"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.01  # not a blank canvas


def test_write_kitti_report_without_curves(tmp_path):
    res = evaluate_kitti(*annos(label_objects()))
    paths = write_kitti_report(res, tmp_path)
    assert set(paths) == {"markdown", "json"}
    assert not list(tmp_path.glob("*.png"))
    assert "| **mAP** | 100.00 |" in paths["markdown"].read_text()
    with pytest.raises(KeyError, match="has no 'AP_R11'"):
        write_kitti_report({"Car": {d: {"AP_R40": 1.0} for d in DIFFS}}, tmp_path / "bad")


def test_compare_reports(tmp_path):
    def fake(car, ped, cyc):
        r = {c: {d: {"AP_R40": v, "AP_R11": v} for d in DIFFS}
             for c, v in (("Car", car), ("Pedestrian", ped), ("Cyclist", cyc))}
        r["mAP"] = {d: {"AP_R40": (car + ped + cyc) / 3, "AP_R11": 0.0} for d in DIFFS}
        return r

    text = compare_reports([("teacher", fake(90.0, 70.0, 60.0)), ("student", fake(80.0, 60.0, 50.0)),
                            ("distilled", fake(85.5, 61.0, 58.25))], tmp_path / "cmp" / "table.md")
    assert (tmp_path / "cmp" / "table.md").read_text() == text
    assert "| class | teacher | student | Δ student | distilled | Δ distilled |" in text
    assert "| Car | 90.00 | 80.00 | -10.00 | 85.50 | -4.50 |" in text
    assert "| Cyclist | 60.00 | 50.00 | -10.00 | 58.25 | -1.75 |" in text
    assert "| **mAP** | 73.33 | 63.33 | -10.00 | 68.25 | -5.08 |" in text
    text = compare_reports([("a", fake(1, 2, 3))], tmp_path / "one.md", difficulty="hard", metric="AP_R11")
    assert "AP_R11 at Hard" in text
    with pytest.raises(ValueError, match="difficulty"):
        compare_reports([("a", fake(1, 2, 3))], tmp_path / "x.md", difficulty="medium")


def test_markdown_table_shape():
    res = evaluate_kitti(*annos(label_objects()))
    lines = kitti_markdown_table(res).splitlines()
    assert len(lines) == 2 + 4  # header, rule, 3 classes, mAP
    assert lines[0].count("|") == 8


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------
def write_dirs(tmp_path, images, with_fp=False, skip_result=()):
    from clock_distill.data.kitti import format_kitti_label_line

    gt_dir, res_dir = tmp_path / "label_2", tmp_path / "results"
    gt_dir.mkdir()
    res_dir.mkdir()
    _, dts = annos(images, with_fp)
    for k, objs in enumerate(images):
        (gt_dir / f"{k:06d}.txt").write_text("".join(format_kitti_label_line(o) + "\n" for o in objs))
        if k not in skip_result:
            write_kitti_result_file(res_dir / f"{k:06d}.txt", dts[k])
    return gt_dir, res_dir


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    cli = load_cli()
    gt_dir, res_dir = write_dirs(tmp_path, label_objects(occluded_car_every=2))
    split = tmp_path / "val.txt"
    split.write_text("".join(f"{k:06d}\n" for k in range(80)))
    rc = cli.main([str(gt_dir), str(res_dir), "--split", str(split), "--json", str(tmp_path / "o.json"),
                   "--report", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "80 images, 240 labelled objects, 240 detections" in out
    # Car: half the cars are occlusion level 2, so Easy/Moderate have 40 objects (40
    # thresholds, AP_R40 = 39/40) and Hard all 80 (AP 100); see test_kitti_metric.
    car_line = next(ln for ln in out.splitlines() if ln.startswith("Car"))
    assert car_line.split()[1:4] == ["97.5000", "97.5000", "100.0000"]
    saved = json.loads((tmp_path / "o.json").read_text())
    assert saved["Car"]["hard"]["AP_R40"] == 100.0
    assert (tmp_path / "rep" / "kitti_report.md").is_file() and (tmp_path / "rep" / "pr_Car.png").is_file()


def test_cli_missing_result_file(tmp_path, capsys):
    cli = load_cli()
    gt_dir, res_dir = write_dirs(tmp_path, label_objects(), skip_result=(3,))
    rc = cli.main([str(gt_dir), str(res_dir)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "1 result file(s) missing" in err and str(res_dir / "000003.txt") in err
    rc = cli.main([str(gt_dir), str(res_dir), "--allow-missing", "--classes", "Car"])
    cap = capsys.readouterr()
    assert rc == 0 and "000003.txt" in cap.err
    assert "Car" in cap.out


def test_cli_errors_name_the_path(tmp_path, capsys):
    cli = load_cli()
    gt_dir, res_dir = write_dirs(tmp_path, label_objects(5))
    assert cli.main([str(gt_dir), str(tmp_path / "nope")]) == 1
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert cli.main([str(gt_dir), str(res_dir), "--split", str(tmp_path / "none.txt")]) == 1
    assert "none.txt" in capsys.readouterr().err
    # a result line without the score (15 fields)
    bad = res_dir / "000002.txt"
    bad.write_text(" ".join(bad.read_text().splitlines()[0].split()[:15]) + "\n")
    assert cli.main([str(gt_dir), str(res_dir)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "16th" in err
    # a malformed line: the reader's error names file and line
    bad.write_text("Car 0 0\n")
    assert cli.main([str(gt_dir), str(res_dir)]) == 1
    assert f"{bad}:1" in capsys.readouterr().err


def test_comparison_report_holds_the_numbers_of_its_reports(tmp_path):
    from clock_distill.evaluation.report import load_kitti_report, write_comparison_report

    clean = evaluate_kitti(*annos(label_objects()), return_curves=True)
    noisy = evaluate_kitti(*annos(label_objects(), with_fp=True), return_curves=True)
    for name, (res, curves) in (("alone", noisy), ("distilled", clean)):
        write_kitti_report(res, tmp_path / name, curves)
    runs = [(n, *load_kitti_report(tmp_path / n / "kitti_report.json")) for n in ("alone", "distilled")]
    pic = tmp_path / "pics" / "x.png"
    pic.parent.mkdir()
    pic.write_bytes(b"\x89PNG\r\n\x1a\n")
    path = write_comparison_report(tmp_path / "demo", runs, {"alone": {"params (M)": 3.11, "ms / image": 80.5},
                                                              "distilled": {"params (M)": 3.11, "ms / image": 79.0}},
                                   [pic], title="t", notes=["a note"])
    md = path.read_text()
    car_alone, car_clean = noisy[0]["Car"]["moderate"]["AP_R40"], clean[0]["Car"]["moderate"]["AP_R40"]
    assert car_alone < car_clean == pytest.approx(100.0)
    assert f"| Car | {car_alone:.2f} | {car_clean:.2f} | {car_clean - car_alone:+.2f} |" in md
    assert "| alone | 3.11 | 80.50 |" in md and "a note" in md and "](../pics/x.png)" in md
    assert (tmp_path / "demo" / "pr_compare_Car.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="not been evaluated"):
        load_kitti_report(tmp_path / "missing" / "kitti_report.json")
