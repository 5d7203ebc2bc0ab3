"""The report of a bench run: Markdown, one self-contained HTML page, and machine-readable files.

From `OUT/cases/*/result.json` of every pair of the bench:
- the six Video-Bench dimensions and their mean (the paper's tables 1-2 list the six; appendix D
  filters by their mean), over all scored cases and per tag (driving subject, body region,
  camera, persons, reference subject, pair kind, and every free tag of the manifest);
- the offline metrics, overall and per tag; cases flagged for colour drift or seams;
- the skips, counted by stage and reason (never folded into the means as zeros), metric skips
  likewise, and cases not run yet (pending);
- one row per case with its contact sheet (embedded in the HTML as a JPEG, linked from Markdown);
- with `compare`, an A/B section: both runs on the cases scored in both, per dimension and per
  tag, B - A, and how many cases went up / down.
Files: `report.md`, `report.html`, `results.jsonl` (every record), `summary.json` (the numbers).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from dreamactor_jax.eval.manifest import Bench
from dreamactor_jax.eval.runner import _json_default, read_record
from dreamactor_jax.eval.videobench import DIMENSIONS, LABELS
from dreamactor_jax.utils import write_text_atomic

# (label, record path, higher is better, format)
METRICS = [
    ("PCK@0.05", ("motion", "all", "pck@0.05"), True, "{:.3f}"),
    ("kp err", ("motion", "all", "err"), False, "{:.3f}"),
    ("hands PCK@0.1", ("motion", "hands", "pck@0.1"), True, "{:.3f}"),
    ("face PCK@0.05", ("motion", "face", "pck@0.05"), True, "{:.3f}"),
    ("shape err", ("shape", "shape_err"), False, "{:.3f}"),
    ("driver shape err", ("shape", "driver_shape_err"), False, "{:.3f}"),
    ("flicker (VBench)", ("temporal", "flicker_score"), True, "{:.4f}"),
    ("smooth (lin.)", ("temporal", "smooth_score"), True, "{:.4f}"),
    ("bg flicker", ("background", "flicker"), False, "{:.2f}"),
    ("bg drift", ("background", "drift"), False, "{:.2f}"),
    ("colour drift", ("drift", "color_drift"), False, "{:.2f}"),
    ("seam jump", ("seams", "subject_color_jump"), False, "{:.2f}"),
    ("PSNR", ("fidelity", "psnr"), True, "{:.2f}"),
    ("SSIM", ("fidelity", "ssim"), True, "{:.4f}"),
    ("DINO subj.", ("dino", "dino_subject_consistency"), True, "{:.4f}"),
    ("CLIP ref", ("clip", "clip_ref_sim"), True, "{:.4f}"),
]
PART_COLS = ("head", "torso", "arms", "legs", "hands", "face")


@dataclasses.dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def load_records(bench: Bench, out: str | Path) -> dict[str, dict | None]:
    out = Path(out)
    return {p.id: read_record(out / "cases" / p.id / "result.json") for p in bench.pairs}


def _get(rec: dict, path: tuple) -> float | None:
    v = rec.get("metrics", {})
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _scored(recs) -> list[dict]:
    return [r for r in recs if r and r.get("status") == "ok" and r.get("score")]


def _fmt(x, f="{:.2f}") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f.format(x)


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def dims_row(recs: list[dict]) -> list[float | None]:
    s = _scored(recs)
    vals = [_mean(r["score"]["scores"][d] for r in s) for d in DIMENSIONS]
    return vals + [_mean(r["score"]["mean"] for r in s)]


def _tag_keys(recs) -> list[str]:
    keys: list[str] = []
    for r in recs:
        for k in (r or {}).get("tags", {}):
            if k not in keys:
                keys.append(k)
    return keys


def _groups(recs, key):
    out: dict[str, list] = {}
    for r in recs:
        if r and key in r.get("tags", {}):
            out.setdefault(r["tags"][key], []).append(r)
    return dict(sorted(out.items()))


def video_bench_tables(recs: list[dict]) -> list[Table]:
    head = ["", "n"] + [LABELS[d] for d in DIMENSIONS] + ["mean of six"]
    rows = [["all", str(len(_scored(recs)))] + [_fmt(v) for v in dims_row(recs)]]
    tables = [Table("Video-Bench dimensions (1-5)", head, rows)]
    for key in _tag_keys(recs):
        g = _groups(recs, key)
        if len(g) < 2 and key not in ("pair kind",):
            continue
        tables.append(Table(f"by {key}", [key, "n"] + head[2:],
                            [[v, str(len(_scored(rs)))] + [_fmt(x) for x in dims_row(rs)] for v, rs in g.items()]))
    return tables


def metrics_tables(recs: list[dict]) -> list[Table]:
    ran = [r for r in recs if r and r.get("metrics")]
    cols = [m for m in METRICS if any(_get(r, m[1]) is not None for r in ran)]
    if not cols:
        return []
    head = ["", "n"] + [f"{lab} {'↑' if up else '↓'}" for lab, _, up, _ in cols] + ["drift flags"]

    def row(name, rs):
        return [name, str(len(rs))] + [_fmt(_mean(_get(r, p) for r in rs), f) for _, p, _, f in cols] + \
            [str(sum("drift" in r.get("flags", []) for r in rs))]
    tables = [Table("Offline metrics (means over the cases that have them)", head, [row("all", ran)],
                    "PCK / kp err: pose of the output vs the driving after box normalisation; shape err: mean |log| "
                    "limb-proportion ratio vs the reference (driver shape err: what copying the driver would score); "
                    "flicker / smooth: VBench-style scores in [0, 1]; bg / colour drift in uint8 levels.")]
    for key in ("pair kind", "body region", "camera"):
        g = _groups(ran, key)
        if len(g) >= 2:
            tables.append(Table(f"Offline metrics by {key}", [key] + head[1:], [row(v, rs) for v, rs in g.items()]))
    parts = [r for r in ran if "motion" in r["metrics"]]
    if parts:
        prow = ["all", str(len(parts))] + [
            _fmt(_mean(_get(r, ("motion", p, "pck@0.05")) for r in parts), "{:.3f}") + " / " +
            _fmt(_mean(_get(r, ("motion", p, "err")) for r in parts), "{:.3f}") for p in PART_COLS]
        tables.append(Table("Motion fidelity per body part (PCK@0.05 / normalised error)", ["", "n", *PART_COLS], [prow]))
    return tables


def skip_tables(bench: Bench, records: dict[str, dict | None]) -> list[Table]:
    tables = []
    counts: dict[tuple, list] = {}
    for pid, r in records.items():
        if r is None:
            counts.setdefault(("pending", "not run yet"), []).append(pid)
        elif r.get("status") != "ok":
            s = r.get("skip", {})
            counts.setdefault((s.get("stage", "?"), s.get("reason", "?")), []).append(pid)
    if counts:
        tables.append(Table("Skipped and pending cases", ["stage", "reason", "count", "cases"],
                            [[s, reason, str(len(ids)), ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")]
                             for (s, reason), ids in sorted(counts.items(), key=lambda kv: -len(kv[1]))]))
    ms: dict[tuple, int] = {}
    for r in records.values():
        for m, reason in ((r or {}).get("metric_skips") or {}).items():
            ms[(m, reason)] = ms.get((m, reason), 0) + 1
    if ms:
        tables.append(Table("Metric skips (the case is kept; this metric is left out of its means)",
                            ["metric", "reason", "count"],
                            [[m, reason, str(n)] for (m, reason), n in sorted(ms.items(), key=lambda kv: -kv[1])]))
    return tables


def case_table(bench: Bench, records: dict[str, dict | None]) -> Table:
    rows = []
    for p in bench.pairs:
        r = records.get(p.id)
        if r is None:
            rows.append([p.id, bench.tags(p)["pair kind"], "pending"] + ["–"] * 8)
            continue
        sc = (r.get("score") or {}).get("scores") or {}
        status = "ok" if r.get("status") == "ok" else f"skipped ({r.get('skip', {}).get('stage', '?')})"
        rows.append([p.id, r.get("tags", {}).get("pair kind", ""), status, _fmt((r.get("score") or {}).get("mean"))]
                    + [_fmt(sc.get(d)) for d in DIMENSIONS]
                    + [_fmt(_get(r, ("motion", "all", "pck@0.05")), "{:.3f}"), ", ".join(r.get("flags", [])) or ""])
    head = ["case", "pair kind", "status", "mean"] + [LABELS[d].split()[0] for d in DIMENSIONS] + ["PCK@0.05", "flags"]
    return Table("Cases", head, rows)


def ab_tables(bench: Bench, a: dict, b: dict, label_a: str, label_b: str) -> list[Table]:
    both = [pid for pid in a if pid in b and a[pid] and b[pid] and _scored([a[pid]]) and _scored([b[pid]])]
    if not both:
        return [Table(f"A/B: {label_a} vs {label_b}", ["note"], [["no case is scored in both runs"]])]
    ra, rb = [a[p] for p in both], [b[p] for p in both]
    va, vb = dims_row(ra), dims_row(rb)
    names = [LABELS[d] for d in DIMENSIONS] + ["mean of six"]
    rows = []
    for i, name in enumerate(names):
        if i < len(DIMENSIONS):
            diffs = [y["score"]["scores"][DIMENSIONS[i]] - x["score"]["scores"][DIMENSIONS[i]] for x, y in zip(ra, rb)]
        else:
            diffs = [y["score"]["mean"] - x["score"]["mean"] for x, y in zip(ra, rb)]
        up, down = sum(d > 1e-9 for d in diffs), sum(d < -1e-9 for d in diffs)
        rows.append([name, _fmt(va[i]), _fmt(vb[i]), _fmt(vb[i] - va[i], "{:+.2f}"),
                     f"{up} / {len(diffs) - up - down} / {down}"])
    for lab, path, up_good, f in METRICS:
        xa, xb = _mean(_get(r, path) for r in ra), _mean(_get(r, path) for r in rb)
        if xa is not None and xb is not None:
            rows.append([f"{lab} {'↑' if up_good else '↓'}", _fmt(xa, f), _fmt(xb, f), _fmt(xb - xa, "{:+" + f[2:]), ""])
    tables = [Table(f"A/B: {label_a} (A) vs {label_b} (B), on the {len(both)} case(s) scored in both",
                    ["", "A", "B", "B - A", "cases up / same / down"], rows)]
    tag_rows = []
    for key in ("pair kind", "body region", "camera"):
        for v, rs in _groups(ra, key).items():
            ids = [r["pair"] for r in rs]
            ma, mb = _mean(a[i]["score"]["mean"] for i in ids), _mean(b[i]["score"]["mean"] for i in ids)
            tag_rows.append([f"{key}: {v}", str(len(ids)), _fmt(ma), _fmt(mb), _fmt(mb - ma, "{:+.2f}")])
    if tag_rows:
        tables.append(Table("A/B mean of six by tag", ["", "n", "A", "B", "B - A"], tag_rows))
    return tables


def summary(bench: Bench, records: dict) -> dict:
    recs = list(records.values())
    s = _scored(recs)
    dims = dims_row(recs)
    return {"bench": bench.name, "pairs": len(bench.pairs), "scored": len(s),
            "skipped": sum(1 for r in recs if r and r.get("status") != "ok"),
            "pending": sum(1 for r in recs if r is None),
            "scorer": sorted({r["score"]["scorer"] for r in s}),
            "video_bench": {**{d: dims[i] for i, d in enumerate(DIMENSIONS)}, "mean": dims[-1]},
            "metrics": {lab: _mean(_get(r, p) for r in recs if r) for lab, p, _, _ in METRICS},
            "flagged": {r["pair"]: r["flags"] for r in recs if r and r.get("flags")}}


def _md(t: Table) -> str:
    lines = [f"### {t.title}", ""]
    if t.note:
        lines += [t.note, ""]
    lines += ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def _html_table(t: Table) -> str:
    note = f"<p class='note'>{html.escape(t.note)}</p>" if t.note else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    return f"<h3>{html.escape(t.title)}</h3>{note}<table><tr>{head}</tr>{body}</table>"


def _jpeg_data_url(path: Path, max_width: int = 960) -> str | None:
    from PIL import Image

    try:
        im = Image.open(path).convert("RGB")
    except OSError:
        return None
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


CSS = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0 1.5em}"
       "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;font-size:13px}td:first-child,th:first-child"
       "{text-align:left}th{background:#f0f0f0}.note{color:#555;font-size:13px}img{max-width:100%;margin:4px 0 16px}")


def write_report(bench: Bench, out: str | Path, *, title: str = "", compare: str | Path | None = None,
                 label: str = "A", compare_label: str = "B", info: dict | None = None) -> dict:
    """Writes report.md, report.html, results.jsonl and summary.json into `out`; returns the summary."""
    out = Path(out)
    records = load_records(bench, out)
    recs = list(records.values())
    summ = summary(bench, records)
    head = [f"# Evaluation: {title or bench.name}", "",
            f"Bench `{bench.source}`: {len(bench.pairs)} pair(s); scored {summ['scored']}, skipped {summ['skipped']}, "
            f"pending {summ['pending']}. Scorer: {', '.join(summ['scorer']) or '–'}."]
    if info:
        head += ["", "Run: " + "; ".join(f"{k} `{v}`" for k, v in info.items() if v not in (None, "", []))]
    if any(s.startswith("offline") for s in summ["scorer"]):
        head += ["", "Note: the offline scorer is a pixel-statistics PROXY of the six dimensions (docs/evaluation.md), "
                     "not the human-aligned MLLM judge the paper uses; compare its numbers only with each other."]
    tables = video_bench_tables(recs) + metrics_tables(recs) + skip_tables(bench, records)
    if compare is not None:
        other = load_records(bench, compare)
        tables += ab_tables(bench, records, other, label, compare_label)
        summ["compare"] = {"with": str(compare), "label": compare_label}
    cases = case_table(bench, records)
    md = "\n".join(head) + "\n\n" + "\n".join(_md(t) for t in tables) + "\n" + _md(cases)
    sheets = [p.id for p in bench.pairs if (out / "cases" / p.id / "contact.png").is_file()]
    md += "\n### Contact sheets\n\n" + "\n".join(f"- [{pid}](cases/{pid}/contact.png)" for pid in sheets) + "\n"
    body = "".join(f"<p>{html.escape(x)}</p>" for x in head[1:] if x and not x.startswith("# "))
    imgs = []
    for pid in sheets:
        url = _jpeg_data_url(out / "cases" / pid / "contact.png")
        if url:
            imgs.append(f"<h4 id='{html.escape(pid)}'>{html.escape(pid)}</h4><img alt='{html.escape(pid)}' src='{url}'>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title or bench.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>Evaluation: {html.escape(title or bench.name)}</h1>{body}"
            + "".join(_html_table(t) for t in tables) + _html_table(cases)
            + "<h3>Contact sheets</h3>" + "".join(imgs) + "</body></html>")
    write_text_atomic(out / "report.md", md)
    write_text_atomic(out / "report.html", page)
    write_text_atomic(out / "results.jsonl", "".join(json.dumps(r, default=_json_default) + "\n" for r in recs if r))
    write_text_atomic(out / "summary.json", json.dumps(summ, indent=1, default=_json_default))
    return summ
