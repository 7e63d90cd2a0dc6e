"""``recloop report``: a self-contained HTML report whose numbers are those of metrics.parquet."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config_data
from scipy import stats

from simulator.config import parse_config
from simulator.engine.runner import run_experiment
from simulator.errors import ResultsError
from simulator.report_html import _figures_stale, build_report, check_run_complete, ci_summary, format_ci

RECLOOP = [sys.executable, "-m", "simulator.cli"]
REPO = Path(__file__).resolve().parents[1]
MUSIC_COLLAPSE = REPO / "results" / "music_collapse" / "default"


FIGURES = ("trajectories", "engagement", "lorenz", "all_metrics")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run: 2 policies x 2 seeds x 10 days.

    ``plot_run`` (tested in test_plotting_report.py) takes ~20 s even here, so the figures are
    small stand-ins with the real names, drawn after the tables: the report must embed them as
    they are, without redrawing.
    """
    data = tiny_config_data(experiment={"name": "tiny", "n_rounds": 10, "seeds": [0, 1]})
    data["experiment"]["description"] = "Tiny scenario for the report test.\n\nSecond paragraph."
    run_dir = tmp_path_factory.mktemp("runs") / "tiny" / "default"
    run_experiment(parse_config(data), run_dir, workers=1, progress=False, figures=False)
    from matplotlib.figure import Figure

    (run_dir / "figures").mkdir()
    for i, stem in enumerate(FIGURES):
        fig = Figure(figsize=(2, 1.5))
        fig.subplots().plot([0, 1], [i, 1 - i])
        fig.savefig(run_dir / "figures" / f"{stem}.png", dpi=50)
    return run_dir


def _cells(html: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """The final table's numeric cells: (metric, policy, stat) -> attributes and text."""
    out = {}
    pattern = (
        r'<td class="num" data-metric="([^"]+)" data-policy="([^"]+)" data-stat="([^"]+)" '
        r'data-value="([^"]+)" data-lo="([^"]+)" data-hi="([^"]+)">([^<]*)</td>'
    )
    for m, p, s, v, lo, hi, text in re.findall(pattern, html):
        out[(m, p, s)] = {"value": v, "lo": lo, "hi": hi, "text": text}
    return out


def _last_week_by_hand(metrics: pd.DataFrame, metric: str, policy: str, window: int) -> np.ndarray:
    """Per-seed mean of the last ``window`` rounds, straight from the Parquet rows."""
    last = int(metrics["round"].max())
    rows = metrics[
        (metrics["metric"] == metric) & (metrics["policy"] == policy) & (metrics["round"] > last - window)
    ]
    return rows.groupby("seed")["value"].mean().to_numpy()


def _assert_self_contained(html: str) -> None:
    # no asset is fetched: every src/href is a data: URI or an in-page anchor
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert all(r.startswith(("data:", "#")) for r in refs), refs
    assert not re.search(r"<(?:link|script)\b", html)
    assert not re.search(r"url\(\s*['\"]?https?:", html)
    assert "http://" not in html and "https://" not in html


def test_report_is_self_contained_and_numbers_equal_the_parquet(tiny_run):
    paths = build_report(tiny_run)
    assert not paths.redrawn  # figures are newer than the tables: embedded as they are
    html = paths.html.read_text(encoding="utf-8")
    _assert_self_contained(html)

    # every figure is embedded, byte for byte
    pngs = sorted((tiny_run / "figures").glob("*.png"))
    assert {p.stem for p in pngs} == set(FIGURES)
    assert [m.group(1) for m in re.finditer(r'<figure id="fig-(\w+)"', html)] == list(FIGURES)
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == len(pngs)
    assert {base64.b64decode(e) for e in embedded} == {p.read_bytes() for p in pngs}

    # scenario, config summary and the final table are there
    assert "<p>Tiny scenario for the report test.</p><p>Second paragraph.</p>" in html
    assert "<td>users</td><td>400</td>" in html
    assert "95% confidence intervals over seeds" in html

    # recompute one cell by hand from metrics.parquet: gini of greedy, last week (window 3)
    metrics = pd.read_parquet(tiny_run / "metrics.parquet")
    per_seed = _last_week_by_hand(metrics, "gini", "greedy", window=3)
    mean = per_seed.mean()
    half = stats.t.ppf(0.975, per_seed.size - 1) * per_seed.std(ddof=1) / np.sqrt(per_seed.size)
    cell = _cells(html)[("gini", "greedy", "last_mean")]
    assert float(cell["value"]) == pytest.approx(mean, rel=1e-12, abs=1e-15)
    assert float(cell["lo"]) == pytest.approx(mean - half, rel=1e-12, abs=1e-15)
    assert float(cell["hi"]) == pytest.approx(mean + half, rel=1e-12, abs=1e-15)
    assert cell["text"] == format_ci(mean, mean - half, mean + half)

    # the Markdown report got the same final table
    md = paths.markdown.read_text(encoding="utf-8")
    assert "## Final table: 95% confidence intervals over seeds" in md
    assert cell["text"] in md
    assert "![" in md and "figures/trajectories.png" in md


def test_change_interval_is_paired_by_seed(tiny_run):
    metrics = pd.read_parquet(tiny_run / "metrics.parquet")
    ci = ci_summary(metrics, window=3)
    last = int(metrics["round"].max())
    sub = metrics[(metrics["metric"] == "coverage") & (metrics["policy"] == "random")]
    first = sub[sub["round"] <= 2].groupby("seed")["value"].mean()
    lastw = sub[sub["round"] > last - 3].groupby("seed")["value"].mean()
    d = (lastw - first).to_numpy()
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    row = ci.loc[("coverage", "random")]
    assert row["change_mean"] == pytest.approx(d.mean(), abs=1e-15)
    assert row["change_hi"] - row["change_mean"] == pytest.approx(half, abs=1e-15)


def test_stale_or_missing_figures_are_redrawn(tmp_path, tiny_run):
    run = _copy_run(tiny_run, tmp_path / "r")
    assert not _figures_stale(run)
    (run / "figures" / "lorenz.png").unlink()
    (run / "figures" / "trajectories.png").unlink()
    assert _figures_stale(run)  # a core figure is missing
    shutil.rmtree(run / "figures")
    assert _figures_stale(run)
    run2 = _copy_run(tiny_run, tmp_path / "r2")
    (run2 / "metrics.parquet").touch()  # tables newer than the figures
    assert _figures_stale(run2)


def test_format_ci():
    assert format_ci(0.96312, 0.96101, 0.96523) == "0.963 [0.961, 0.965]"
    assert format_ci(0.0123, -0.0011, 0.0257, signed=True) == "+0.012 [-0.001, +0.026]"
    assert format_ci(0.5, float("nan"), float("nan")) == "0.500"


# ------------------------------------------------------------------------------------ bad input
def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("logs", "report.*"))
    return dst


