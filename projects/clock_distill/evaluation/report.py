"""KITTI 2D AP reports: a markdown table, a JSON file, precision-recall plots, and a side-by-side
comparison of several models (e.g. teacher / student / distilled student).

The input is what :func:`clock_distill.evaluation.kitti.evaluate_kitti` returns; the PR curves
are its second return value with ``return_curves=True``. matplotlib is imported only inside
:func:`write_kitti_report`, and only when there are curves to plot.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .kitti import DIFFICULTIES, to_jsonable

__all__ = ["kitti_markdown_table", "write_kitti_report", "compare_reports", "load_kitti_report",
           "write_comparison_report"]

METRICS = ("AP_R40", "AP_R11")


def _rows(results: Mapping) -> list[str]:
    """Class rows in the results' order, mAP last."""
    return [k for k in results if k != "mAP"] + (["mAP"] if "mAP" in results else [])


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def kitti_markdown_table(results: Mapping, curves: Mapping | None = None) -> str:
    """Markdown table: one row per class (mAP last), Easy/Moderate/Hard for R40 then R11.

    With ``curves`` a last column gives the number of valid (Moderate) ground-truth objects.
    """
    head = ["class"] + [f"{m.split('_')[1]} {d}" for m in METRICS for d in DIFFICULTIES]
    if curves is not None:
        head.append("GT (moderate)")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in _rows(results):
        cells = [f"**{r}**" if r == "mAP" else r]
        cells += [_fmt(results[r][d][m]) for m in METRICS for d in DIFFICULTIES]
        if curves is not None:
            cells.append(str(curves[r]["moderate"]["num_gt"]) if r in curves else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)



def _pr_figure(path: Path, title: str, curves: Sequence[tuple[Mapping, str, dict]]) -> None:
    """One precision-recall plot: ``curves`` of (devkit curve, label, line style) -> PNG."""
    # The Figure API renders through Agg without pyplot, so no global backend is switched.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for cur, label, style in curves:
        ax.plot(np.asarray(cur["recall_points"]), np.asarray(cur["precision"]), label=label, **style)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _plot_pr(path: Path, cls: str, per_diff: Mapping, results: Mapping) -> None:
    styles = {"easy": ("tab:green", 1.5), "moderate": ("tab:blue", 2.5), "hard": ("tab:red", 1.5)}
    curves = [(per_diff[d], f"{d.capitalize()} (AP_R40 {_fmt(results[cls][d]['AP_R40'])})",
               {"color": styles[d][0], "lw": styles[d][1]}) for d in DIFFICULTIES if d in per_diff]
    _pr_figure(path, f"{cls}: Moderate AP_R40 {_fmt(results[cls]['moderate']['AP_R40'])}", curves)


