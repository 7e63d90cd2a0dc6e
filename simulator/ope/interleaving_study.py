"""Power of interleaving against A/B tests (``recloop interleave CONFIG``).

For pairs of frozen policies A and B with an exactly known gap in true utility, how many
sessions does each experiment need to detect the better policy (significant at level ``alpha``
*and* in the right direction) with probability ``power``?

Per seed (one world: catalog, users, policies fitted once on the pre-system history):

1. **Session population.** A session is a user drawn with probability ∝ ``P(active)`` (the
   engine's ``1 − exp(−activity)``). The pool holds every user ``draws_per_user`` times, each
   with its own draw of both policies' slates (deterministic policies repeat theirs).
2. **Truth.** ``U(π) = E_u Σ_k P(E_k) Σ_i π(i at k | u) r(u, i)``: expected clicks per session
   under the position-based model, from the policies' exact position marginals and the true
   relevance, over all users weighted by their session rate (no sampling).
3. **Per-session outcome distributions, exactly.** A/B: clicks per session on a policy's slate
   is Poisson-binomial with ``q_k = P(E_k) r(u, i_k)``; its distribution over {0..K} is
   averaged over the pool. Interleaving: P(A wins), P(B wins), P(tie) of every pool session
   over all coin outcomes and clicks
   (:func:`~simulator.ope.interleaving.pbm_outcome_probabilities`), averaged over the pool.
4. **Repeated experiments.** Sessions of an experiment are i.i.d. draws from the pool and their
   clicks independent, so an experiment's sufficient statistics are multinomial: the numbers of
   sessions with 0, 1, …, K clicks in each A/B arm (``n/2`` sessions each), and the numbers of
   A wins, B wins and ties among ``n`` interleaved sessions. ``experiments`` draws of these per
   size give the detection rate — the same distribution as simulating each session and click,
   at a cost independent of ``n``. The brute-force check (step 5) confirms it.
5. **Brute-force check** (first seed): at one size per (pair, method), ``validate_experiments``
   experiments with explicit sessions, Bernoulli clicks, the library's interleaving and credit
   functions, :func:`~simulator.ope.interleaving.interleaving_test` and
   ``scipy.stats.ttest_ind(equal_var=False)``.

Tests. A/B: Welch's two-sample t-test on clicks per session (two-sided), detection when
``p < alpha`` and the sign of the mean difference is that of the true gap. Interleaving: the
exact two-sided sign test of A's wins among decisive sessions (ties dropped;
:func:`~simulator.ope.interleaving.interleaving_test`), detection when ``p < alpha`` and the
winner is the truly better policy. The sessions needed for ``power`` are interpolated on the
detection-rate curve (mean over seeds) linearly in ``log n``; the **sample-size ratio** is
``n_AB / n_interleaving``. Normal approximations are reported next to them:
``n_AB ≈ 2 (z_{1−α/2} + z_β)² (σ_A² + σ_B²) / Δ²`` and, for the sign test with
``p = P(A wins | decisive)`` and ``d = P(decisive)``,
``n_IL ≈ [(z_{1−α/2}/2 + z_β √(p(1−p))) / (p − 1/2)]² / d``.

Outputs (``results/interleaving/<name>/`` or ``--out``), every file written atomically:
``pairs.csv`` (per seed and pair: utilities, gaps, outcome probabilities), ``detection.csv``
(seed, pair, method, sessions, detection rate), ``validation.csv``, ``summary.csv`` and
``summary.md`` (sessions at the target power and the ratios), ``figures/detection_vs_sessions``
(PNG and SVG), ``manifest.json``.

References
----------
Radlinski, Kurup & Joachims (2008), "How does clickthrough data reflect retrieval quality?",
CIKM (team draft). Chapelle, Joachims, Radlinski & Yue (2012), "Large-scale validation and
analysis of interleaved search evaluation", ACM TOIS 30(1), Sec. 6 (sensitivity of interleaving
against absolute metrics, sample sizes to reach significance). Welch (1947), Biometrika 34.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from simulator.errors import ResultsError
from simulator.io import atomic_write_json, atomic_write_text
from simulator.ope.interleaving import (
    balanced_credit,
    credit,
    interleave,
    interleaving_test,
    pbm_outcome_probabilities,
)
from simulator.ope.interleaving_study_config import InterleavingStudyConfig
from simulator.rng import stream

__all__ = [
    "AB",
    "PairWorld",
    "PowerStudyResult",
    "ab_detection",
    "build_pairs",
    "clicks_pmf",
    "interleaving_detection",
    "run_interleaving_study",
    "sessions_at_power",
    "sign_test_pvalues",
    "validate_pair",
]

#: Method name of the A/B test in the tables.
AB = "ab_welch"
#: Stream every policy's model is initialised from (pairs share their frozen models).
SHARED_INIT = "policy-init:interleaving-study"


# --------------------------------------------------------------------------------------------
# the world of one seed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PairWorld:
    """One pair of frozen policies on one seed's session pool.

    Attributes
    ----------
    pair : str
    users : ndarray of shape (n_pool,), int64
        The pool's sessions: every user once when both policies are deterministic, else
        ``draws_per_user`` times (each with its own slates).
    weight : ndarray of shape (n_pool,), float64
        Probability of each pool session (sums to 1; ∝ the user's ``P(active)``).
    list_a, list_b : ndarray of shape (n_pool, K), int32
        The policies' slates.
    rel_a, rel_b : ndarray of shape (n_pool, K), float64
        True relevance of their items.
    examination : ndarray of shape (K,), float64
        ``P(E_k)`` of the position-based model.
    utility_a, utility_b : float
        True expected clicks per session (exact, from the position marginals).
    """

    pair: str
    users: np.ndarray
    weight: np.ndarray
    list_a: np.ndarray
    list_b: np.ndarray
    rel_a: np.ndarray
    rel_b: np.ndarray
    examination: np.ndarray
    utility_a: float
    utility_b: float

    @property
    def gap(self) -> float:
        """``U(A) − U(B)``: positive when A is better."""
        return self.utility_a - self.utility_b


def clicks_pmf(q: np.ndarray) -> np.ndarray:
    """Distribution of the number of clicks per session (Poisson-binomial), per row.

    Parameters
    ----------
    q : ndarray of shape (n, K), float
        Independent click probabilities of the slots.

    Returns
    -------
    ndarray of shape (n, K + 1), float64
        ``P(Σ_k c_k = x)`` for ``x = 0..K``.
    """
    q = np.asarray(q, dtype=np.float64)
    n, k = q.shape
    pmf = np.zeros((n, k + 1))
    pmf[:, 0] = 1.0
    for j in range(k):
        moved = pmf[:, :-1] * q[:, j : j + 1]
        pmf *= 1.0 - q[:, j : j + 1]
        pmf[:, 1:] += moved
    return pmf


def _exact_utility(policy: Any, users: np.ndarray, weight: np.ndarray, population, exam: np.ndarray) -> float:
    """``Σ_u w_u Σ_k P(E_k) Σ_i π(i at k | u) r(u, i)`` from exact position marginals."""
    from scipy.special import expit

    from simulator.ope.simulation import position_marginals

    k = exam.size
    marg = position_marginals(policy, users, k, np.random.default_rng(0))
    total = np.empty(users.size)
    for rows, logits in population.relevance_chunks(users):
        total[rows] = expit(logits.astype(np.float64)).sum(axis=1)
    per_user = np.zeros(users.size)
    if marg.head_items.shape[1]:
        r_head = population.relevance(users, marg.head_items).astype(np.float64)  # (n, H)
        per_user += np.einsum("nhk,nh,k->n", marg.head_prob, r_head, exam)
        rest_mass = total - r_head.sum(axis=1)
    else:
        rest_mass = total
    per_user += (marg.rest_prob * exam[None, :]).sum(axis=1) * rest_mass
    return float((weight * per_user).sum() / weight.sum())


def build_pairs(cfg: InterleavingStudyConfig, seed: int) -> list[PairWorld]:
    """Build the seed's world once and every pair's session pool.

    Policies are reset from one shared stream (``policy-init:interleaving-study``), so two
    policies wrapping the same base share its frozen model, and fitted once on the pre-system
    history; policies with the same spec are built once.
    """
    from simulator.catalog.catalog import make_catalog
    from simulator.clicks.models import make_click_model
    from simulator.logs.window import LogWindow
    from simulator.policies import WorldView, make_policy
    from simulator.users.population import make_population, organic_history

    exp = cfg.experiment_config()
    sim = exp.simulation
    k = sim.slate_size
    catalog = make_catalog(exp.catalog, stream(seed, "catalog"))
    population = make_population(exp.users, exp.relevance, catalog, stream(seed, "users"))
    population.advance(0.0, stream(seed, "drift"))  # day-0 tastes, as the engine's first round
    cm = exp.click_model
    click_model = make_click_model(
        "pbm", eta=cm.eta, examination=tuple(cm.examination) if cm.examination else None
    )
    exam = np.asarray(click_model.curve(k), dtype=np.float64)
    specs = {label: exp.policies[label] for label in exp.policies}
    needs = False
    built: dict[str, Any] = {}
    for spec in specs.values():
        key = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
        if key not in built:
            built[key] = make_policy(spec.type, None, **spec.params)
            needs = needs or built[key].needs_impressions
    window = LogWindow(sim.train_window_days, needs)
    day, user, item = organic_history(population, exp.history, stream(seed, "history"))
    window.add_organic(day, user, item)
    window.advance(0)
    world = WorldView(population.n_users, catalog, k, population)
    for policy in built.values():
        policy.reset(world, stream(seed, SHARED_INIT))
        policy.fit(window)

    all_users = np.arange(population.n_users, dtype=np.int64)
    rate = -np.expm1(-population.activity.astype(np.float64))
    draws = cfg.study.draws_per_user
    utility_cache: dict[str, float] = {}
    out = []
    for label in cfg.pairs:
        policies, keys = [], []
        for side in ("a", "b"):
            spec = specs[cfg.policy_label(label, side)]
            keys.append(json.dumps(spec.model_dump(mode="json"), sort_keys=True))
            policies.append(built[keys[-1]])
        slates = [
            p.recommend(all_users, k, stream(seed, f"interleaving-study:{label}:{side}"))
            for p, side in zip(policies, ("a", "b"), strict=True)
        ]
        if all(s.exact and np.all(s.pscore == 1.0) for s in slates):
            users, weight = all_users, rate / rate.sum()  # deterministic: one session per user
        else:  # a randomised policy: draws_per_user slates per user
            users = np.repeat(all_users, draws)
            weight = np.repeat(rate / rate.sum(), draws) / draws
            slates = [
                p.recommend(users, k, stream(seed, f"interleaving-study:{label}:{side}", 1))
                for p, side in zip(policies, ("a", "b"), strict=True)
            ]
        lists = [s.items.astype(np.int32) for s in slates]
        rels = [population.relevance(users, s.items).astype(np.float64) for s in slates]
        utils = []
        for key, policy in zip(keys, policies, strict=True):
            if key not in utility_cache:
                utility_cache[key] = _exact_utility(policy, all_users, rate, population, exam)
            utils.append(utility_cache[key])
        out.append(PairWorld(label, users, weight, *lists, *rels, exam, *utils))
    return out


# --------------------------------------------------------------------------------------------
# repeated experiments
# --------------------------------------------------------------------------------------------


def sign_test_pvalues(wins_a: np.ndarray, wins_b: np.ndarray) -> np.ndarray:
    """Two-sided exact sign-test p-values, vectorised (``binomtest(wins_a, wins_a + wins_b)``).

    For ``p = 1/2`` the binomial is symmetric, so scipy's two-sided p-value (the mass of every
    outcome no more likely than the observed one) is ``min(1, 2 · F(min(w_A, w_B)))``.
    No decisive session gives 1.

    Parameters
    ----------
    wins_a, wins_b : ndarray of int, same shape

    Returns
    -------
    ndarray of float64, the same shape
    """
    wa, wb = np.asarray(wins_a), np.asarray(wins_b)
    d = wa + wb
    with np.errstate(invalid="ignore"):
        p = np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(wa, wb), d, 0.5))
    return np.where(d > 0, p, 1.0)


def ab_detection(
    pmf_a: np.ndarray,
    pmf_b: np.ndarray,
    sizes: np.ndarray,
    experiments: int,
    alpha: float,
    direction: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Detection rate of the A/B test (Welch) per experiment size.

    Parameters
    ----------
    pmf_a, pmf_b : ndarray of shape (K + 1,), float
        Distribution of clicks per session under A and B (over sessions and clicks).
    sizes : ndarray of shape (S,), int
        Sessions per experiment, split ``n // 2`` to A and the rest to B.
    experiments : int
        Repetitions per size.
    alpha : float
    direction : {+1, -1}
        Sign of the true gap ``U(A) − U(B)``.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (S,), float64
        Share of experiments with ``p < alpha`` and ``sign(mean_A − mean_B) = direction``.
    """
    x = np.arange(pmf_a.size, dtype=np.float64)
    out = np.empty(len(sizes))
    for i, n in enumerate(sizes):
        na, nb = int(n) // 2, int(n) - int(n) // 2
        stats_ = []
        for m, pmf in ((na, pmf_a), (nb, pmf_b)):
            c = rng.multinomial(m, pmf / pmf.sum(), size=experiments).astype(np.float64)
            mean = c @ x / m
            var = np.maximum((c @ x**2 - m * mean**2) / (m - 1), 0.0)
            stats_.append((mean, np.sqrt(var), m))
        (ma, sa, na_), (mb, sb, nb_) = stats_
        with np.errstate(invalid="ignore", divide="ignore"):
            p = stats.ttest_ind_from_stats(ma, sa, na_, mb, sb, nb_, equal_var=False).pvalue
        hit = (np.nan_to_num(p, nan=1.0) < alpha) & (np.sign(ma - mb) == direction)
        out[i] = hit.mean()
    return out


