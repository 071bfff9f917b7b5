"""``mlcore report``: a tiny run trained, evaluated and calibrated through the CLI, its
report parsed as HTML (every section, every image a real PNG, one AP row per class with
the class without positives marked), the hints of a run without eval/ or thresholds,
bad RUN_DIRs; and the matplotlib pictures of ``evaluate --plots`` and ``analyze``."""
from __future__ import annotations

import contextlib
import io
import shutil
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import tiny_config, write_yaml
from mlcore.errors import MlcoreError

pytest.importorskip("matplotlib")
EMPTY = "green_star"  # a class that no image has


class Page(HTMLParser):
    """The parts of the report the tests look at: headings, images, AP table rows."""

    def __init__(self, text: str):
        super().__init__()
        self.headings: list[str] = []
        self.images: list[tuple[str, str]] = []  # (alt, src)
        self.rows: list[tuple[str, list[str]]] = []  # (tr class, cell texts) of sortable tables
        self.missing: list[str] = []
        self.external: list[str] = []
        self._tag: list[str] = []
        self._text: list[str] = []
        self._row: tuple[str, list[str]] | None = None
        self._in_missing = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "link") and (a.get("src") or a.get("href")):
            self.external.append(a.get("src") or a.get("href"))
        if tag == "img":
            self.images.append((a.get("alt", ""), a.get("src", "")))
        if tag == "tr":
            self._row = (a.get("class") or "", [])
        if tag in ("h2", "td"):
            self._text = []
        if tag == "p" and "missing" in (a.get("class") or ""):
            self._in_missing, self._text = 1, []
        self._tag.append(tag)

    def handle_endtag(self, tag):
        text = "".join(self._text).strip()
        if tag == "h2":
            self.headings.append(text)
        if tag == "td" and self._row is not None:
            self._row[1].append(text)
        if tag == "tr" and self._row is not None:
            if self._row[1]:
                self.rows.append(self._row)
            self._row = None
        if tag == "p" and self._in_missing:
            self.missing.append(text)
            self._in_missing = 0
        if self._tag:
            self._tag.pop()

    def handle_data(self, data):
        self._text.append(data)


