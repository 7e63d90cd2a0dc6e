"""Figures and report of a parameter sweep: metrics against swept parameters, with seed CIs.

A sweep's ``metrics.parquet`` carries one column per swept key (``policies.eps.epsilon``,
``users.drift_sigma``...). A policy whose cells do not vary with a key has NaN there; it is drawn
as a horizontal reference line (its mean over seeds) in the final-value figure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from simulator.errors import ResultsError
from simulator.io import atomic_write_text
from simulator.plotting import apply_theme, error_extents, policy_palette, save_figure
from simulator.report import markdown_table, partial_notice, read_manifest, read_metrics

#: Panels per row of the sweep figures (wider rows stop fitting a page or a slide).
PANEL_COLUMNS = 3
HEADLINE = ("gini", "coverage", "entropy_shown", "alt_genre_loss", "ctr", "utility")
LABELS = {
    "gini": "Gini of exposure",
    "coverage": "catalog coverage",
    "entropy_shown": "shown-genre entropy",
    "alt_genre_loss": "alternating users losing a genre",
    "ctr": "CTR",
    "utility": "expected clicks per slate",
}


def swept_keys(manifest: dict[str, Any]) -> list[str]:
    """The swept config keys of a run, in config order."""
    sweep = (manifest.get("config") or {}).get("sweep") or {}
    return list(sweep.get("grid") or {}) + list(sweep.get("zip") or {})


def final_values(metrics: pd.DataFrame, keys: list[str], last_rounds: int = 7) -> pd.DataFrame:
    """Per (policy, swept values, seed, metric): the mean over the last ``last_rounds`` rounds."""
    last = metrics["round"].max()
    tail = metrics[metrics["round"] > last - last_rounds]
    group = ["policy", *keys, "seed", "metric"]
    return tail.groupby(group, dropna=False)["value"].mean().reset_index()


def seed_ci(values: pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval over seeds: ``mean ± t_{n-1} · sd / sqrt(n)`` (n = seeds)."""
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return m, m - half, m + half


def plot_final_vs_parameter(final: pd.DataFrame, keys: list[str], palette: dict) -> plt.Figure:
    """One row per swept key, one column per headline metric: final value vs parameter."""
    apply_theme()
    metrics = [m for m in HEADLINE if m in set(final["metric"])]
    # the metrics wrap at PANEL_COLUMNS per row (six in one row made a 22-inch-wide figure)
    ncols = max(1, min(PANEL_COLUMNS, len(metrics)))
    rows_per_key = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(
        len(keys) * rows_per_key, ncols, figsize=(3.6 * ncols, 3.2 * len(keys) * rows_per_key), squeeze=False
    )
    for c in range(len(metrics), rows_per_key * ncols):  # unused cells of each key's last row
        for r in range(len(keys)):
            axes[r * rows_per_key + c // ncols][c % ncols].set_visible(False)
    styles = ["-", "--", ":", "-."]
    for r, key in enumerate(keys):
        others = [k for k in keys if k != key]
        for c, metric in enumerate(metrics):
            ax = axes[r * rows_per_key + c // ncols][c % ncols]
            sub = final[final["metric"] == metric]
            # one series per policy and combination of the *other* swept values (never pooled)
            # one line style per combination of the other keys' values, the same for every
            # policy (drift = 0 is solid for all of them)
            combos = (
                {tuple(str(v) for v in r) for r in sub[others].itertuples(index=False)} if others else set()
            )
            style_of = {combo: i for i, combo in enumerate(sorted(combos))}
            for (policy, *rest), rows in sub.groupby(["policy", *others], dropna=False, sort=False):
                s = style_of.get(tuple(str(v) for v in rest), 0)
                color = palette.get(policy)
                tag = ", ".join(f"{k}={v}" for k, v in zip(others, rest, strict=True) if v == v)
                label = f"{policy} ({tag})" if tag else policy
                ls = styles[s % len(styles)] if others else "-"
                if rows[key].isna().all():  # this policy does not vary with the key
                    m, lo, hi = seed_ci(rows["value"])
                    ax.axhline(m, color=color, ls="--", lw=1.2, label=f"{label}, not swept")
                    ax.axhspan(lo, hi, color=color, alpha=0.12, lw=0)
                    continue
                xs, ms, los, his = [], [], [], []
                for x, grp in rows.groupby(key, sort=True):
                    m, lo, hi = seed_ci(grp["value"])
                    xs.append(x)
                    ms.append(m)
                    los.append(lo)
                    his.append(hi)
                err = error_extents(ms, los, his)
                ax.errorbar(xs, ms, yerr=err, color=color, ls=ls, marker="o", capsize=3, label=label)
            ax.set_xlabel(key)
            ax.set_ylabel("")
            ax.set_title(LABELS.get(metric, metric))
        handles, labels = axes[r * rows_per_key][0].get_legend_handles_labels()
        axes[r * rows_per_key][-1].legend(
            handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small", frameon=False
        )
    fig.suptitle("Last-week value against the swept parameter (mean over seeds, 95% t-interval)")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def plot_sweep_trajectories(
    metrics: pd.DataFrame, key: str, palette: dict, metric: str = "gini"
) -> plt.Figure:
    """``metric`` over time, one panel per value of ``key``, one line per policy (band = seeds)."""
    apply_theme()
    sub = metrics[metrics["metric"] == metric].copy()
    values = sorted(sub[key].dropna().unique())
    ncols = max(1, min(PANEL_COLUMNS, len(values)))
    nrows = max(1, math.ceil(len(values) / ncols))
    fig, grid = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 3.4 * nrows), squeeze=False, sharey=True)
    axes = grid.ravel()
    for ax in axes[len(values) :]:
        ax.set_visible(False)
    for ax, value in zip(axes, values, strict=False):
        panel = sub[(sub[key] == value) | sub[key].isna()]
        sns.lineplot(
            data=panel,
            x="round",
            y="value",
            hue="policy",
            palette=palette,
            errorbar=("pi", 100),
            ax=ax,
            legend=ax is axes[0],
        )
        ax.set_title(f"{key} = {value}")
        ax.set_xlabel("day")
        ax.set_ylabel(LABELS.get(metric, metric))
    fig.suptitle(f"{LABELS.get(metric, metric)} over time, by {key} (band: min-max over seeds)")
    fig.tight_layout()
    return fig


