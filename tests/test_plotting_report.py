"""Figures (simulator.plotting) and the Markdown report (simulator.report) of a run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from simulator.errors import ResultsError
from simulator.io import atomic_write_json, write_parquet
from simulator.plotting import (
    gini,
    lorenz_curve,
    plot_alternating_user,
    plot_engagement,
    plot_lorenz,
    plot_run,
    plot_trajectories,
    policy_palette,
    select_alternating_user,
)
from simulator.report import (
    format_mean_sd,
    format_number,
    markdown_table,
    read_metrics,
    window_summary,
    write_report,
)

POLICIES = ["greedy", "oracle"]
SEEDS = [3, 7]
N_ROUNDS = 21
N_ITEMS = 60
N_GENRES = 4
# the headline metrics plus two others (fewer panels keep the test fast; every one is drawn)
METRICS = [
    "gini", "coverage", "long_tail_share", "entropy_shown", "ctr", "utility", "regret",
    "alt_genre_loss", "cdi", "n_active",
]  # fmt: skip
STEMS = ["trajectories", "engagement", "lorenz", "alternating_user", "all_metrics"]


def _metrics(rng: np.random.Generator, metrics: list[str] = METRICS) -> pd.DataFrame:
    rows = []
    for p_i, policy in enumerate(POLICIES):
        for seed in SEEDS:
            for m_i, metric in enumerate(metrics):
                if policy == "oracle" and metric == "regret":
                    continue  # missing for one policy: must be skipped, not fail
                trend = (0.5 if policy == "greedy" else -0.1) * np.arange(N_ROUNDS) / N_ROUNDS
                base = 0.3 + 0.03 * m_i + 0.1 * p_i
                vals = base + trend + rng.normal(0, 0.01, N_ROUNDS)
                for r in range(N_ROUNDS):
                    rows.append((r, float(r), policy, seed, metric, float(vals[r])))
    df = pd.DataFrame(rows, columns=["round", "time", "policy", "seed", "metric", "value"])
    return df.astype({"round": "int32", "seed": "int64"})


def _users(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    users = [(0, "stable", -1, -1), (5, "alternating", 1, 2), (9, "alternating", 0, 3)]
    for policy in POLICIES:
        for seed in SEEDS:
            for uid, kind, ga, gb in users:
                for r in range(N_ROUNDS):
                    phase = (r // 7) % 2
                    for g in range(N_GENRES):
                        if kind == "alternating":
                            taste = 0.9 * (0.7 if (g == ga) != bool(phase) else 0.3)
                            taste = taste if g in (ga, gb) else 0.05
                        else:
                            taste = 0.25
                        shown = rng.uniform() if rng.uniform() > 0.1 else np.nan
                        # user 5 has gaps under greedy: user 9 has the most data everywhere
                        if uid == 5 and policy == "greedy" and r % 3 == 0:
                            shown = np.nan
                        rows.append((r, float(r), policy, seed, uid, kind, ga, gb, g, taste,
                                     shown, shown))  # fmt: skip
    df = pd.DataFrame(
        rows,
        columns=["round", "time", "policy", "seed", "user_id", "kind", "genre_a", "genre_b",
                 "genre", "taste", "shown_share", "consumed_share"],
    )  # fmt: skip
    return df.astype(
        {"round": "int32", "user_id": "int32", "genre_a": "int16", "genre_b": "int16",
         "genre": "int16", "taste": "float32", "shown_share": "float32",
         "consumed_share": "float32"}
    )  # fmt: skip


def _exposure(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for policy in POLICIES:
        for seed in SEEDS:
            for window in ("first", "last"):
                a = 1.2 if policy == "oracle" or window == "first" else 2.5
                counts = rng.zipf(a + 0.1, N_ITEMS) if a > 1 else rng.poisson(5, N_ITEMS)
                counts[rng.uniform(size=N_ITEMS) < 0.2] = 0
                for i, c in enumerate(counts):
                    rows.append((policy, seed, window, i, int(min(c, 10_000))))
    df = pd.DataFrame(rows, columns=["policy", "seed", "window", "item_id", "exposure"])
    return df.astype({"item_id": "int32", "exposure": "int64"})


def make_run(root: Path, *, metrics: list[str] = METRICS, users: bool = True, exposure: bool = True) -> Path:
    """A synthetic results run folder: 2 policies, 2 seeds, 21 rounds, 3 tracked users."""
    rng = np.random.default_rng(0)
    run = root / "toy" / "run-1"
    run.mkdir(parents=True)
    write_parquet(run / "metrics.parquet", _metrics(rng, metrics))
    if users:
        write_parquet(run / "users.parquet", _users(rng))
    if exposure:
        write_parquet(run / "exposure.parquet", _exposure(rng))
    atomic_write_json(
        run / "manifest.json",
        {
            "experiment": {"name": "toy", "description": "A synthetic run for the tests."},
            "config": {
                "experiment": {"name": "toy", "seeds": SEEDS, "n_rounds": N_ROUNDS},
                "catalog": {"n_items": N_ITEMS, "n_genres": N_GENRES},
                "users": {"n_users": 3},
                "simulation": {"slate_size": 5},
                "metrics": {"window_days": 7, "user_window_days": 14},
                "policies": {"greedy": {"type": "greedy"}, "oracle": {"type": "oracle"}},
            },
            "seeds": SEEDS,
            "policies": POLICIES,
            "window_days": 7,
        },
    )
    return run


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    run = make_run(tmp_path_factory.mktemp("results"))
    paths = plot_run(run)
    report = write_report(run)
    return run, paths, report


def test_plot_run_writes_every_figure_as_png_and_svg(full_run):
    run, paths, _ = full_run
    expected = [run / "figures" / f"{s}.{ext}" for s in STEMS for ext in ("png", "svg")]
    assert paths == expected
    for path in expected:
        assert path.is_file() and path.stat().st_size > 1000, path
    for stem in STEMS:
        img = mpimg.imread(run / "figures" / f"{stem}.png")
        assert img.ndim == 3 and img.shape[2] in (3, 4)
        assert 300 < img.shape[0] < 4000 and 300 < img.shape[1] < 4000, (stem, img.shape)
        svg = (run / "figures" / f"{stem}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert not list((run / "figures").glob("*.tmp"))  # atomic writes leave no temp files


def test_report_links_every_figure_and_quotes_the_parquet(full_run):
    run, _, report = full_run
    assert report == run / "report.md"
    text = report.read_text()
    assert text.startswith("# toy")
    assert "A synthetic run for the tests." in text
    for stem in STEMS:
        assert f"](figures/{stem}.png)" in text
        assert f"](figures/{stem}.svg)" in text

    # Recompute cells from the parquet: first week = rounds 0-6, last week = rounds 14-20,
    # mean per seed, then mean (± sd, ddof=1) over the 2 seeds.
    m = pd.read_parquet(run / "metrics.parquet")
    g = m[(m["metric"] == "gini") & (m["policy"] == "greedy")]
    first = g[g["round"] <= 6].groupby("seed")["value"].mean()
    last = g[g["round"] >= 14].groupby("seed")["value"].mean()
    assert 0.01 < first.mean() < 10  # shown with 3 decimals, and so is its sd
    cell = f"{first.mean():.3f} ± {first.std(ddof=1):.3f}"
    assert f"| {cell} |" in text
    assert f"{last.mean():.3f} ± {last.std(ddof=1):.3f}" in text
    change = last - first
    assert f"{change.mean():+.3f} ± {change.std(ddof=1):.3f}" in text
    # the "What happened" sentence quotes the same means, and coverage as a relative change
    assert f"from {first.mean():.3f} to {last.mean():.3f}" in text
    c = m[(m["metric"] == "coverage") & (m["policy"] == "oracle")]
    c0 = c[c["round"] <= 6].groupby("seed")["value"].mean().mean()
    c1 = c[c["round"] >= 14].groupby("seed")["value"].mean().mean()
    assert f"({100 * (c1 - c0) / abs(c0):+.1f}%)" in text
    assert "n = 2 seeds" in text


def test_report_config_summary(full_run):
    text = full_run[2].read_text()
    assert "| items (tracks)" in text and f"{N_ITEMS}" in text
    assert "`greedy`" in text and "`oracle`" in text
    assert "3, 7" in text  # seeds
    assert "rounds 0–6" in text and "rounds 14–20" in text


def test_missing_metrics_and_inputs_are_skipped(tmp_path):
    run = make_run(tmp_path, metrics=["gini", "my_new_metric"], users=False, exposure=False)
    paths = plot_run(run)  # no engagement metric, no exposure, no users: those figures skipped
    assert [p.name for p in paths] == [
        "trajectories.png", "trajectories.svg", "all_metrics.png", "all_metrics.svg",
    ]  # fmt: skip
    text = write_report(run).read_text()
    assert "figures/lorenz.png" not in text
    assert "Not recorded in this run: `coverage`" in text
    assert "`my_new_metric`" in text


def test_no_metric_of_a_figure_skips_it(tmp_path):
    run = make_run(tmp_path, metrics=["n_active"], users=False, exposure=False)
    metrics = read_metrics(run)
    assert plot_trajectories(metrics) is None
    assert plot_engagement(metrics) is None
    assert plot_alternating_user(pd.DataFrame(columns=["kind"])) is None
    text = write_report(run).read_text()
    assert "None of the headline metrics was recorded" in text


def test_report_without_figures_says_so(tmp_path):
    run = make_run(tmp_path, users=False, exposure=False)
    text = write_report(run).read_text()
    assert "No figures found" in text


@pytest.mark.parametrize("func", [plot_run, write_report])
def test_run_without_metrics_raises(tmp_path, func):
    run = tmp_path / "empty-run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"experiment": {"name": "x"}}))
    with pytest.raises(ResultsError, match=r"no metrics\.parquet in .*empty-run"):
        func(run)
    with pytest.raises(ResultsError, match="results run folder not found"):
        func(tmp_path / "does-not-exist")


def test_metrics_missing_column_raises(tmp_path):
    run = tmp_path / "bad"
    run.mkdir()
    write_parquet(run / "metrics.parquet", pd.DataFrame({"round": [0], "value": [1.0]}))
    with pytest.raises(ResultsError, match=r"lacks required column\(s\) \['policy'"):
        write_report(run)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([5, 5, 5, 5], 0.0),  # equal exposure
        ([0, 0, 0, 9], 0.75),  # one item gets all: (n - 1) / n = 3/4
        ([0, 1, 2, 3], 2 * (1 * 0 + 2 * 1 + 3 * 2 + 4 * 3) / (4 * 6) - 5 / 4),  # = 5/12
    ],
)
def test_gini_closed_form(counts, expected):
    assert gini(np.array(counts)) == pytest.approx(expected)


def test_gini_of_nothing_shown_is_nan():
    assert math.isnan(gini(np.zeros(5)))


def test_lorenz_curve_endpoints_and_grid():
    x, y = lorenz_curve(np.array([0, 0, 0, 4]))
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(y, [0, 0, 0, 0, 1])
    grid = np.linspace(0, 1, 9)
    _, gy = lorenz_curve(np.array([1, 1, 1, 1]), grid)
    np.testing.assert_allclose(gy, grid)  # equality line


def test_window_summary_closed_form():
    # seed 0: value = round; seed 1: value = round + 2; 10 rounds, window 3
    rows = [(r, float(r), "p", s, "gini", r + 2.0 * s) for s in (0, 1) for r in range(10)]
    df = pd.DataFrame(rows, columns=["round", "time", "policy", "seed", "metric", "value"])
    s = window_summary(df, window=3).loc[("gini", "p")]
    # first: seed means 1 and 3 -> mean 2, sd sqrt(2); last (rounds 7-9): 8 and 10 -> 9
    assert s["first_mean"] == pytest.approx(2.0)
    assert s["first_sd"] == pytest.approx(math.sqrt(2))
    assert s["last_mean"] == pytest.approx(9.0)
    assert s["change_mean"] == pytest.approx(7.0) and s["change_sd"] == pytest.approx(0.0)
    assert s["rel_change"] == pytest.approx(3.5) and s["n_seeds"] == 2


def test_window_summary_pairs_seeds_and_keeps_empty_rows():
    # seed 1 lacks the first week of gini; "late" is NaN in the whole first week
    rows = [(r, float(r), "p", s, "gini", float(r)) for s in (0, 1) for r in range(10)]
    rows = [row for row in rows if not (row[3] == 1 and row[0] < 3)]
    rows += [(r, float(r), "p", 0, "late", np.nan if r < 3 else 1.0) for r in range(10)]
    df = pd.DataFrame(rows, columns=["round", "time", "policy", "seed", "metric", "value"])
    summary = window_summary(df, window=3)
    g = summary.loc[("gini", "p")]
    assert g["n_seeds"] == 1 and g["first_mean"] == pytest.approx(1.0)
    assert g["change_mean"] == pytest.approx(g["last_mean"] - g["first_mean"])
    late = summary.loc[("late", "p")]
    assert late["n_seeds"] == 0 and math.isnan(late["first_mean"])


@pytest.mark.parametrize(
    ("x", "signed", "expected"),
    [(0.81234, False, "0.812"), (0.0123, True, "+0.012"), (12.345, False, "12.35"),
     (1234.5, False, "1,234"), (float("nan"), False, "n/a"), (0.0, True, "+0.000"),
     (-0.000412, True, "-0.000412"), (0.00999, False, "0.010"), (1e-9, False, "0.000000")],
)  # fmt: skip
def test_format_number(x, signed, expected):
    assert format_number(x, signed=signed) == expected


@pytest.mark.parametrize(
    ("mean", "sd", "signed", "expected"),
    [(0.31712, 0.000775, False, "0.317 ± 0.001"), (0.00123, 0.0004, True, "+0.00123 ± 0.00040"),
     (1234.5, 56.7, False, "1,234 ± 57"), (0.5, float("nan"), False, "0.500")],
)  # fmt: skip
def test_format_mean_sd(mean, sd, signed, expected):
    assert format_mean_sd(mean, sd, signed=signed) == expected


def test_markdown_table():
    table = markdown_table(["a", "bb"], [["x|y", 1.5]], "lr")
    assert table.splitlines() == ["| a    |  bb |", "| :--- | --: |", "| x\\|y | 1.5 |"]
    with pytest.raises(ValueError, match="every row must have 2 cells"):
        markdown_table(["a", "b"], [[1]])


def test_select_alternating_user_prefers_most_data():
    users = _users(np.random.default_rng(1))
    # user 5 misses every third round under greedy; user 9 has the most data everywhere
    assert select_alternating_user(users, POLICIES) == (min(SEEDS), 9)
    assert select_alternating_user(users[users["kind"] == "stable"], POLICIES) is None


def test_policy_colour_is_fixed_across_figures():
    rng = np.random.default_rng(2)
    palette = policy_palette(["oracle", "greedy"])
    metrics = _metrics(rng, ["gini"])
    fig_t = plot_trajectories(metrics, palette=palette)
    fig_l = plot_lorenz(_exposure(rng), palette=palette)
    for fig in (fig_t, fig_l):
        colours = {ln.get_label().split(" ")[0]: ln.get_color() for ln in fig.axes[0].lines}
        assert colours["greedy"] == palette["greedy"]
        assert colours["oracle"] == palette["oracle"]
    assert palette["oracle"] != palette["greedy"]


def test_tradeoff_labels_do_not_overlap_and_error_bars_span_seeds():
    """Coinciding points (a re-ranker that leaves the exposure as greedy's) get separate labels
    near their points, and each error bar spans the seeds' min to max."""
    import matplotlib.pyplot as plt

    from simulator.plotting import plot_tradeoff

    rows = []
    finals = {  # policy: per-seed (gini, ctr)
        "greedy": [(0.96, 0.20), (0.97, 0.21)],
        "calibrated": [(0.96, 0.20), (0.97, 0.21)],  # the same point as greedy
        "eps5": [(0.95, 0.19), (0.95, 0.20)],
        "ucb": [(0.40, 0.05), (0.50, 0.06)],
    }
    for policy, per_seed in finals.items():
        for seed, (g, c) in enumerate(per_seed):
            for rnd in range(10):
                rows += [
                    (rnd, float(rnd), policy, seed, "gini", g),
                    (rnd, float(rnd), policy, seed, "ctr", c),
                ]
    df = pd.DataFrame(rows, columns=["round", "time", "policy", "seed", "metric", "value"])
    fig = plot_tradeoff(df, ys=("ctr",))
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t for t in ax.texts}
    assert set(labels) == set(finals)
    from matplotlib.text import Text

    boxes = {name: Text.get_window_extent(t, renderer) for name, t in labels.items()}  # text only
    names = sorted(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)
    inside = ax.get_window_extent(renderer)
    for name, box in boxes.items():  # inside the axes
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, (
            name
        )
    for name, t in labels.items():  # within two rings of offsets of its point
        dx, dy = t.xyann
        assert abs(dx) == 5 and -12 - 2 * 11 <= dy <= 4 + 2 * 11, (name, t.xyann)
    # error bars: the ucb point's horizontal bar spans gini 0.40..0.50
    spans = [
        seg
        for coll in ax.collections
        for seg in coll.get_segments()
        if np.allclose(sorted([seg[0][0], seg[1][0]]), [0.40, 0.50])
    ]
    assert spans
    plt.close(fig)


