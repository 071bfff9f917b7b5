"""The report page: one HTML file with everything inline (figures as base64 PNG, a
little CSS, a few lines of JavaScript to sort tables), so it can be mailed or archived
and opened anywhere without a network."""
from __future__ import annotations

import base64
import datetime
import html

import numpy as np

from . import figures as fig
from .collect import RunData
from .numbers import false_positive_cooccurrence, prf_at

#: the section headings, in page order (the tests look for each)
SECTIONS = ("Configuration", "Environment", "Label statistics", "Training curves",
            "Average precision per class", "Precision–recall curves", "Calibrated thresholds",
            "False positives")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
pre{background:#f6f6f6;padding:.8em;overflow:auto;max-height:28em;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border-bottom:1px solid #eee;padding:.2em .6em;text-align:left}
th.sort{cursor:pointer;user-select:none}th.sort:after{content:" \\2195";color:#aaa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:.8em;background:#3b528b;vertical-align:middle;margin-right:.4em}
tr.nopos td{color:#888;font-style:italic}
.missing{background:#fff4e0;border-left:4px solid #e69a00;padding:.5em .8em}
.note{color:#555;font-size:13px}figure{margin:1em 0}img{max-width:100%;height:auto}
figcaption{font-size:13px;color:#444}.kv td:first-child{color:#666}nav a{margin-right:1em}
"""

JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th.sort').forEach(function(th,col){
    var idx=Array.prototype.indexOf.call(th.parentNode.children,th),asc=false;
    th.addEventListener('click',function(){
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);asc=!asc;
      rows.sort(function(a,b){
        var x=a.cells[idx].dataset.v,y=b.cells[idx].dataset.v,nx=parseFloat(x),ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});});});});
"""


def esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def _figure(d: fig.Drawn) -> str:
    data = base64.b64encode(d.png).decode("ascii")
    note = f"<br><span class='note'>Not shown: {esc(d.note)}.</span>" if d.note else ""
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{esc(d.title)}'>"
            f"<figcaption>{esc(d.title)}{note}</figcaption></figure>")


def _missing(text: str) -> str:
    """A missing piece, with any `command` in it set as code."""
    parts = esc(text).split("`")
    body = "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))
    return f"<p class='missing'>{body}</p>"


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _v(x: float | None) -> str:
    return "-1" if x is None or not np.isfinite(x) else f"{x:.6f}"


def render(data: RunData) -> str:
    body = [_header(data), _config(data), _environment(data), _labels(data), _curves(data), _ap(data),
            _pr(data), _thresholds(data), _false_positives(data)]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>mlcore report: {esc(data.root.name)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + f"\n<script>{JS}</script></body></html>\n")


def _sortable(head: list[str], rows: list[str]) -> str:
    """A table whose columns sort on a click (by each cell's ``data-v``)."""
    heads = "".join(f"<th class='sort'>{esc(h)}</th>" for h in head)
    return f"<table class='sortable'><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _section(title: str, *parts: str) -> str:
    return f"<section id='{_anchor(title)}'><h2>{esc(title)}</h2>\n" + "\n".join(parts) + "</section>"


def _header(data: RunData) -> str:
    nav = "".join(f"<a href='#{_anchor(t)}'>{esc(t)}</a>" for t in SECTIONS)
    lines = [f"<h1>Run report: {esc(data.root.name)}</h1>",
             f"<p class='note'>Folder {esc(data.root.resolve())} · written "
             f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by <code>mlcore report</code> · "
             f"reported split <b>{esc(data.split)}</b></p>", f"<nav>{nav}</nav>"]
    s = data.summary
    if s:
        def number(key: str) -> str | None:
            return _num(s[key], 4) if isinstance(s.get(key), (int, float)) else None

        keys = [("best epoch", s.get("best_epoch")), ("monitor", s.get("monitor")),
                ("best score", number("best_score")), ("mAP", number("mAP")), ("ended", s.get("reason"))]
        lines.append(_kv([(k, v) for k, v in keys if v is not None]))
    return "\n".join(lines)


def _kv(rows: list[tuple[str, object]]) -> str:
    cells = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{cells}</table>"


def _config(data: RunData) -> str:
    c = data.config
    named = [(k, (c.get(k) or {}).get("name")) for k in ("dataset", "model", "loss", "optimizer", "scheduler")
             if isinstance(c.get(k), dict)]
    return _section("Configuration", _kv(named), "<p class='note'>config.yaml as the run resolved it:</p>",
                    f"<pre>{esc(data.config_text)}</pre>")


def _environment(data: RunData) -> str:
    if data.environment is None:
        why = data.missing.get("environment", "environment.json is missing")
        return _section("Environment", _missing(why))
    rows = [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in data.environment.items()]
    return _section("Environment", _kv(rows))


def _labels(data: RunData) -> str:
    info = data.label_info
    if info is None:
        why = data.missing.get("dataset", "the dataset is unavailable")
        return _section("Label statistics", _missing(why))
    counts = np.asarray(info.counts)
    per = float(counts.sum()) / max(int(info.num_images), 1)
    facts = _kv([("classes", len(info.classes)), (f"images ({data.train_split})", info.num_images),
                 ("labels per image", f"{per:.2f}"),
                 ("rarest", ", ".join(f"{info.classes[j]} ({int(counts[j])})"
                                      for j in np.argsort(counts, kind="stable")[:5]))])
    split = data.train_split
    parts = [facts, _figure(fig.label_frequency(info.classes, counts, split, int(info.num_images)))]
    if len(info.classes) > 1:
        parts.append(_figure(fig.cooccurrence(info.classes, counts, np.asarray(info.cooccurrence), split)))
    return _section("Label statistics", *parts)


def _curves(data: RunData) -> str:
    if not data.metrics:
        return _section("Training curves", _missing(data.missing.get("metrics", "metrics.jsonl is missing")))
    parts = [_figure(fig.training_curves(data.metrics, data.tb_loss))]
    if data.tb_loss:
        parts.append("<p class='note'>The loss is read from the TensorBoard events (train/loss): "
                     "metrics.jsonl holds validation metrics only.</p>")
    if "metrics_lines" in data.missing:
        parts.append(_missing(data.missing["metrics_lines"]))
    last = data.metrics[-1]
    keys = [k for k in ("mAP", "ema_mAP", "topk_cf1", "topk_of1", "threshold_cf1", "threshold_of1")
            if isinstance(last.get(k), (int, float))]
    parts.append("<p class='note'>Last validation (epoch " + esc(last.get("epoch", "?")) + "): "
                 + ", ".join(f"{esc(k)} {_num(last[k], 4)}" for k in keys) + "</p>")
    return _section("Training curves", *parts)


def _aps(data: RunData) -> list[float | None]:
    return [None if a is None else float(a) for a in data.result.get("ap_list") or []]


def _ap(data: RunData) -> str:
    title = "Average precision per class"
    if data.result is None or not data.classes:
        return _section(title, _missing(data.missing.get("eval", "no evaluation")))
    classes, aps = data.classes, _aps(data)
    if len(aps) != len(classes):
        return _section(title, _missing(f"eval/result.json has {len(aps)} APs for {len(classes)} classes; "
                                        f"run `{data.command('evaluate')}` again"))
    r = data.result
    ema = r.get("ema_ap_list") if isinstance(r.get("ema_ap_list"), list) else None
    pos = (data.targets > 0).sum(0) if data.targets is not None else None
    info = data.label_info
    train = np.asarray(info.counts) if info is not None and list(info.classes) == classes else None
    head = ["#", "class", "AP"] + (["EMA AP"] if ema else [])
    head += [f"positives ({data.split})"] if pos is not None else []
    head += [f"images ({data.train_split})"] if train is not None else []
    rows = []
    for j in sorted(range(len(classes)), key=lambda j: -(aps[j] if aps[j] is not None else -1)):
        a = aps[j]
        name = esc(classes[j])
        cells = [f"<td class='num' data-v='{j}'>{j}</td>", f"<td data-v='{name}'>{name}</td>"]
        if a is None:
            cells.append("<td data-v='-1'>no positives: AP undefined</td>")
        else:
            bar = f"<span class='bar' style='width:{120 * a:.1f}px'></span>"
            cells.append(f"<td data-v='{_v(a)}'>{bar}{a:.3f}</td>")
        if ema:
            e = ema[j]
            cells.append(f"<td class='num' data-v='{_v(e)}'>{_num(e)}</td>")
        if pos is not None:
            cells.append(f"<td class='num' data-v='{int(pos[j])}'>{int(pos[j])}</td>")
        if train is not None:
            cells.append(f"<td class='num' data-v='{int(train[j])}'>{int(train[j])}</td>")
        rows.append(f"<tr class='{'nopos' if a is None else 'ap'}'>" + "".join(cells) + "</tr>")
    none = sum(a is None for a in aps)
    defined = [a for a in aps if a is not None]
    summary = [("mAP", _num(r.get("mAP"), 4)),
               ("classes with positives", f"{len(defined)} of {len(classes)}"),
               ("images", r.get("num_images")), ("checkpoint", r.get("checkpoint"))]
    if "ema_mAP" in r:
        summary.insert(1, ("EMA mAP", _num(r.get("ema_mAP"), 4)))
    for k in ("topk_cf1", "topk_of1", "threshold_cf1", "threshold_of1", "calibrated_cf1", "calibrated_of1"):
        if isinstance(r.get(k), (int, float)):
            summary.append((k, _num(r[k], 4)))
    note = (f"<p class='note'>{none} class(es) have no positive in split {esc(data.split)}: their AP is "
            f"undefined (not 0), they are left out of the mAP and listed at the bottom.</p>" if none else "")
    table = _sortable(head, rows)
    return _section(title, _kv(summary), "<p class='note'>Click a column heading to sort.</p>", note, table)


def _pr(data: RunData) -> str:
    title = "Precision–recall curves"
    if data.result is None:
        return _section(title, _missing(data.missing.get("eval", "no evaluation")))
    if data.scores is None or data.targets is None:
        why = data.missing.get("scores") or data.missing.get("targets") or data.missing.get("dataset", "")
        return _section(title, _missing(f"the curves need the scores and the split's targets: {why}"))
    aps = _aps(data)
    picked, tags, note = fig.weakest_and_strongest(aps)
    if not picked:
        return _section(title, _missing(f"no class has a positive in split {data.split!r}: no curve to draw"))
    d = fig.pr_grid(data.classes, data.scores, data.targets, picked, aps,
                    f"Precision–recall, weakest and strongest classes ({data.split} split)", note, tags)
    return _section(title, "<p class='note'>The dashed line is the class's base rate (the precision of "
                           "predicting it on every image).</p>", _figure(d))


def _thresholds(data: RunData) -> str:
    title = "Calibrated thresholds"
    t = data.thresholds
    if t is None:
        return _section(title, _missing(data.missing.get("thresholds", "no thresholds")))
    extra = t.extra
    fallback = set(extra.get("fallback_classes") or [])
    per_class = extra.get("per_class") if isinstance(extra.get("per_class"), dict) else {}
    facts = _kv([("objective", t.objective), ("fitted on split", t.split), ("checkpoint", t.checkpoint),
                 ("step / epoch", f"{t.step} / {t.epoch}"), ("rule", extra.get("rule", "score >= threshold")),
                 ("global threshold (fallback)", extra.get("global_threshold")),
                 ("classes on the fallback",
                  f"{len(fallback)}: " + ", ".join(sorted(fallback)[:20]) if fallback else "none")])
    parts = [facts]
    here = None
    if data.scores is not None and data.targets is not None:
        here = prf_at(data.scores, data.targets, t.thresholds)
        half = prf_at(data.scores, data.targets, np.full(len(t.thresholds), 0.5))
        if t.split == data.split:
            parts.append(f"<p class='note'>The thresholds were fitted on split {esc(t.split)}, the split "
                         f"reported here: these figures are optimistic. Calibrate on a held-out split "
                         f"(<code>data.calib_split</code>) for honest numbers.</p>")
        parts.append(_figure(fig.threshold_gain(t.classes, half["f1"], here["f1"], data.split)))
    else:
        parts.append(_missing("What the thresholds give on the reported split needs its scores: "
                              + data.missing.get("eval", data.missing.get("scores", ""))))
    head = ["class", "threshold"] + [f"{k} ({t.split})" for k in ("precision", "recall", "F1")] + ["support"]
    if here is not None:
        head += [f"precision ({data.split})", f"recall ({data.split})", f"F1 ({data.split})"]
    rows = []
    for j, c in enumerate(t.classes):
        pc = per_class.get(c, {}) if isinstance(per_class.get(c), dict) else {}
        mark = " (global)" if c in fallback else ""
        cells = [f"<td data-v='{esc(c)}'>{esc(c)}</td>",
                 f"<td class='num' data-v='{t.thresholds[j]:.6f}'>{t.thresholds[j]:.4g}{mark}</td>"]
        for k in ("precision", "recall", "f1"):
            v = pc.get(k)
            v = float(v) if isinstance(v, (int, float)) else None
            cells.append(f"<td class='num' data-v='{_v(v)}'>{_num(v)}</td>")
        cells.append(f"<td class='num' data-v='{pc.get('support', -1)}'>{esc(pc.get('support', 'n/a'))}</td>")
        if here is not None:
            for k in ("precision", "recall", "f1"):
                v = float(here[k][j])
                cells.append(f"<td class='num' data-v='{_v(v)}'>{_num(v)}</td>")
        rows.append("<tr class='thr'>" + "".join(cells) + "</tr>")
    parts.append(_sortable(head, rows))
    return _section(title, *parts)


def _false_positives(data: RunData) -> str:
    title = "False positives"
    if data.scores is None or data.targets is None:
        why = data.missing.get("eval") or data.missing.get("scores") or data.missing.get("dataset", "")
        return _section(title, _missing(f"this needs the scores and the split's targets: {why}"))
    if data.thresholds is not None:
        thr, at = data.thresholds.thresholds, "calibrated thresholds"
    else:
        thr, at = np.full(len(data.classes), 0.5), "threshold 0.5"
    counts, positives = false_positive_cooccurrence(data.scores, data.targets, thr)
    parts = [f"<p class='note'>For each true class (row), how often each other class (column) is predicted "
             f"on its images although absent, at the {esc(at)}"
             + ("" if data.thresholds is not None else
                f" (no thresholds.json: <code>{esc(data.command('calibrate'))}</code> calibrates them)")
             + ".</p>"]
    if len(data.classes) > 1:
        parts.append(_figure(fig.false_positives(data.classes, counts, positives, at, data.split)))
    rate = counts / np.maximum(positives[:, None], 1)
    flat = [(i, j) for i, j in zip(*np.unravel_index(np.argsort(-rate, axis=None, kind="stable"), rate.shape))
            if counts[i, j] > 0][:10]
    if flat:
        rows = "".join(f"<tr class='fp'><td>{esc(data.classes[i])}</td><td>{esc(data.classes[j])}</td>"
                       f"<td class='num'>{int(counts[i, j])}</td><td class='num'>{rate[i, j]:.0%}</td></tr>"
                       for i, j in flat)
        parts.append("<p>Most frequent confusions:</p><table><thead><tr><th>true class</th>"
                     "<th>falsely predicted</th><th>images</th><th>of its images</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    else:
        parts.append("<p class='note'>No false positive on images of a known class.</p>")
    return _section(title, *parts)


__all__ = ["SECTIONS", "render"]