#: Days over which "long-run" utility is averaged in the gain figure.
LONG_RUN_DAYS = 30


def utility_gain(
    metrics: pd.DataFrame, keys: list[str], baseline: str, days: int = LONG_RUN_DAYS
) -> pd.DataFrame:
    """Long-run utility of every policy minus ``baseline``'s, paired by seed and swept point.

    Utility is the expected clicks per slate (``utility``), averaged over the last ``days``
    rounds of each cell. Policies that do not vary with a key are matched on every value of it.

    Returns
    -------
    DataFrame with columns ``policy, *keys, seed, gain`` (one row per cell, baseline excluded).
    """
    last = metrics["round"].max()
    tail = metrics[(metrics["metric"] == "utility") & (metrics["round"] > last - days)]
    cell = tail.groupby(["policy", *keys, "seed"], dropna=False)["value"].mean().reset_index()
    base = cell[cell["policy"] == baseline].drop(columns="policy").rename(columns={"value": "base"})
    others = cell[cell["policy"] != baseline]
    parts = []
    # match on the keys both sides vary; a side's unswept (NaN) key takes the other side's values
    for _, grp in others.groupby(others[keys].isna().apply(tuple, axis=1), sort=False):
        on = [k for k in keys if grp[k].notna().all() and base[k].notna().all()]
        left = grp.drop(columns=[k for k in keys if grp[k].isna().all()])
        right = base.drop(columns=[k for k in keys if k not in on and k in left.columns])
        parts.append(left.merge(right, on=[*on, "seed"]))
    if not parts:
        return pd.DataFrame(columns=["policy", *keys, "seed", "gain"])
    out = pd.concat(parts, ignore_index=True)
    out["gain"] = out["value"] - out["base"]
    return out[["policy", *keys, "seed", "gain"]]


