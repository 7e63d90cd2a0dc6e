"""The OPE study (``recloop ope CONFIG``): off-policy estimates against the simulator's truth.

For every seed:

1. **Targets on-policy.** Each target policy runs in the world for ``n_rounds`` days, frozen
   after its first fit on the pre-system history. Its value is the mean number of clicks per
   session (``truth_onpolicy``) and the mean expected clicks of its slates,
   ``Σ_k P(E_k) r(u, i_k)`` — the engine's ``utility`` metric (``truth_expected``).
2. **Loggers.** Each logging policy runs in the *same* world: every component draws from its own
   named stream (:mod:`simulator.rng`), so the users, their sessions, their tastes and the click
   uniforms are identical to the targets' runs (common random numbers). Its impression log is
   written to Parquet and read back with :func:`~simulator.ope.data.load_slate_log`; the
   estimators use the logged propensities, never recomputed ones.
3. **Estimates.** For each (logger, target): the target's exact propensities of the logged
   (item, position) pairs (:func:`~simulator.ope.simulation.position_marginals`, replayed day
   by day so the oracle sees each day's tastes), a deliberately misspecified reward model
   ``q̂(a, k) = σ(b + β_a + β_k)`` (no user: "item popularity by position", cross-fitted over
   sessions) for DM and DR, and every estimator with a bootstrap interval over sessions; the
   clipping sweep re-runs the clippable estimators at each threshold λ.

With ``share_model = true`` every policy's model is initialised from one stream, so a logger
and a target that wrap the same base (``epsilon_greedy`` over ``greedy`` and ``greedy``) share
the same frozen model, and a target equal to the logger has every importance weight exactly 1.

Outputs (``results/ope/<name>/`` or ``--out``), every file written atomically:

``estimates.parquet``
    seed, logger, target, estimator, lambda (inf = unclipped), estimate, ci_low, ci_high,
    truth_onpolicy, truth_expected, n_sessions, status ("ok", or why an estimate is undefined:
    then estimate and interval are NaN — stated, never silent).
``diagnostics.parquet``
    seed, logger, target, n_sessions, ess_share, mean_weight, max_weight, support_share.
``truths.parquet``
    seed, policy, role (logger / target), truth_onpolicy, truth_expected, n_sessions.
``summary.csv``, ``summary.md``
    Per (logger, target, estimator, lambda): bias, its standard error, sd, RMSE and interval
    coverage over seeds, against the on-policy truth (and the bias / coverage against the
    expected truth).
``figures/``
    ``estimate_vs_truth``, ``error_vs_divergence``, ``clipping`` (PNG and SVG).
``logs/policy=<logger>/seed=<s>/``
    The logged impressions (recloop's log schema).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.config import ExperimentConfig
from simulator.errors import ResultsError, ValidationError
from simulator.io import atomic_write_json, atomic_write_text, write_parquet
from simulator.ope.data import SlateFeedback, load_slate_log
from simulator.ope.reward_model import RewardModel
from simulator.ope.simulation import (
    SLATE_ESTIMATORS,
    PositionMarginals,
    position_marginals,
    slate_estimate,
    weight_diagnostics,
)
from simulator.ope.study_config import OPEStudyConfig, parse_study_config
from simulator.rng import stream

__all__ = [
    "SHARED_MODEL_STREAM",
    "StudyResult",
    "fit_item_position_model",
    "frozen_model",
    "logged_target_arrays",
    "on_policy_truth",
    "run_seed",
    "run_study",
    "summarise",
]

#: Name of the stream every policy's model is initialised from when ``share_model`` is on.
SHARED_MODEL_STREAM = "ope-shared-model"
#: Grouping keys of one estimator's results.
GROUP = ["logger", "target", "estimator", "lambda"]


# --------------------------------------------------------------------------------------------
# one seed
# --------------------------------------------------------------------------------------------


def frozen_model(
    config: ExperimentConfig, label: str, seed: int, *, share_model: bool, log_dir: Path | None = None
):
    """A :class:`~simulator.engine.model.RecloopModel` for one policy of the study.

    With ``share_model`` the policy is reset once more (before anything is fitted) from the
    shared stream ``policy-init:ope-shared-model`` instead of its own label's, so every policy
    wrapping the same base fits the same model. Policies stay frozen because the study's
    ``retrain_every_days`` exceeds ``n_rounds`` (checked by the config).
    """
    from simulator.engine.model import RecloopModel
    from simulator.policies import WorldView

    model = RecloopModel(config, label, seed, log_dir=log_dir)
    if share_model:
        world = WorldView(model.population.n_users, model.catalog, model.k, model.population)
        model.policy.reset(world, stream(seed, f"policy-init:{SHARED_MODEL_STREAM}"))
    return model


def on_policy_truth(model: Any) -> dict[str, float]:
    """Mean clicks per session and mean expected clicks per session of a finished run.

    Every active user has one session per round, so ``clicks_per_user`` is clicks per session;
    rounds are weighted by their number of sessions (``n_active``).
    """
    mv = model.datacollector.get_model_vars_dataframe()
    n = mv["n_active"].to_numpy(np.float64)
    keep = n > 0
    if not keep.any():
        raise ResultsError(f"policy {model.policy_label!r} had no session in {len(n)} rounds")
    total = n[keep].sum()
    return {
        "truth_onpolicy": float((mv["clicks_per_user"].to_numpy()[keep] * n[keep]).sum() / total),
        "truth_expected": float((mv["utility"].to_numpy()[keep] * n[keep]).sum() / total),
        "n_sessions": int(total),
    }


def fit_item_position_model(
    items: np.ndarray,
    reward: np.ndarray,
    n_items: int,
    *,
    folds: int,
    regularization: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted reward model q̂(a, k) = σ(b + β_a + β_k) from a slate log (no user features).

    Parameters
    ----------
    items, reward : ndarray of shape (n, K)
        Logged slates and clicks.
    n_items : int
    folds : int
        Sessions are split into ``folds`` random folds; the table of a fold is fitted on the
        others (1: one table fitted on every session).
    regularization : float
        L2 strength of :class:`~simulator.ope.reward_model.RewardModel` (logistic link).
    rng : numpy.random.Generator
        Fold assignment.

    Returns
    -------
    fold : ndarray of shape (n,), int64
        Each session's fold.
    tables : ndarray of shape (folds, n_items, K), float64
        ``tables[f]`` is q̂ for the sessions of fold f.

    Notes
    -----
    The model knows nothing about the user, so it is misspecified whenever relevance is
    personal: its q̂(a, k) is the click rate of item a at position k among the users the
    *logger* showed it to. DM inherits that bias; DR corrects it with the weighted residuals.
    """
    n, k = items.shape
    folds = min(int(folds), n)
    fold = rng.permutation(n) % folds
    pos = np.broadcast_to(np.arange(k), (n, k))
    tables = np.empty((folds, n_items, k), dtype=np.float64)
    for f in range(folds):
        train = fold != f if folds > 1 else np.ones(n, dtype=bool)
        model = RewardModel(kind="logistic", regularization=regularization, interactions=False)
        model.fit(
            action=items[train].ravel(),
            reward=reward[train].ravel(),
            n_actions=n_items,
            position=pos[train].ravel(),
            len_list=k,
        )
        tables[f] = model.predict(n_rounds=1)[0]
    return fold.astype(np.int64), tables