def _png(src_or_bytes) -> "tuple[int, int]":
    import base64

    from PIL import Image

    data = src_or_bytes
    if isinstance(src_or_bytes, str):
        assert src_or_bytes.startswith("data:image/png;base64,"), src_or_bytes[:40]
        data = base64.b64decode(src_or_bytes.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


def _main(capsys, *argv):
    from mlcore.cli.main import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Shapes images relabelled as a listfile dataset with one extra class that no image
    has; trained for two one-step epochs (two validations), evaluated, calibrated."""
    import mlcore
    from mlcore.cli.main import main

    tmp = tmp_path_factory.mktemp("report")
    shapes = mlcore.create("dataset", "shapes", num_train=16, num_val=12, image_size=32, seed=5,
                           root=str(tmp / "shapes"), split="train")
    data = tmp / "list"
    data.mkdir()
    (data / "label.txt").write_text("\n".join(list(shapes.classes) + [EMPTY]) + "\n")
    for split in ("train", "val"):
        ds = shapes if split == "train" else mlcore.create("dataset", "shapes", num_train=16, num_val=12,
                                                           image_size=32, seed=5, root=str(tmp / "shapes"),
                                                           split="val")
        t = np.asarray(ds.targets)
        lines = [f"{img}\t{','.join(c for c, y in zip(ds.classes, row) if y > 0)}"
                 for img, row in zip(ds.images, t)]
        (data / f"{split}.txt").write_text("\n".join(lines) + "\n")
    cfg = tiny_config(tmp / "run", dataset={"name": "listfile", "root": str(data)})
    cfg["train"] = {**cfg["train"], "epochs": 2, "batch_size": 16}
    path = write_yaml(tmp / "tiny.yaml", cfg)
    assert main(["train", str(path)]) == 0
    assert main(["evaluate", str(path), "--plots"]) == 0
    assert main(["calibrate", str(path)]) == 0
    return tmp, path


@pytest.fixture(scope="module")
def report(run):
    """The report of the run, written by the command (its stdout, its path)."""
    from mlcore.cli.main import main

    tmp, _ = run
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(tmp / "run")]) == 0
    return out.getvalue(), tmp / "run" / "report.html"


def test_report_has_every_section_and_image(report):
    from mlcore.run_report.html import SECTIONS

    out, report = report
    assert str(report) in out
    page = Page(report.read_text())
    assert page.headings == list(SECTIONS)
    assert not page.external and "http://" not in report.read_text() and "https://" not in report.read_text()
    assert not page.missing, page.missing  # every piece of this run is there
    alts = [a for a, _ in page.images]
    for want in ("Images per class", "Label co-occurrence", "Training curves", "Precision–recall",
                 "F1 per class", "False positives"):
        assert any(a.startswith(want) for a in alts), (want, alts)
    for _, src in page.images:
        w, h = _png(src)
        assert 300 <= w <= 2500 and 200 <= h <= 3000, (w, h)


def test_ap_table_has_every_class_and_marks_the_one_without_positives(run, report):
    tmp, _ = run
    page = Page(report[1].read_text())
    classes = (tmp / "list" / "label.txt").read_text().split()
    ap_rows = [cells for cls, cells in page.rows if cls in ("ap", "nopos")]
    assert sorted(cells[1] for cells in ap_rows) == sorted(classes)
    val = [line.split("\t")[1].split(",") for line in (tmp / "list" / "val.txt").read_text().splitlines()]
    without = {c for c in classes if not any(c in labels for labels in val)}
    marked = [cells for cls, cells in page.rows if cls == "nopos"]
    assert EMPTY in without and {c[1] for c in marked} == without
    assert all("no positives" in c[2] for c in marked)
    values = [float(c[2].split()[-1]) for cls, c in page.rows if cls == "ap"]
    assert values == sorted(values, reverse=True) and all(0 <= v <= 1 for v in values)
    thresholds = [cells for cls, cells in page.rows if cls == "thr"]
    assert [c[0] for c in thresholds] == classes  # the calibrated table: one row per class
    assert "(global)" in dict((c[0], c[1]) for c in thresholds)[EMPTY]  # no positive: the fallback


def test_missing_eval_and_thresholds_name_the_commands(run, capsys, tmp_path):
    tmp, _ = run
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tmp / "run" / "config.yaml", bare / "config.yaml")  # no eval/, thresholds, metrics…
    code, out, err = _main(capsys, "report", bare, "--out", bare / "page.html")
    assert code == 0, err
    assert str(bare / "page.html") in out and not (bare / "report.html").exists()
    page = Page((bare / "page.html").read_text())
    text = " ".join(page.missing)
    assert "mlcore evaluate" in text and str(bare / "eval") in text
    assert "mlcore calibrate" in text and "thresholds.json" in text
    assert "metrics.jsonl is missing" in text and "environment.json is missing" in text
    assert len(page.headings) == 8 and len(page.images) == 2  # the label statistics are still drawn


def test_bad_run_dir_exits_2_naming_it(capsys, tmp_path):
    code, _, err = _main(capsys, "report", tmp_path / "nowhere")
    assert code == 2 and "nowhere" in err and "does not exist" in err and "Traceback" not in err
    (tmp_path / "plain").mkdir()
    code, _, err = _main(capsys, "report", tmp_path / "plain")
    assert code == 2 and "plain" in err and "not an mlcore run folder" in err


def test_evaluate_plots_and_analyze_are_matplotlib_pngs(run, capsys):
    tmp, cfg = run
    for name in ("ap_per_class.png", "pr_curves.png"):
        w, h = _png((tmp / "run" / "eval" / name).read_bytes())
        assert w >= 300 and h >= 200
    code, out, err = _main(capsys, "analyze", cfg, "--out", tmp / "an")
    assert code == 0, err
    for name in ("label_frequency.png", "cooccurrence.png"):
        w, h = _png((tmp / "an" / name).read_bytes())
        assert w >= 300 and h >= 300


def test_large_vocabulary_shows_ends_and_says_what_it_left_out():
    from mlcore.run_report import figures

    rng = np.random.default_rng(0)
    classes = [f"class_{j:03d}" for j in range(600)]
    aps = [float(a) for a in rng.random(600)]
    aps[7] = None
    drawn = figures.ap_bars(classes, aps)
    assert "539 between them are not" in drawn.note and "1 class(es) without positives" in drawn.note
    assert _png(drawn.png)[1] > 500
    counts = rng.integers(0, 50, 600)
    cooc = rng.integers(0, 5, (600, 600))
    heat = figures.cooccurrence(classes, counts, cooc)
    assert "550 are not" in heat.note


def test_missing_matplotlib_names_the_extra(monkeypatch, capsys, tmp_path):
    from mlcore.run_report import figures

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MlcoreError, match=r"pip install 'mlcore\[report\]'"):
        figures.ap_bars(["a"], [0.5])
    code, _, err = _main(capsys, "report", tmp_path)
    assert code == 2 and "pip install 'mlcore[report]'" in err