def plot_utility_gain(gain: pd.DataFrame, keys: list[str], baseline: str, palette: dict) -> plt.Figure:
    """Long-run utility gain over ``baseline`` against the most-valued swept key, a panel per other point."""
    apply_theme()
    # x: the key with the most values (a curve), the other keys: one panel per combination
    x = max(keys, key=lambda k: gain[k].nunique())
    facet = [k for k in keys if k != x]
    groups = list(gain.groupby(facet, dropna=False, sort=True)) if facet else [((), gain)]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False, sharey=True)
    for ax, (vals, panel) in zip(axes[0], groups, strict=True):
        vals = vals if isinstance(vals, tuple) else (vals,)
        for policy, rows in panel.groupby("policy", sort=False):
            stats_ = [(v, *seed_ci(g["gain"])) for v, g in rows.groupby(x, sort=True)]
            xs, ms, los, his = zip(*stats_, strict=True)
            ax.errorbar(
                xs,
                ms,
                yerr=error_extents(ms, los, his),
                color=palette.get(policy),
                marker="o",
                capsize=3,
                label=policy,
            )
        ax.axhline(0.0, color="0.3", lw=1, ls=":")
        ax.set_title(", ".join(f"{k} = {v}" for k, v in zip(facet, vals, strict=True)) or "")
        ax.set_xlabel(x)
    axes[0][0].set_ylabel(f"utility gain over {baseline}\n(expected clicks / slate)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small", frameon=False)
    fig.suptitle(
        f"Long-run utility (last {LONG_RUN_DAYS} days) minus {baseline}'s\n"
        "paired by seed (mean, 95% t-interval); above 0: exploring pays"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    return fig


def plot_sweep(run_dir: str | Path) -> list[Path]:
    """Write the sweep figures of a results folder (PNG + SVG); returns the paths.

    Raises
    ------
    ResultsError
        If the folder is not a finished sweep's results folder.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    keys = swept_keys(manifest)
    metrics = read_metrics(run_dir)
    missing = [k for k in keys if k not in metrics.columns]
    if not keys or missing:
        raise ResultsError(f"{run_dir} is not a sweep's results folder (missing {missing or keys})")
    palette = policy_palette(list(dict.fromkeys(metrics["policy"])))
    final = final_values(metrics, keys)
    out = save_figure(plot_final_vs_parameter(final, keys, palette), run_dir / "figures" / "sweep_final")
    for key in keys:
        fig = plot_sweep_trajectories(metrics, key, palette)
        out += save_figure(fig, run_dir / "figures" / f"sweep_trajectories_{key.replace('.', '_')}")
    baseline = next(iter(palette))  # the config's first policy
    gain = utility_gain(metrics, keys, baseline)
    if not gain.empty and "utility" in set(metrics["metric"]):
        fig = plot_utility_gain(gain, keys, baseline, palette)
        out += save_figure(fig, run_dir / "figures" / "sweep_utility_gain")
    plt.close("all")
    return out


def write_sweep_report(run_dir: str | Path, figures: list[Path]) -> Path:
    """``report.md`` of a sweep: description, figures, and the last-week table with seed CIs."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    keys = swept_keys(manifest)
    metrics = read_metrics(run_dir)
    final = final_values(metrics, keys)
    exp = manifest.get("experiment") or {}
    lines = [f"# {exp.get('name', run_dir.name)}: parameter sweep", "", exp.get("description", ""), ""]
    lines += [f"Swept: {', '.join(f'`{k}`' for k in keys)}; seeds: {manifest.get('seeds')}.", ""]
    lines += partial_notice(manifest)
    for p in figures:
        if p.suffix == ".png":
            lines += [f"![{p.stem}](figures/{p.name})", ""]
    rows = []
    for (policy, *vals), grp in final.groupby(["policy", *keys], dropna=False, sort=False):
        cells = [policy] + ["—" if isinstance(v, float) and np.isnan(v) else v for v in vals]
        for metric in HEADLINE:
            m, lo, hi = seed_ci(grp.loc[grp["metric"] == metric, "value"])
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(m) else "n/a")
        rows.append(cells)
    lines += [
        "## Last week, mean over seeds [95% t-interval]",
        "",
        markdown_table(["policy", *keys, *HEADLINE], rows),
        "",
    ]
    baseline = next(iter(dict.fromkeys(metrics["policy"])))
    gain = utility_gain(metrics, keys, baseline)
    if not gain.empty:
        rows = []
        for (policy, *vals), grp in gain.groupby(["policy", *keys], dropna=False, sort=False):
            m, lo, hi = seed_ci(grp["gain"])
            cells = [policy] + ["—" if isinstance(v, float) and np.isnan(v) else v for v in vals]
            rows.append([*cells, f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]"])
        lines += [
            f"## Long-run utility gain over {baseline} (last {LONG_RUN_DAYS} days, paired by seed)",
            "",
            "Expected clicks per slate minus the baseline's; mean over seeds [95% t-interval].",
            "",
            markdown_table(["policy", *keys, "gain"], rows),
            "",
        ]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