def logged_target_arrays(
    target_model: Any, feedback: SlateFeedback, users: np.ndarray, tables: np.ndarray, fold: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The target's propensities of the logged pairs and its DM term, session by session.

    The target's marginals are computed day by day with the population moved to that day
    (``Population.advance``; exact because the world is stationary apart from the
    deterministic alternation of tastes), so a target that reads the true relevance (the
    oracle) ranks with that day's tastes, as in its on-policy run.

    Returns
    -------
    target_pscore : ndarray of shape (n, K), float64
        π(a_ik at k | u_i).
    dm_term : ndarray of shape (n,), float64
        Σ_k Σ_a π(a at k | u_i) q̂_fold(i)(a, k).
    """
    n, k = feedback.slate_action.shape
    pop = target_model.population
    policy = target_model.policy
    pi = np.empty((n, k), dtype=np.float64)
    dm = np.empty(n, dtype=np.float64)
    days = np.unique(feedback.round) if pop.alternating.any() else [None]
    probe = np.random.default_rng(0)
    for day in days:
        idx = np.arange(n) if day is None else np.flatnonzero(feedback.round == day)
        if day is not None:
            pop.advance(float(day), probe)  # deterministic here: drift and satiation are off
        marg: PositionMarginals = position_marginals(policy, users[idx], k, probe)
        pi[idx] = marg.at(feedback.slate_action[idx])
        per_fold = np.stack([marg.expected(t) for t in tables])  # (folds, len(idx))
        dm[idx] = per_fold[fold[idx], np.arange(idx.size)]
    return pi, dm


def _lambda_grid(cfg: OPEStudyConfig, estimator: str) -> list[float]:
    est = cfg.estimators
    extra = sorted(est.clip_lambdas) if estimator in est.clip_estimators else []
    return [np.inf, *extra]


def _estimate(
    name: str, lam: float, *, n_bootstrap: int, alpha: float, rng: np.random.Generator, **arrays: Any
) -> tuple[float, float, float, str]:
    """(estimate, ci_low, ci_high, status); an undefined SNIPS is NaN with the reason as status."""
    try:
        iv = slate_estimate(
            name, lambda_=lam, n_bootstrap_samples=n_bootstrap, alpha=alpha, random_state=rng, **arrays
        )
    except ValidationError as err:
        if name != "snips" or "estimate is undefined" not in str(err):
            raise  # only self-normalisation can be undefined on valid input
        return np.nan, np.nan, np.nan, f"undefined: {err}"
    return iv.estimate, iv.lower, iv.upper, "ok"


def run_seed(config_data: dict[str, Any], seed: int, log_root: str) -> dict[str, pd.DataFrame]:
    """Every run and estimate of one seed (picklable: used by the process pool).

    Parameters
    ----------
    config_data : dict
        The study config mapping (re-validated here).
    seed : int
    log_root : str
        Folder for the loggers' impression logs (``policy=<l>/seed=<s>/``).

    Returns
    -------
    dict of str to DataFrame
        ``estimates``, ``diagnostics`` and ``truths`` rows of this seed.
    """
    from threadpoolctl import threadpool_limits

    cfg = parse_study_config(config_data, source="(study)")
    exp = cfg.experiment_config()
    share = cfg.study.share_model
    est = cfg.estimators
    n_items, n_users = exp.catalog.n_items, exp.users.n_users
    truths: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    diag: list[dict[str, Any]] = []
    with threadpool_limits(limits=1):
        targets = {}
        for label in cfg.targets:
            model = frozen_model(exp, label, seed, share_model=share)
            model.run()
            targets[label] = (model, on_policy_truth(model))
            truths.append({"seed": seed, "policy": label, "role": "target", **targets[label][1]})
        for logger in cfg.loggers:
            log_dir = Path(log_root) / f"policy={logger}" / f"seed={seed}"
            if log_dir.exists():
                shutil.rmtree(log_dir)
            model = frozen_model(exp, logger, seed, share_model=share, log_dir=log_dir)
            model.run()
            truths.append({"seed": seed, "policy": logger, "role": "logger", **on_policy_truth(model)})
            del model
            fb = load_slate_log(log_dir, policy=logger, n_actions=n_items)
            users = (fb.session_id - fb.round * n_users).astype(np.int64)
            reward = fb.reward
            fold, tables = (np.zeros(fb.n_slates, dtype=np.int64), np.zeros((1, n_items, fb.len_list)))
            if {"dm", "dr"} & set(est.names):
                fold, tables = fit_item_position_model(
                    fb.slate_action,
                    reward,
                    n_items,
                    folds=est.reward_model_folds,
                    regularization=est.reward_model_regularization,
                    rng=stream(seed, f"ope-reward-model:{logger}"),
                )
            q_logged = tables[fold[:, None], fb.slate_action, np.arange(fb.len_list)[None, :]]
            for target, (tmodel, truth) in targets.items():
                pi, dm = logged_target_arrays(tmodel, fb, users, tables, fold)
                diag.append(
                    {
                        "seed": seed,
                        "logger": logger,
                        "target": target,
                        "n_sessions": fb.n_slates,
                        **weight_diagnostics(fb.pscore, pi),
                    }
                )
                for name in est.names:
                    for lam in _lambda_grid(cfg, name):
                        value, lo, hi, status = _estimate(
                            name,
                            lam,
                            reward=reward,
                            pscore=fb.pscore,
                            target_pscore=pi,
                            dm_term=dm,
                            q_logged=q_logged,
                            n_bootstrap=est.n_bootstrap,
                            alpha=est.alpha,
                            rng=stream(seed, f"ope-bootstrap:{logger}:{target}:{name}:{lam}"),
                        )
                        rows.append(
                            {
                                "seed": seed,
                                "logger": logger,
                                "target": target,
                                "estimator": name,
                                "lambda": float(lam),
                                "estimate": value,
                                "ci_low": lo,
                                "ci_high": hi,
                                "truth_onpolicy": truth["truth_onpolicy"],
                                "truth_expected": truth["truth_expected"],
                                "n_sessions": fb.n_slates,
                                "status": status,
                            }
                        )
    return {
        "estimates": pd.DataFrame(rows),
        "diagnostics": pd.DataFrame(diag),
        "truths": pd.DataFrame(truths),
    }


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------


def summarise(estimates: pd.DataFrame, diagnostics: pd.DataFrame | None = None) -> pd.DataFrame:
    """Bias, standard deviation, RMSE and coverage over seeds per (logger, target, estimator, λ).

    With e_s = estimate − truth_onpolicy of seed s (S seeds with a defined estimate):
    ``bias = mean(e)``, ``bias_se = sd(e)/√S``, ``sd = sd(e)`` (ddof 1; the spread of the error,
    since the truth itself differs a little between seeds; ``rmse² ≈ bias² + sd²``),
    ``sd_estimate`` = sd of the estimates themselves, ``rmse = √mean(e²)``,
    ``coverage`` = share of seeds whose interval contains truth_onpolicy, ``rel_bias`` and
    ``rel_rmse`` divided by the mean truth; ``bias_expected`` / ``coverage_expected`` against
    truth_expected; ``n_undefined`` counts seeds whose estimate is undefined.
    """
    df = estimates.copy()
    ok = df["status"] == "ok" if "status" in df else pd.Series(True, index=df.index)
    df["err"] = df["estimate"] - df["truth_onpolicy"]
    df["err_exp"] = df["estimate"] - df["truth_expected"]
    df["cover"] = (df["ci_low"] <= df["truth_onpolicy"]) & (df["truth_onpolicy"] <= df["ci_high"])
    df["cover_exp"] = (df["ci_low"] <= df["truth_expected"]) & (df["truth_expected"] <= df["ci_high"])
    df["width"] = df["ci_high"] - df["ci_low"]
    good = df[ok]
    g = good.groupby(GROUP, sort=False)
    out = pd.DataFrame(
        {
            "n_seeds": g["seed"].nunique(),
            "truth_onpolicy": g["truth_onpolicy"].mean(),
            "truth_expected": g["truth_expected"].mean(),
            "mean_estimate": g["estimate"].mean(),
            "bias": g["err"].mean(),
            "bias_se": g["err"].std(ddof=1) / np.sqrt(g["err"].count()),
            "sd": g["err"].std(ddof=1),
            "sd_estimate": g["estimate"].std(ddof=1),
            "rmse": np.sqrt(g["err"].apply(lambda e: float(np.mean(e**2)))),
            "coverage": g["cover"].mean(),
            "ci_width": g["width"].mean(),
            "bias_expected": g["err_exp"].mean(),
            "coverage_expected": g["cover_exp"].mean(),
        }
    )
    out["rel_bias"] = out["bias"] / out["truth_onpolicy"]
    out["rel_rmse"] = out["rmse"] / out["truth_onpolicy"]
    undefined = (~ok).groupby([df[c] for c in GROUP], sort=False).sum().rename("n_undefined")
    out = out.join(undefined, how="outer")
    out["n_undefined"] = out["n_undefined"].fillna(0).astype(int)
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    out = out.reset_index()
    if diagnostics is not None and len(diagnostics):
        d = diagnostics.groupby(["logger", "target"], sort=False)[
            ["ess_share", "max_weight", "support_share"]
        ].mean()
        out = out.merge(d.reset_index(), on=["logger", "target"], how="left")
    return out


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` wrote."""

    out_dir: Path
    estimates: pd.DataFrame
    diagnostics: pd.DataFrame
    truths: pd.DataFrame
    summary: pd.DataFrame
    figures: list[Path]
    seconds: float


def _run_seeds(
    cfg: OPEStudyConfig, log_root: Path, workers: int, done: Callable[[int], None]
) -> list[dict[str, pd.DataFrame]]:
    data = cfg.model_dump(mode="json")
    seeds = list(cfg.study.seeds)
    if workers <= 1 or len(seeds) <= 1:
        out = []
        for s in seeds:
            out.append(run_seed(data, s, str(log_root)))
            done(s)
        return out
    results: dict[int, dict[str, pd.DataFrame]] = {}
    with ProcessPoolExecutor(max_workers=min(workers, len(seeds)), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_seed, data, s, str(log_root)): s for s in seeds}
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    results[futures[fut]] = fut.result()
                    done(futures[fut])
        except BaseException:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [results[s] for s in seeds]