def interleaving_detection(
    probs: np.ndarray,
    sizes: np.ndarray,
    experiments: int,
    alpha: float,
    direction: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Detection rate of an interleaving experiment (sign test) per experiment size.

    Parameters
    ----------
    probs : ndarray of shape (3,), float
        ``P(A wins), P(B wins), P(tie)`` of one session (over sessions, coins and clicks).
    sizes : ndarray of shape (S,), int
    experiments : int
    alpha : float
    direction : {+1, -1}
        +1 when A is truly better.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (S,), float64
    """
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    out = np.empty(len(sizes))
    for i, n in enumerate(sizes):
        c = rng.multinomial(int(n), p, size=experiments)
        pv = sign_test_pvalues(c[:, 0], c[:, 1])
        out[i] = ((pv < alpha) & (np.sign(c[:, 0] - c[:, 1]) == direction)).mean()
    return out


def sessions_at_power(sizes: np.ndarray, rate: np.ndarray, power: float) -> float:
    """Sessions at which the detection rate first reaches ``power``, linear in ``log n``.

    Returns NaN when the curve never reaches it, and ``sizes[0]`` when it starts above.
    """
    sizes, rate = np.asarray(sizes, dtype=np.float64), np.asarray(rate, dtype=np.float64)
    above = np.flatnonzero(rate >= power)
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(sizes[0])
    x0, x1 = np.log(sizes[i - 1]), np.log(sizes[i])
    y0, y1 = rate[i - 1], rate[i]
    return float(np.exp(x0 + (power - y0) * (x1 - x0) / (y1 - y0)))


def _normal_ab(pmf_a: np.ndarray, pmf_b: np.ndarray, alpha: float, power: float) -> float:
    x = np.arange(pmf_a.size)
    m_a, m_b = pmf_a @ x, pmf_b @ x
    v_a, v_b = pmf_a @ x**2 - m_a**2, pmf_b @ x**2 - m_b**2
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(2 * z**2 * (v_a + v_b) / (m_a - m_b) ** 2) if m_a != m_b else float("inf")


def _normal_sign(probs: np.ndarray, alpha: float, power: float) -> float:
    d = probs[0] + probs[1]
    if d <= 0 or probs[0] == probs[1]:
        return float("inf")
    p = probs[0] / d
    num = stats.norm.ppf(1 - alpha / 2) * 0.5 + stats.norm.ppf(power) * np.sqrt(p * (1 - p))
    return float((num / (p - 0.5)) ** 2 / d)


# --------------------------------------------------------------------------------------------
# brute force
# --------------------------------------------------------------------------------------------


def validate_pair(
    pw: PairWorld, method: str, n: int, experiments: int, alpha: float, rng: np.random.Generator
) -> float:
    """Detection rate from explicit experiments: sessions, clicks, credit and the test.

    ``method`` is ``"ab_welch"``, ``"team_draft"`` or ``"balanced"``; ``n`` sessions per
    experiment, drawn from the pool with its weights.
    """
    direction = int(np.sign(pw.gap))
    k = pw.examination.size
    hits = 0
    for _ in range(experiments):
        s = rng.choice(pw.users.size, size=n, p=pw.weight)
        if method == AB:
            half = n // 2
            u = rng.random((n, k))
            ca = (u[:half] < pw.examination * pw.rel_a[s[:half]]).sum(axis=1)
            cb = (u[half:] < pw.examination * pw.rel_b[s[half:]]).sum(axis=1)
            p = stats.ttest_ind(ca, cb, equal_var=False).pvalue
            hits += bool(np.nan_to_num(p, nan=1.0) < alpha and np.sign(ca.mean() - cb.mean()) == direction)
            continue
        la, lb = pw.list_a[s], pw.list_b[s]
        items, team = interleave(method, la, lb, k, rng)
        hit_a = items[:, :, None] == la[:, None, :]
        rel = np.where(
            hit_a.any(axis=2),
            np.take_along_axis(pw.rel_a[s], hit_a.argmax(axis=2), axis=1),
            np.take_along_axis(pw.rel_b[s], (items[:, :, None] == lb[:, None, :]).argmax(axis=2), axis=1),
        )
        clicks = rng.random((n, k)) < pw.examination * rel
        out = credit(team, clicks) if method == "team_draft" else balanced_credit(items, clicks, la, lb)
        if not (out != 0).any():
            continue
        res = interleaving_test(out, confidence=1 - alpha)
        hits += res.p_value < alpha and np.sign(res.wins_a - res.wins_b) == direction
    return hits / experiments


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


def _sizes(cfg: InterleavingStudyConfig) -> np.ndarray:
    s = cfg.study
    raw = np.geomspace(s.sessions_min, s.sessions_max, s.n_sizes)
    return np.unique(np.round(raw).astype(np.int64))


def run_seed(
    cfg: InterleavingStudyConfig, seed: int, validate: bool
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pairs table, detection curves and (when ``validate``) brute-force checks of one seed."""
    st = cfg.study
    sizes = _sizes(cfg)
    pair_rows, det_rows, val_rows = [], [], []
    for pw in build_pairs(cfg, seed):
        direction = int(np.sign(pw.gap)) or 1
        pmf_a = pw.weight @ clicks_pmf(pw.examination * pw.rel_a)
        pmf_b = pw.weight @ clicks_pmf(pw.examination * pw.rel_b)
        x = np.arange(pmf_a.size)
        row = {
            "seed": seed,
            "pair": pw.pair,
            "utility_a": pw.utility_a,
            "utility_b": pw.utility_b,
            "gap": pw.gap,
            "rel_gap": pw.gap / pw.utility_b if pw.utility_b else float("nan"),
            "pool_utility_a": float(pmf_a @ x),
            "pool_utility_b": float(pmf_b @ x),
            "sd_clicks_a": float(np.sqrt(pmf_a @ x**2 - (pmf_a @ x) ** 2)),
            "sd_clicks_b": float(np.sqrt(pmf_b @ x**2 - (pmf_b @ x) ** 2)),
            "n_pool": int(pw.users.size),
        }
        curves = {
            AB: ab_detection(
                pmf_a,
                pmf_b,
                sizes,
                st.experiments,
                st.alpha,
                direction,
                stream(seed, f"interleaving-study:experiments:{pw.pair}:{AB}"),
            )
        }
        normal = {AB: _normal_ab(pmf_a, pmf_b, st.alpha, st.power)}
        probs_by = {}
        for method in cfg.methods.interleaving:
            probs = pw.weight @ pbm_outcome_probabilities(
                pw.list_a, pw.list_b, pw.rel_a, pw.rel_b, pw.examination, method
            )
            probs_by[method] = probs
            row[f"{method}_p_a_wins"], row[f"{method}_p_b_wins"], row[f"{method}_p_tie"] = probs
            curves[method] = interleaving_detection(
                probs,
                sizes,
                st.experiments,
                st.alpha,
                direction,
                stream(seed, f"interleaving-study:experiments:{pw.pair}:{method}"),
            )
            normal[method] = _normal_sign(probs if direction > 0 else probs[[1, 0, 2]], st.alpha, st.power)
        for method, curve in curves.items():
            row[f"{method}_n_normal"] = normal[method]
            for n, r in zip(sizes, curve, strict=True):
                det_rows.append(
                    {
                        "seed": seed,
                        "pair": pw.pair,
                        "method": method,
                        "sessions": int(n),
                        "detection_rate": float(r),
                        "experiments": st.experiments,
                    }
                )
        pair_rows.append(row)
        if validate and st.validate_experiments > 0:
            for method, curve in curves.items():
                n80 = sessions_at_power(sizes, curve, st.power)
                target = min(n80 if np.isfinite(n80) else sizes[-1], st.validate_max_sessions)
                n = int(sizes[np.argmin(np.abs(np.log(sizes) - np.log(target)))])
                brute = validate_pair(
                    pw,
                    method,
                    n,
                    st.validate_experiments,
                    st.alpha,
                    stream(seed, f"interleaving-study:validate:{pw.pair}:{method}"),
                )
                fast = float(curve[list(sizes).index(n)])
                se = np.sqrt(fast * (1 - fast) / st.validate_experiments + fast * (1 - fast) / st.experiments)
                val_rows.append(
                    {
                        "seed": seed,
                        "pair": pw.pair,
                        "method": method,
                        "sessions": n,
                        "fast": fast,
                        "brute_force": brute,
                        "experiments": st.validate_experiments,
                        "z": (brute - fast) / se if se > 0 else 0.0,
                    }
                )
    return pd.DataFrame(pair_rows), pd.DataFrame(det_rows), pd.DataFrame(val_rows)


def summarise(cfg: InterleavingStudyConfig, pairs: pd.DataFrame, detection: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, method): the sessions at the target power and the A/B-to-method ratio.

    The detection curve is averaged over seeds before interpolating (``sessions_at_power``);
    ``n_power_seed_min``/``max`` give the spread of the per-seed values.
    """
    st = cfg.study
    mean_curve = detection.groupby(["pair", "method", "sessions"], sort=False)["detection_rate"].mean()
    rows = []
    for pair in cfg.pairs:
        p = pairs[pairs["pair"] == pair]
        n_ab = None
        for method in [AB, *cfg.methods.interleaving]:
            curve = mean_curve.loc[(pair, method)]
            n = sessions_at_power(curve.index.to_numpy(), curve.to_numpy(), st.power)
            per_seed = [
                sessions_at_power(g["sessions"].to_numpy(), g["detection_rate"].to_numpy(), st.power)
                for _, g in detection[(detection["pair"] == pair) & (detection["method"] == method)].groupby(
                    "seed"
                )
            ]
            if method == AB:
                n_ab = n
            rows.append(
                {
                    "pair": pair,
                    "description": cfg.pairs[pair].description,
                    "utility_a": p["utility_a"].mean(),
                    "utility_b": p["utility_b"].mean(),
                    "gap": p["gap"].mean(),
                    "rel_gap": p["rel_gap"].mean(),
                    "method": method,
                    "n_power": n,
                    "n_power_seed_min": float(np.nanmin(per_seed))
                    if np.isfinite(per_seed).any()
                    else float("nan"),
                    "n_power_seed_max": float(np.nanmax(per_seed))
                    if np.isfinite(per_seed).any()
                    else float("nan"),
                    "n_power_normal": float(p[f"{method}_n_normal"].mean()),
                    "ratio_ab_to_method": (n_ab / n)
                    if method != AB and n and np.isfinite(n)
                    else float("nan"),
                    "p_a_wins": p[f"{method}_p_a_wins"].mean() if method != AB else float("nan"),
                    "p_tie": p[f"{method}_p_tie"].mean() if method != AB else float("nan"),
                }
            )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class PowerStudyResult:
    """What :func:`run_interleaving_study` wrote."""

    out_dir: Path
    pairs: pd.DataFrame
    detection: pd.DataFrame
    validation: pd.DataFrame
    summary: pd.DataFrame
    figures: list[Path]
    seconds: float


def run_interleaving_study(
    cfg: InterleavingStudyConfig, out_dir: str | Path, *, progress: bool = True, figures: bool = True
) -> PowerStudyResult:
    """Run the power study and write its tables, summary and figures into ``out_dir``.

    Raises
    ------
    ResultsError
        If ``out_dir`` is a file or holds results of another kind.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file, not a folder")
    manifest = out / "manifest.json"
    if manifest.is_file() and '"kind": "interleaving_study"' not in manifest.read_text():
        raise ResultsError(f"{out} holds another kind of results (its manifest.json); use another --out")
    cfg.experiment_config()
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, seed in enumerate(tqdm(cfg.study.seeds, desc=cfg.study.name, unit="seed", disable=not progress)):
        parts.append(run_seed(cfg, seed, validate=i == 0))
    pairs = pd.concat([p[0] for p in parts], ignore_index=True)
    detection = pd.concat([p[1] for p in parts], ignore_index=True)
    validation = pd.concat([p[2] for p in parts], ignore_index=True)
    summary = summarise(cfg, pairs, detection)
    for name, df in (
        ("pairs", pairs),
        ("detection", detection),
        ("validation", validation),
        ("summary", summary),
    ):
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    drawn: list[Path] = []
    if figures:
        from simulator.ope.interleaving_study_plots import draw_power_figures

        drawn = draw_power_figures(out / "figures", detection, summary, cfg)
    seconds = time.perf_counter() - t0
    atomic_write_text(
        out / "summary.md", summary_markdown(cfg, summary, pairs, validation, drawn, out, seconds)
    )
    atomic_write_json(
        manifest,
        {
            "kind": "interleaving_study",
            "status": "complete",
            "config": cfg.model_dump(mode="json"),
            "world": cfg.experiment_config().model_dump(mode="json"),
            "seeds": list(cfg.study.seeds),
            "seconds": round(seconds, 1),
            "written": datetime.now(UTC).isoformat(),
        },
    )
    return PowerStudyResult(out, pairs, detection, validation, summary, drawn, seconds)


_METHOD_LABEL = {AB: "A/B (Welch t-test)", "team_draft": "team draft", "balanced": "balanced"}


def _n(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:,.0f}"


def summary_markdown(
    cfg: InterleavingStudyConfig,
    summary: pd.DataFrame,
    pairs: pd.DataFrame,
    validation: pd.DataFrame,
    figures: list[Path],
    out: Path,
    seconds: float,
) -> str:
    """The study's summary.md: design, the sample-size table, the check, figures."""
    exp = cfg.experiment_config()
    st = cfg.study
    cm = exp.click_model
    lines = [
        f"# Interleaving vs A/B power study: {st.name}",
        "",
        st.description.strip(),
        "",
        "## Design",
        "",
        f"* World: {exp.users.n_users:,} users × {exp.catalog.n_items:,} items, slates of "
        f"K = {exp.simulation.slate_size}, position-based clicks"
        + (f" (P(E_k) = 1/(k+1)^{cm.eta:g})" if cm.examination is None else "")
        + f"; policies fitted once on the pre-system history. Seeds: {len(st.seeds)}.",
        "* Truth: U = expected clicks per session, exact from the position marginals and the true "
        "relevance, over all users weighted by their session rate.",
        f"* A/B: sessions split 50/50, Welch two-sample t-test on clicks per session. Interleaving: "
        f"{', '.join(cfg.methods.interleaving)} credit, exact two-sided sign test over decisive sessions. "
        f"Detection = p < {st.alpha:g} and the right direction.",
        f"* {st.experiments:,} experiments per (seed, pair, method, size), {len(_sizes(cfg))} sizes from "
        f"{st.sessions_min:,} to {st.sessions_max:,} sessions (multinomial sufficient statistics of "
        "i.i.d. sessions; see the module docstring).",
        f"* n at {100 * st.power:g}% power: interpolated (log n) on the detection curve averaged over "
        "seeds; range over seeds in brackets; normal approximation next to it.",
        "",
        f"## Sessions to detect the better policy at {100 * st.power:g}% power",
        "",
        "| pair | U(A) | U(B) | gap (rel.) | method | P(A wins) / P(tie) | sessions | seed range "
        "| normal approx. | A/B ÷ method |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for pair in cfg.pairs:
        sub = summary[summary["pair"] == pair]
        first = True
        for _, r in sub.iterrows():
            pw = "" if r["method"] == AB else f"{r['p_a_wins']:.3f} / {r['p_tie']:.3f}"
            ratio = (
                ""
                if r["method"] == AB
                else (f"**{r['ratio_ab_to_method']:.1f}×**" if np.isfinite(r["ratio_ab_to_method"]) else "—")
            )
            lines.append(
                f"| {pair if first else ''} | {r['utility_a']:.4f} | {r['utility_b']:.4f} | "
                f"{r['gap']:.4f} ({100 * r['rel_gap']:.1f}%) | "
                f"{_METHOD_LABEL.get(r['method'], r['method'])} | {pw} | "
                f"{_n(r['n_power'])} | {_n(r['n_power_seed_min'])}–{_n(r['n_power_seed_max'])} | "
                f"{_n(r['n_power_normal'])} | {ratio} |"
            )
            first = False
    lines.append("")
    if len(validation):
        worst = float(validation["z"].abs().max())
        lines += [
            "## Brute-force check",
            "",
            f"Seed {int(validation['seed'].iloc[0])}: detection rate of the multinomial method against "
            f"{int(validation['experiments'].iloc[0])} explicit experiments (sampled sessions, Bernoulli "
            "clicks, the library's interleaving/credit functions, `interleaving_test`, "
            f"`scipy.stats.ttest_ind`). Largest |z| = {worst:.2f}.",
            "",
            "| pair | method | sessions | multinomial | brute force | z |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for _, r in validation.iterrows():
            lines.append(
                f"| {r['pair']} | {r['method']} | {r['sessions']:,} | {r['fast']:.3f} | "
                f"{r['brute_force']:.3f} | {r['z']:+.2f} |"
            )
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for p in figures:
            if p.suffix == ".png":
                lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})", ""]
    lines += [
        "## Files",
        "",
        "`pairs.csv` (utilities, gaps, outcome probabilities per seed), `detection.csv` (detection "
        "rate per seed, pair, method and size), `validation.csv`, `summary.csv`.",
        "",
        f"Runtime: {seconds:.0f} s.",
        "",
    ]
    return "\n".join(lines)