def _edit_manifest(run: Path, **changes) -> None:
    path = run / "manifest.json"
    m = json.loads(path.read_text())
    m.update(changes)
    path.write_text(json.dumps(m))


def _bad_missing(tmp_path: Path, run: Path) -> Path:
    return tmp_path / "nowhere"


def _bad_not_results(tmp_path: Path, run: Path) -> Path:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    return tmp_path / "plain"


def _bad_running(tmp_path: Path, run: Path) -> Path:
    r = _copy_run(run, tmp_path / "r")
    _edit_manifest(r, status="running")
    shutil.rmtree(r / "cells" / "greedy__seed1")
    return r


def _bad_cell_missing(tmp_path: Path, run: Path) -> Path:
    r = _copy_run(run, tmp_path / "r")
    shutil.rmtree(r / "cells" / "random__seed0")
    return r


def _bad_metrics_lack_cell(tmp_path: Path, run: Path) -> Path:
    r = _copy_run(run, tmp_path / "r")
    m = pd.read_parquet(r / "metrics.parquet")
    m[~((m["policy"] == "greedy") & (m["seed"] == 1))].to_parquet(r / "metrics.parquet")
    return r


def _bad_metrics_short(tmp_path: Path, run: Path) -> Path:
    r = _copy_run(run, tmp_path / "r")
    m = pd.read_parquet(r / "metrics.parquet")
    m[~((m["policy"] == "random") & (m["round"] > 4))].to_parquet(r / "metrics.parquet")
    return r


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_bad_missing, "results run folder not found"),
        (_bad_not_results, "is not a results run folder: it has no manifest.json and no metrics.parquet"),
        (_bad_running, "is not complete (manifest.json status is 'running'"),
        (_bad_cell_missing, "1 of 4 cells are missing from cells/: random__seed0"),
        (_bad_metrics_lack_cell, "metrics.parquet in"),
        (_bad_metrics_short, "random__seed0 (5 of 10 rounds)"),
    ],
)
def test_unfinished_or_foreign_folders_are_refused(tmp_path, tiny_run, make, message):
    bad = make(tmp_path, tiny_run)
    with pytest.raises(ResultsError, match=re.escape(message)):
        check_run_complete(bad)
    assert not (bad / "report.html").exists()


def test_cli_exit_codes(tmp_path, tiny_run):
    bad = _bad_running(tmp_path, tiny_run)
    res = subprocess.run([*RECLOOP, "report", str(bad)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("error: the run in") and "not complete" in res.stderr
    assert not (bad / "report.html").exists()

    from typer.testing import CliRunner  # in-process: a second interpreter start costs ~4 s

    from simulator.cli import app

    out = tmp_path / "elsewhere" / "r.html"
    res = CliRunner().invoke(app, ["report", str(tiny_run), "--out", str(out), "--no-redraw"])
    assert res.exit_code == 0, res.output
    assert f"report: {out}" in res.output
    _assert_self_contained(out.read_text(encoding="utf-8"))


@pytest.mark.skipif(not (MUSIC_COLLAPSE / "manifest.json").is_file(), reason="no music_collapse results here")
def test_music_collapse_report_matches_its_parquet(tmp_path):
    """On the real results (when present): copy the folder's small files, report, recompute."""
    run = tmp_path / "default"
    shutil.copytree(MUSIC_COLLAPSE, run, ignore=shutil.ignore_patterns("logs", "*.svg", "report.*"))
    paths = build_report(run, redraw=False)
    html = paths.html.read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert html.count("data:image/png;base64,") == len(list((run / "figures").glob("*.png")))
    metrics = pd.read_parquet(run / "metrics.parquet")
    window = json.loads((run / "manifest.json").read_text())["window_days"]
    cells = _cells(html)
    for metric, policy in (("gini", "greedy"), ("coverage", "greedy"), ("ctr", "oracle")):
        per_seed = _last_week_by_hand(metrics, metric, policy, window)
        assert float(cells[(metric, policy, "last_mean")]["value"]) == pytest.approx(
            per_seed.mean(), rel=1e-12
        )