def run_study(
    cfg: OPEStudyConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    progress: bool = True,
    figures: bool = True,
) -> StudyResult:
    """Run an OPE study and write its tables, summary and figures into ``out_dir``.

    Parameters
    ----------
    cfg : OPEStudyConfig
        A validated study (:func:`~simulator.ope.study_config.load_study_config`).
    out_dir : path
        Results folder (created; files of an earlier run of the study are replaced).
    workers : int
        Processes over seeds (1 = in this process).
    progress : bool
        Show a tqdm bar over seeds.
    figures : bool
        Draw the figures.

    Returns
    -------
    StudyResult

    Raises
    ------
    ResultsError
        If ``out_dir`` is a file or holds a results folder of another kind.
    ValidationError, ConfigError
        On invalid input (nothing is written then).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file, not a folder")
    manifest = out / "manifest.json"
    if manifest.is_file() and '"kind": "ope_study"' not in manifest.read_text():
        raise ResultsError(f"{out} holds another kind of results (its manifest.json); use another --out")
    cfg.experiment_config()
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(cfg.study.seeds), desc=cfg.study.name, unit="seed", disable=not progress)
    try:
        parts = _run_seeds(cfg, out / "logs", workers, lambda _s: bar.update())
    finally:
        bar.close()
    estimates = pd.concat([p["estimates"] for p in parts], ignore_index=True)
    diagnostics = pd.concat([p["diagnostics"] for p in parts], ignore_index=True)
    truths = pd.concat([p["truths"] for p in parts], ignore_index=True)
    summary = summarise(estimates, diagnostics)
    write_parquet(out / "estimates.parquet", estimates)
    write_parquet(out / "diagnostics.parquet", diagnostics)
    write_parquet(out / "truths.parquet", truths)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    drawn: list[Path] = []
    if figures:
        from simulator.ope.study_plots import draw_study_figures

        drawn = draw_study_figures(out / "figures", estimates, summary, cfg)
    seconds = time.perf_counter() - t0
    atomic_write_text(
        out / "summary.md", summary_markdown(cfg, summary, truths, diagnostics, drawn, out, seconds)
    )
    atomic_write_json(
        manifest,
        {
            "kind": "ope_study",
            "status": "complete",
            "config": cfg.model_dump(mode="json"),
            "world": cfg.experiment_config().model_dump(mode="json"),
            "seeds": list(cfg.study.seeds),
            "seconds": round(seconds, 1),
            "written": datetime.now(UTC).isoformat(),
        },
    )
    return StudyResult(out, estimates, diagnostics, truths, summary, drawn, seconds)


# --------------------------------------------------------------------------------------------
# summary.md
# --------------------------------------------------------------------------------------------


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "—"
    if np.isinf(x):
        return "∞"
    return f"{x:.{digits}f}"


def _policy_text(spec: Any) -> str:
    params = {k: v for k, v in spec.model_dump(mode="json").items() if k != "type"}
    inner = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"`{spec.type}`" + (f" ({inner})" if inner else "")


def summary_markdown(
    cfg: OPEStudyConfig,
    summary: pd.DataFrame,
    truths: pd.DataFrame,
    diagnostics: pd.DataFrame,
    figures: list[Path],
    out: Path,
    seconds: float,
) -> str:
    """The study's summary.md: design, per-logger tables, the clipping sweep, figures."""
    exp = cfg.experiment_config()
    est = cfg.estimators
    s = len(cfg.study.seeds)
    sessions = diagnostics.groupby("seed")["n_sessions"].first().mean() if len(diagnostics) else 0
    cm = exp.click_model
    lines = [
        f"# OPE study: {cfg.study.name}",
        "",
        cfg.study.description.strip(),
        "",
        "## Design",
        "",
        f"* World: {exp.users.n_users:,} users × {exp.catalog.n_items:,} items, slates of "
        f"K = {exp.simulation.slate_size}, click model `{cm.type}`"
        + (f" (η = {cm.eta})" if cm.type == "pbm" and cm.examination is None else "")
        + f", {cfg.study.n_rounds} days per run, alternating-interest share "
        f"{exp.users.alternating_share}, no drift, no satiation; policies frozen after their "
        "first fit on the pre-system history"
        + (" (one shared model initialisation)." if cfg.study.share_model else "."),
        f"* Seeds: {s} ({', '.join(map(str, cfg.study.seeds))}); {sessions:,.0f} logged sessions "
        "per logger and seed on average.",
        "* Loggers: " + "; ".join(f"**{k}** {_policy_text(v)}" for k, v in cfg.loggers.items()) + ".",
        "* Targets: " + "; ".join(f"**{k}** {_policy_text(v)}" for k, v in cfg.targets.items()) + ".",
        f"* Estimators: {', '.join(est.names)} (per-position slate estimators; value = clicks per "
        f"session). Reward model of DM/DR: `{est.reward_model}` q̂(a, k) = σ(b + β_a + β_k), "
        f"no user features (misspecified on purpose), {est.reward_model_folds}-fold cross-fitted. "
        f"Clipping sweep of {', '.join(est.clip_estimators) or 'none'} at λ ∈ "
        f"{{{', '.join(f'{x:g}' for x in sorted(est.clip_lambdas))}}}.",
        f"* Intervals: {100 * (1 - est.alpha):g}% percentile bootstrap over sessions, "
        f"{est.n_bootstrap} resamples.",
        "* Truth: **on-policy** — the target's clicks per session when run in the same world with "
        "the same sessions and click uniforms; **expected** — the mean of Σ_k P(E_k)·r(u, i_k) "
        "over its slates (the engine's `utility`).",
        "* Columns: bias = mean over seeds of (estimate − on-policy truth) with its standard "
        "error (se); sd = standard deviation of that error; RMSE; coverage = share of seeds whose "
        "interval contains the on-policy truth; ESS = mean per-position effective sample size "
        "of the importance weights as a share of the sessions (1 = the target is the logger).",
        "",
    ]
    main = summary[np.isinf(summary["lambda"])]
    for logger in cfg.loggers:
        lines += [
            f"## Logger `{logger}`",
            "",
            "| target | ESS | truth | estimator | mean estimate | bias (se) | sd | RMSE | coverage |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for target in cfg.targets:
            sub = main[(main["logger"] == logger) & (main["target"] == target)]
            first = True
            for name in [n for n in SLATE_ESTIMATORS if n in est.names]:
                r = sub[sub["estimator"] == name]
                if r.empty:
                    continue
                r = r.iloc[0]
                undefined = f" ({int(r['n_undefined'])} undefined)" if r["n_undefined"] else ""
                lines.append(
                    f"| {target if first else ''} | {_fmt(r.get('ess_share', np.nan), 4) if first else ''} | "
                    f"{_fmt(r['truth_onpolicy']) if first else ''} | {name} | {_fmt(r['mean_estimate'])} | "
                    f"{_fmt(r['bias'])} ({_fmt(r['bias_se'])}) | {_fmt(r['sd'])} | {_fmt(r['rmse'])} | "
                    f"{_fmt(r['coverage'], 2)}{undefined} |"
                )
                first = False
        lines.append("")
    checks = main[main["estimator"].isin(["ips", "snips", "dr"])]
    if len(checks):
        z = (checks["bias"] / checks["bias_se"]).abs()
        flagged = checks[z > 3]
        lines += [
            "## Unbiasedness check",
            "",
            f"IPS, SNIPS and DR are unbiased when the logged propensities are exact: over the {s} "
            "seeds each mean error should be within 3 standard errors of 0 (|bias| ≤ 3·se). "
            f"{len(checks) - len(flagged)} of {len(checks)} (logger, target, estimator) cells pass.",
        ]
        for _, r in flagged.iterrows():
            lines.append(
                f"* `{r['logger']}` → `{r['target']}`, {r['estimator']}: bias {_fmt(r['bias'])} = "
                f"{r['bias'] / r['bias_se']:.1f} se"
            )
        dm = main[main["estimator"] == "dm"]
        if len(dm):
            lines += [
                "",
                "DM with the misspecified reward model: bias / truth per (logger, target): "
                + "; ".join(
                    f"`{r['logger']}`→`{r['target']}` {100 * r['rel_bias']:+.0f}%" for _, r in dm.iterrows()
                )
                + ".",
            ]
        lines.append("")
    clip = summary[summary["estimator"].isin(est.clip_estimators)]
    if len(clip) and est.clip_lambdas:
        lines += [
            "## Clipping: bias for variance",
            "",
            "Relative bias / relative sd (both divided by the truth) per threshold λ (∞ = unclipped).",
            "",
        ]
        lams = sorted(clip["lambda"].unique())
        header = (
            "| logger | target | estimator | "
            + " | ".join(f"λ={_fmt(x, 0) if np.isfinite(x) else '∞'}" for x in lams)
            + " |"
        )
        lines += [header, "| --- | --- | --- | " + " | ".join("---:" for _ in lams) + " |"]
        for (logger, target, name), g in clip.groupby(["logger", "target", "estimator"], sort=False):
            g = g.set_index("lambda")
            rel_sd = g["sd"] / g["truth_onpolicy"]
            cells = [
                f"{100 * g.loc[x, 'rel_bias']:+.0f}% / {100 * rel_sd[x]:.0f}%" if x in g.index else "—"
                for x in lams
            ]
            lines.append(f"| {logger} | {target} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for p in figures:
            if p.suffix == ".png":
                lines.append(f"![{p.stem}]({p.relative_to(out).as_posix()})")
                lines.append("")
    lines += [
        "## Files",
        "",
        "`estimates.parquet` (one row per seed × logger × target × estimator × λ), "
        "`diagnostics.parquet` (importance-weight diagnostics), `truths.parquet` (on-policy values), "
        "`summary.csv` (this table for every λ), `logs/` (the logged impressions).",
        "",
        f"Runtime: {seconds:.0f} s.",
        "",
    ]
    return "\n".join(lines)