def test_tradeoff_with_equal_seeds_whose_mean_rounds_past_them():
    """The mean of three copies of 0.9875 is 0.9875000000000002 > max: the error extent must be
    clipped at 0 (matplotlib refuses a negative one), not crash the run's figures."""
    import matplotlib.pyplot as plt

    from simulator.plotting import error_extents, plot_tradeoff

    assert np.mean([0.9875] * 3) > 0.9875  # the premise
    err = error_extents(np.mean([0.9875] * 3), 0.9875, 0.9875)
    assert err.shape == (2, 1) and (err >= 0).all() and err[1, 0] == 0.0
    np.testing.assert_allclose(error_extents([1.0, 2.0], [0.5, 2.5], [1.5, 3.0]), [[0.5, 0.0], [0.5, 1.0]])
    rows = [
        (rnd, float(rnd), policy, seed, metric, value)
        for policy in ("popularity", "greedy")
        for seed in range(3)
        for rnd in range(5)
        for metric, value in (("gini", 0.9875 if policy == "popularity" else 0.9 + 0.01 * seed), ("ctr", 0.1))
    ]
    df = pd.DataFrame(rows, columns=["round", "time", "policy", "seed", "metric", "value"])
    plt.close(plot_tradeoff(df, ys=("ctr",)))


def test_report_says_when_no_user_was_active_instead_of_a_flat_gini():
    import pandas as pd

    from simulator.report import _what_happened

    idx = pd.MultiIndex.from_tuples(
        [("n_active", "idle"), ("gini", "idle"), ("n_active", "busy"), ("gini", "busy")],
        names=["metric", "policy"],
    )
    summary = pd.DataFrame(
        {
            "first_mean": [0.0, 0.0, 50.0, 0.5],
            "last_mean": [0.0, 0.0, 50.0, 0.9],
            "change_mean": [0.0, 0.0, 0.0, 0.4],
            "rel_change": [float("nan"), float("nan"), 0.0, 0.8],
            "n_seeds": [1, 1, 1, 1],
        },
        index=idx,
    )
    text = _what_happened(summary, ["idle", "busy"])
    assert "Under **idle**, no user was active" in text and "idle**, the Gini" not in text
    assert "Under **busy**, the Gini of exposure rose from 0.5" in text