def write_kitti_report(results: Mapping, output_dir: str | os.PathLike,
                       pr_curves: Mapping | None = None,
                       title: str = "KITTI 2D object detection (official AP)") -> dict[str, Path]:
    """Write ``kitti_report.md``, ``kitti_report.json`` and, with ``pr_curves``, ``pr_<Class>.png``.

    Args:
        results: ``evaluate_kitti`` output (``{cls: {difficulty: {"AP_R40", "AP_R11"}}, "mAP": ...}``).
        output_dir: created if needed.
        pr_curves: ``evaluate_kitti(..., return_curves=True)[1]``: per class and difficulty,
            ``precision`` (41,) at ``recall_points`` (41,). One PNG per class shows the Easy,
            Moderate (bold; it ranks) and Hard curves. Without curves no PNG is written.
        title: first heading of the markdown file.

    Returns:
        ``{"markdown": path, "json": path, "pr_<Class>": path, ...}``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for r in _rows(results):
        for d in DIFFICULTIES:
            for m in METRICS:
                if m not in results[r].get(d, {}):
                    raise KeyError(f"results[{r!r}][{d!r}] has no {m!r}; expected evaluate_kitti output")
    written: dict[str, Path] = {}
    md = [f"# {title}", "",
          "Official KITTI 2D AP (devkit `evaluate_object.cpp` rules), in percent. R40: 40 recall "
          "points, recall 0 excluded (the KITTI benchmark since 2019); R11: the original 11-point "
          "AP. Min IoU: Car 0.7, Pedestrian 0.5, Cyclist 0.5. Moderate ranks.", "",
          kitti_markdown_table(results, pr_curves), ""]
    if pr_curves is not None:
        md.append("Precision-recall curves (devkit curves: precision at recall i/40):")
        md.append("")
        for cls in _rows(results):
            if cls == "mAP" or cls not in pr_curves:
                continue
            png = out / f"pr_{cls}.png"
            _plot_pr(png, cls, pr_curves[cls], results)
            written[f"pr_{cls}"] = png
            md.append(f"![{cls} PR]({png.name})")
        md.append("")
    written["markdown"] = out / "kitti_report.md"
    written["markdown"].write_text("\n".join(md))
    payload = {"title": title, "results": to_jsonable(results)}
    if pr_curves is not None:
        keys = ("recall_points", "precision", "recall", "thresholds", "num_gt")
        payload["pr_curves"] = {
            c: {d: {k: to_jsonable(v[k]) for k in keys if k in v} for d, v in per.items()}
            for c, per in pr_curves.items()
        }
    written["json"] = out / "kitti_report.json"
    written["json"].write_text(json.dumps(payload, indent=2) + "\n")
    return written


def compare_reports(entries: Sequence[tuple[str, Mapping]], output_path: str | os.PathLike | None,
                    difficulty: str = "moderate", metric: str = "AP_R40") -> str:
    """Side-by-side markdown table of several ``evaluate_kitti`` results, deltas to the first.

    Args:
        entries: ``[(name, results), ...]``, e.g. teacher, student, distilled student. The first
            one is the reference for the deltas.
        output_path: the markdown file to write (parent created if needed), or None.
        difficulty, metric: which number to compare (default Moderate AP_R40, the ranking one).

    Returns:
        The markdown string that was written.
    """
    if not entries:
        raise ValueError("compare_reports needs at least one (name, results) entry")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    rows: list[str] = []
    for _, res in entries:
        for r in _rows(res):
            if r != "mAP" and r not in rows:
                rows.append(r)
    rows.append("mAP")
    base_name, base = entries[0]

    def val(res, r):
        if r not in res:
            return None
        return res[r][difficulty][metric]

    head = ["class", base_name]
    for name, _ in entries[1:]:
        head += [name, f"Δ {name}"]
    lines = [f"{metric} at {difficulty.capitalize()} (Δ: difference to {base_name})", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        b = val(base, r)
        cells = [f"**{r}**" if r == "mAP" else r, "—" if b is None else _fmt(b)]
        for _, res in entries[1:]:
            v = val(res, r)
            cells.append("—" if v is None else _fmt(v))
            cells.append("—" if (v is None or b is None) else f"{v - b:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if output_path is not None:
        path = Path(output_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return text


def load_kitti_report(path: str | os.PathLike) -> tuple[dict, dict | None]:
    """``(results, pr_curves)`` from a ``kitti_report.json`` (curves None if it has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"KITTI report not found: {path} (the run has not been evaluated)")
    payload = json.loads(path.read_text())
    return payload["results"], payload.get("pr_curves")


def _plot_pr_comparison(path: Path, cls: str, runs, difficulty: str) -> None:
    curves = [(cv[cls][difficulty], f"{name} (AP_R40 {_fmt(res[cls][difficulty]['AP_R40'])})", {"lw": 2})
              for name, res, cv in runs if cv and cls in cv and difficulty in cv[cls]]
    _pr_figure(path, f"{cls}, {difficulty.capitalize()}", curves)


def write_comparison_report(output_dir: str | os.PathLike, runs: Sequence[tuple[str, Mapping, Mapping | None]],
                            details: Mapping[str, Mapping] | None = None, pictures: Sequence[str | os.PathLike] = (),
                            title: str = "Comparison", notes: Sequence[str] = ()) -> Path:
    """One markdown report of several evaluated models, side by side.

    Args:
        runs: ``[(name, results, pr_curves), ...]`` (:func:`load_kitti_report`); the first is
            the reference of the deltas (e.g. the student alone, so that a distilled student's
            delta is the gain of distillation).
        details: per name, more columns for the model table, e.g. ``{"params (M)": 3.1,
            "ms / image": 45.0}``.
        pictures: PNGs to show at the end (paths; linked relative to the report).
        notes: lines written under the title (e.g. the commands and the wall time).

    Writes ``report.md`` and ``pr_compare_<Class>.png`` (Moderate curves of every run) into
    ``output_dir``; returns the report's path.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", "", *notes, ""]
    for diff in DIFFICULTIES:
        md += [f"## {diff.capitalize()}", "", compare_reports([(n, r) for n, r, _ in runs], None, difficulty=diff).rstrip(), ""]
    if details:
        cols = list(dict.fromkeys(k for v in details.values() for k in v))
        md += ["## Models", "", "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for name, _, _ in runs:
            row = details.get(name, {})
            md.append(f"| {name} | " + " | ".join(_cell(row.get(c)) for c in cols) + " |")
        md.append("")
    classes = [c for c in _rows(runs[0][1]) if c != "mAP" and any(cv and c in cv for _, _, cv in runs)]
    if classes:
        md += ["## Precision-recall (Moderate)", ""]
        for cls in classes:
            png = out / f"pr_compare_{cls}.png"
            _plot_pr_comparison(png, cls, runs, "moderate")
            md.append(f"![{cls}]({png.name})")
        md.append("")
    if pictures:
        md += ["## Pictures", ""]
        for pic in pictures:
            rel = os.path.relpath(pic, out)
            md += [f"`{rel}`", "", f"![{Path(pic).stem}]({rel})", ""]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path


def _cell(v) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}" if isinstance(v, float) else str(v)
