"""Build the workshop notebooks in notebooks/ from the cell lists below (outputs stripped).

    .venv/bin/python scripts/make_notebooks.py            # (re)write every notebook
    .venv/bin/python scripts/make_notebooks.py --check    # exit 1 if a notebook is out of date

The notebooks are generated so that their source stays diffable here and they carry no outputs
in git; CI executes them with ``pytest --nbmake notebooks/``. Each runs in under two minutes on a
laptop (about 1000 users x 800 tracks, 40 days). Cell ids are fixed, so rebuilding an unchanged
notebook rewrites it byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"


# First code cell of every notebook: imports, the inline backend, one `show` helper. `extra` is
# the notebook's own `from simulator.report import ...` line (only what it uses: ruff-clean).
def setup(extra: str = "", numpy: bool = True) -> str:
    return (
        """
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
"""
        + ("import numpy as np\n" if numpy else "")
        + """import pandas as pd
from IPython import get_ipython
from IPython.display import display

from simulator import plotting
from simulator.config import parse_config
from simulator.engine.runner import run_experiment
"""
        + extra
        + """
get_ipython().run_line_magic("matplotlib", "inline")  # simulator.plotting selects Agg
pd.set_option("display.float_format", "{:.4f}".format)
pd.set_option("display.width", 120)
plotting.apply_theme()  # seaborn whitegrid, colour-blind palette: as in the reports


def show(fig):
    # display a figure once (plotting returns figures; the inline backend would show them twice)
    if fig is not None:
        display(fig)
        plt.close(fig)
"""
    )


# The small world every notebook starts from: music_collapse at workshop size, with a 14-day
# pre-system history and training window so that the loop closes within the 40 days.
WORLD = r"""
WORLD = {
    "experiment": {"name": "workshop", "n_rounds": 40, "seeds": [0]},
    "catalog": {"n_items": 800, "n_genres": 12, "n_artists": 200, "embedding_dim": 16},
    "users": {"n_users": 1000, "taste_concentration": 0.3, "alternating_share": 0.2},
    "history": {"days": 14, "popularity_exponent": 0.0},
    "click_model": {"type": "pbm", "eta": 1.0},
    "simulation": {"slate_size": 10, "retrain_every_days": 1, "train_window_days": 14, "log_fraction": 1.0},
    "metrics": {"window_days": 7, "user_window_days": 14, "n_tracked_users": 60, "regret_users": 300},
}
GREEDY = {"type": "greedy", "factors": 32, "alpha": 20.0}
WORKDIR = Path(tempfile.mkdtemp(prefix="recloop-workshop-"))


def run(policies, name, workers=1, **sections):
    # run every (policy, seed) cell of WORLD (+ changed sections) into WORKDIR/name
    data = {k: dict(v) for k, v in WORLD.items()}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    data["policies"] = policies
    t0 = time.perf_counter()
    cfg = parse_config(data)
    result = run_experiment(cfg, WORKDIR / name, workers=workers, progress=False, figures=False)
    print(f"{len(result.cells)} cells in {time.perf_counter() - t0:.0f} s -> {result.run_dir}")
    return result.run_dir
"""


R01 = "from simulator.report import read_exposure, read_metrics, read_users, window_summary\n"
R02 = "from simulator.report import read_metrics, window_summary\n"


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip("\n"))


# =============================================================================================
# 01 — the collapse
# =============================================================================================
NB01 = [
    md(r"""
# 01 · The collapse: a recommender that learns from itself

A streaming service retrains its recommender every night on the streams that its own
recommendations produced. Nobody changes anything, and yet, week after week, each listener is
shown a narrower slice of the catalog. This notebook **reproduces** that collapse in recloop and
teaches you to **read** the metrics that show it.

```
active users ─► policy.recommend ─► slate (items, scores, propensities)
      ▲                                   │
  taste drift                       click model (examination × relevance)
      ▲                                   ▼
      └──── users consume ◄── clicks ──► impression log ──► retrain (log window) ──► metrics
```

One round is one day. The first model is trained on 14 days of *organic* streams (drawn by true
relevance only: diverse). That history **ages out** of the 14-day training window: from day 14 on
the model only knows what it showed itself. Runtime: about a minute.
"""),
    code(setup(R01)),
    code(WORLD),
    md(r"""
## 1. Run the loop

Three policies in the same world (same users, same sessions, same click dice — common random
numbers):

* `greedy`: implicit ALS (Hu, Koren & Volinsky 2008) retrained daily on its own 14-day log; shows
  its top 10;
* `random`: 10 uniformly random tracks (the flat-exposure control);
* `oracle`: ranks by the true relevance (the ceiling that defines regret).
"""),
    code(r"""
run_dir = run({"greedy": GREEDY, "random": {"type": "random"}, "oracle": {"type": "oracle"}}, "collapse")
metrics = read_metrics(run_dir)
metrics.head()
"""),
    md(r"""
## 2. The metrics

`metrics.parquet` is in long format: one row per `(round, policy, seed, metric)`. The headline
metrics, over the last 7 days of impressions (exposure) or 14 days per user:

* **Gini of exposure** over the *whole catalog* (never-shown tracks count as 0): with item
  exposure counts sorted ascending $x_{(1)} \le \dots \le x_{(n)}$,
  $$G = \frac{\sum_{i=1}^{n} (2i - n - 1)\, x_{(i)}}{n \sum_i x_i},$$
  0 when every track is shown equally, $(n-1)/n$ when one track gets everything.
* **Coverage**: the share of the catalog shown at least once.
* **Shown-genre entropy** of a user: $H_u / \ln G = -\sum_g p_{ug} \ln p_{ug} / \ln G$ over the
  genres shown to the user ($G$ genres), averaged over active users; 0 = one genre only.
* **CTR**: clicks per impression. **Utility**: expected clicks of a slate,
  $\sum_k P(E_k)\, r(u, i_k)$ with examination $P(E_k) = 1/k^\eta$ at 1-based position $k$.
* **alt_genre_loss**: share of *alternating* listeners (their taste swings between two genres
  every 14 days) who were shown less than 5% of one of their two genres.
"""),
    code(r"""
# one column per metric, one row per day (1-based), for greedy
wide = metrics[metrics["policy"] == "greedy"].pivot_table(index="round", columns="metric", values="value")
wide.index = wide.index + 1
wide.index.name = "day"
wide[["gini", "coverage", "entropy_shown", "ctr", "alt_genre_loss"]].iloc[[0, 6, 13, 20, 27, 34, 39]]
"""),
    code(r"""
show(plotting.plot_trajectories(metrics, window=7, user_window=14))
"""),
    code(r"""
show(plotting.plot_engagement(metrics, window=7, user_window=14))
"""),
    md(r"""
**Read it.** Under `greedy`, the Gini of exposure rises and coverage falls once the organic history
has aged out (day 14); each listener's shown-genre entropy drops; alternating listeners lose one of
their genres. Meanwhile **CTR goes up**: the dashboards a team watches look *better* while the
catalog collapses. `random` keeps exposure flat at a fraction of the engagement; the `oracle`
concentrates exposure too (it knows each user's favourites) but keeps each listener's taste.

The first-week vs last-week table below is what `recloop report` puts at the end of a report
(mean over seeds; here one seed).
"""),
    code(r"""
summary = window_summary(metrics, window=7)
headline = ["gini", "coverage", "entropy_shown", "ctr", "utility", "alt_genre_loss"]
summary.loc[headline, ["first_mean", "last_mean", "change_mean", "rel_change"]].round(3)
"""),
    code(r"""
show(plotting.plot_lorenz(read_exposure(run_dir), window=7))
"""),
    md(r"""
## 3. Check a number yourself

Every metric can be recomputed from the impression log (one row per impression, DESIGN §7).
Here: greedy's whole-catalog Gini over the last 7 days, by the formula above.
"""),
    code(r"""
log = pd.read_parquet(run_dir / "logs" / "policy=greedy" / "seed=0", columns=["round", "item_id"])
last = log["round"].max()
week = log[log["round"] > last - 7]
x = np.sort(np.bincount(week["item_id"], minlength=WORLD["catalog"]["n_items"]).astype(float))
n = x.size
i = np.arange(1, n + 1)
gini_by_hand = ((2 * i - n - 1) * x).sum() / (n * x.sum())
gini_logged = wide.loc[last + 1, "gini"]
print(f"Gini by hand {gini_by_hand:.6f}   in metrics.parquet {gini_logged:.6f}")
print(f"never shown in the last week: {(x == 0).mean():.0%} of the catalog")
assert abs(gini_by_hand - gini_logged) < 1e-9
"""),
    md(r"""
## 4. One listener

An alternating-interest listener (70/30 ↔ 30/70 between two genres every 14 days). Solid: the share
of each genre among the tracks shown to the user (14-day window); dashed: the user's true taste.
"""),
    code(r"""
users = read_users(run_dir, kind="alternating")
show(plotting.plot_alternating_user(users, user_window=14))
"""),
    md(r"""
## Your turn

**Question.** The collapse needs the organic history to *age out* of the training window. Keep it:
set `simulation.train_window_days` to 60 (longer than history + run) and rerun greedy. What happens
to the Gini, coverage and CTR, and why? What does that tell you about "just train on more data"?

```python
kept = run({"greedy": GREEDY}, "history_kept", simulation={"train_window_days": 60})
show(plotting.plot_trajectories(read_metrics(kept), window=7, user_window=14))
```
"""),
]


# =============================================================================================
# 02 — breaking the loop
# =============================================================================================
NB02 = [
    md(r"""
# 02 · Breaking the loop: exploration, IPW, re-rankers — and the switched-off mistake

Notebook 01 showed greedy retraining on its own log narrowing what everyone sees. The loop has
three places to cut it:

1. **What is shown** — *exploration*: show some items the model would not pick, so the next
   model learns about them. Per-slot **ε-greedy**: each slot is, with probability ε, a uniformly
   random item not yet in the slate. Its propensity is exact: for greedy's choice $i^*_k$ at slot $k$
   (with $m_k$ items left), $P(i^*_k) = 1-\varepsilon + \varepsilon/m_k$, and any other item
   $\varepsilon/m_k$.
2. **How the model learns** — **IPW** retraining (Schnabel et al. 2016): weight every logged
   impression by the inverse of the probability that it was shown and examined,
   $w = 1/(\text{pscore}\cdot\hat P(E_k))$, clipped at $c$ and self-normalised, so that what
   the old policy over-exposed stops looking over-popular:
   $\min_\theta \sum_{(u,i)} \frac{\min(w_{ui}, c)}{\overline{w}}\; \ell(y_{ui}, \hat y_\theta(u,i))$.
3. **How the list is assembled** — re-rankers of greedy's top candidates. **Calibrated**
   (Steck 2018) picks the list $I$ that maximises
   $(1-\lambda)\sum_{i\in I} s(u,i) - \lambda\, \mathrm{KL}(p_u \,\|\, \tilde q_u(I))$: the genres
   shown should match the genres the user listens to, $p_u$, with
   $\tilde q = (1-a)\,q + a\,p$ for $a = 0.01$.

And one **mistake**: exploring while the system is new, then switching exploration off once the
model looks good (`epsilon = 0` on day 15). Runtime: about 1.5 minutes (two worker processes).
"""),
    code(setup(R02, numpy=False)),
    code(WORLD),
    code(r"""
from simulator.policies import POLICIES

assert {"epsilon_greedy", "ipw", "calibrated"} <= set(POLICIES), sorted(POLICIES)
BASE = {"base": "greedy", "base_params": {"factors": 32, "alpha": 20.0}}
policies = {
    "greedy": GREEDY,
    "eps10": {"type": "epsilon_greedy", "epsilon": 0.10, **BASE},
    "eps10_off": {"type": "epsilon_greedy", "epsilon": 0.10, **BASE},
    "ipw": {"type": "ipw", "factors": 32, "alpha": 20.0, "clip": 10.0},
    "calibrated": {"type": "calibrated", "calibration_weight": 0.5, **BASE},
}
# the mistake: on day 15 eps10_off sets epsilon to 0
switch_off = [{"day": 15, "policy": "eps10_off", "param": "epsilon", "value": 0.0}]
run_dir = run(policies, "breaking", workers=2, interventions=switch_off)
metrics = read_metrics(run_dir)
"""),
    code(r"""
palette = plotting.policy_palette(list(policies))  # one colour per policy in every figure
show(plotting.plot_trajectories(metrics, palette=palette, window=7, user_window=14))
"""),
    code(r"""
show(plotting.plot_engagement(metrics, palette=palette, window=7, user_window=14))
"""),
    md(r"""
**Read it** (compare each policy with `greedy`; the numbers are in the table below).

* `eps10`: the random slots reach the whole catalog, so **coverage** stays near 1 — but the Gini
  still rises, because the other 90% of the slots are greedy's ever-narrower top list. Exposure
  is spread, personal diversity only partly: exploration is not a cure by itself.
* `ipw`: every slate is still its model's top 10, but the model no longer mistakes "shown a lot"
  for "liked a lot": listeners keep seeing several genres (**shown-genre entropy**) and
  alternating listeners keep both of theirs (**alt_genre_loss**), at a cost in CTR here.
* `calibrated`: re-ranks greedy's top 100 towards each listener's genre mix; how much it helps
  depends on its weight λ (`calibration_weight`).
* `eps10_off`: identical to `eps10` until day 15; then plain greedy — trained on a log that still
  holds its exploration. As that exploration ages out of the 14-day window its coverage falls to
  greedy's: the loop closes again within one training window.

The trade-off in one picture: engagement in the last week against concentration in the last week.
"""),
    code(r"""
summary = window_summary(metrics, window=7)
last = summary.reset_index().pivot(index="policy", columns="metric", values="last_mean")
fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
for p, row in last.loc[list(policies)].iterrows():
    ax.scatter(row["gini"], row["ctr"], s=80, color=palette[p], label=p)
ax.set_xlabel("Gini of exposure, last week (0 = equal, 1 = one item)")
ax.set_ylabel("CTR, last week (clicks per impression)")
ax.set_title("Engagement vs concentration (last 7 days)")
ax.legend(title="policy", fontsize="small")
show(fig)
last.loc[list(policies), ["gini", "coverage", "entropy_shown", "alt_genre_loss", "ctr", "utility"]].round(3)
"""),
    md(r"""
## The switched-off mistake, up close

Coverage of `eps10` and `eps10_off` around the switch (day 15, 1-based day 16).
"""),
    code(r"""
cov = metrics[(metrics["metric"] == "coverage") & metrics["policy"].isin(["eps10", "eps10_off", "greedy"])]
table = cov.pivot_table(index="round", columns="policy", values="value")
table.index = table.index + 1
table.index.name = "day"
table.iloc[[9, 14, 19, 24, 29, 34, 39]].round(3)
"""),
    md(r"""
## Your turn

**Question.** How much exploration is enough? Rerun with ε ∈ {0.02, 0.05, 0.2} (one cell each is
enough) and find the smallest ε that keeps last-week coverage above 0.8. What does it cost in CTR
compared with greedy?

```python
eps = {f"eps{int(100 * e):02d}": {"type": "epsilon_greedy", "epsilon": e, **BASE} for e in (0.02, 0.05, 0.2)}
sweep = read_metrics(run(eps, "eps_sweep", workers=2))
window_summary(sweep, window=7).loc[["coverage", "ctr"], ["last_mean"]]
```
"""),
]


# =============================================================================================
# 03 — counterfactual evaluation
# =============================================================================================
NB03 = [
    md(r"""
# 03 · Counterfactual evaluation: IPS, SNIPS, DM and DR against the truth

Before shipping a new ranker you want its click rate **without** an A/B test, from the log of the
current one. Off-policy evaluation (OPE) re-weights that log. A simulator is the one place where
the answer is known, so every estimator can be checked against the truth.

**Setting.** One slot (the top of the slate, examined with probability 1). The *logging* policy
$\pi_0$ samples a track from a softmax over the production model's scores $s(u,i)$ at temperature
$T_0 = 1$; the *target* policy $\pi_e$ is the same model at $T_e = 0.2$ (greedier). The reward is
a click, $r \sim \text{Bernoulli}(r(u,i))$ with the world's true relevance. The true value of the
target is
$$V(\pi_e) = \mathbb{E}_u \sum_i \pi_e(i \mid u)\, r(u, i).$$

**Estimators** from $n$ logged rounds $(u_j, a_j, r_j, p_j = \pi_0(a_j \mid u_j))$, with weights
$w_j = \pi_e(a_j \mid u_j) / p_j$ and a reward model $\hat q(u, i)$:

| estimator | formula |
|---|---|
| IPS | $\hat V = \frac1n \sum_j w_j r_j$ |
| clipped IPS | $\hat V = \frac1n \sum_j \min(w_j, \lambda)\, r_j$ |
| SNIPS | $\hat V = \sum_j w_j r_j \,/\, \sum_j w_j$ |
| DM | $\hat V = \frac1n \sum_j \sum_i \pi_e(i \mid u_j)\, \hat q(u_j, i)$ |
| DR | $\hat V = \text{DM} + \frac1n \sum_j w_j \big(r_j - \hat q(u_j, a_j)\big)$ |

(Horvitz & Thompson 1952; Swaminathan & Joachims 2015; Dudík, Langford & Li 2011.) The reward
model here is the production model's own probability $\hat q = \sigma(s)$: the model you have, not
a perfect one. Runtime: about 30 s.
"""),
    code(setup()),
    code(WORLD),
    code(r"""
from scipy.special import expit, softmax

from simulator.engine.model import RecloopModel
from simulator.ope import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedInverseProbabilityWeighting,
)

# the world (catalog, users, true relevance) of WORLD; no simulation is run
world = RecloopModel(parse_config({**WORLD, "policies": {"random": {}}}), "random", seed=0)
pop = world.population
logit = np.concatenate([block for _, block in pop.relevance_chunks(np.arange(pop.n_users))]).astype(float)
R = expit(logit)  # true r(u, i), users x tracks

rng = np.random.default_rng(7)
S = logit + rng.normal(0.0, 1.0, logit.shape)  # production scores: truth + noise
pi_0 = softmax(S / 1.0, axis=1)  # logging policy, T0 = 1
pi_e = softmax(S / 0.2, axis=1)  # target policy, Te = 0.2
q_hat = expit(S)  # reward model we have
truth = (pi_e * R).sum(axis=1).mean()
print(f"true value of the target V(pi_e) = {truth:.4f}")
print(f"true value of the logging policy V(pi_0) = {(pi_0 * R).sum(axis=1).mean():.4f}")
"""),
    code(r"""
def simulate_log(n, rng):
    # n logged rounds of the logging policy: user, action, reward, propensity
    u = rng.integers(0, pop.n_users, n)
    a = (pi_0[u].cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1).clip(max=pi_0.shape[1] - 1)
    r = (rng.random(n) < R[u, a]).astype(float)
    return u, a, r, pi_0[u, a]


ESTIMATORS = {
    "IPS": InverseProbabilityWeighting(),
    "SNIPS": SelfNormalizedInverseProbabilityWeighting(),
    "DM": DirectMethod(),
    "DR": DoublyRobust(),
}


def estimate_all(estimators, n=3000, reps=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(reps):
        u, a, r, p = simulate_log(n, rng)
        arrays = dict(
            reward=r,
            action=a,
            pscore=p,
            action_dist=pi_e[u][:, :, None],
            estimated_rewards_by_reg_model=q_hat[u][:, :, None],
        )
        rows += [
            {"estimator": k, "rep": rep, "estimate": e.estimate_policy_value(**arrays)}
            for k, e in estimators.items()
        ]
    return pd.DataFrame(rows)


est = estimate_all(ESTIMATORS)
stats = est.groupby("estimator", sort=False)["estimate"].agg(["mean", "std"])
stats["bias"] = stats["mean"] - truth
stats["rmse"] = np.sqrt(stats["bias"] ** 2 + stats["std"] ** 2)
stats.round(4)
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
colours = plotting.policy_palette(list(ESTIMATORS))  # distinct colour-blind-safe colours
for j, (name, g) in enumerate(est.groupby("estimator", sort=False)):
    ax.scatter(
        np.full(len(g), j) + np.linspace(-0.15, 0.15, len(g)),
        g["estimate"],
        s=14,
        alpha=0.7,
        color=colours[name],
    )
ax.axhline(truth, color="0.1", ls="--", label=f"truth V(pi_e) = {truth:.3f}")
ax.set_xticks(range(len(ESTIMATORS)), list(ESTIMATORS))
ax.set_ylabel("estimated value (clicks per session)")
ax.set_title("30 logs of 3,000 rounds each")
ax.legend()
show(fig)
"""),
    md(r"""
**Read it.** IPS is unbiased but noisy; SNIPS trades a little bias for much less variance. DM is
precise and **wrong**: the target picks exactly the tracks whose score was inflated by noise, so
$\sigma(s)$ over-promises (the winner's curse). DR starts from DM and corrects it with the
weighted residuals: it keeps the unbiasedness of IPS with less variance.

## Clipping

Large weights $w = \pi_e/\pi_0$ make IPS noisy. Clipping them at $\lambda$ removes variance and
adds (downward) bias. Where is the best trade-off?
"""),
    code(r"""
lambdas = [1, 2, 5, 10, 20, 50, np.inf]
clipped = estimate_all({f"{lam:g}": InverseProbabilityWeighting(lambda_=float(lam)) for lam in lambdas})
cs = clipped.groupby("estimator", sort=False)["estimate"].agg(["mean", "std"])
cs["bias"] = cs["mean"] - truth
cs["rmse"] = np.sqrt(cs["bias"] ** 2 + cs["std"] ** 2)
cs.index.name = "lambda"
u, a, r, p = simulate_log(3000, np.random.default_rng(1))
w = pi_e[u, a] / p
print(
    f"weights of one log: mean {w.mean():.2f}, 99th percentile {np.quantile(w, 0.99):.1f}, max {w.max():.1f}"
)
cs.round(4)
"""),
    md(r"""
**Read it.** Clipping below the bulk of the weights (small $\lambda$) removes variance but adds a
large downward bias: every clicked round with a big weight is counted as if the target liked it
less. Here the weights are bounded (the logging policy explores enough), so the best $\lambda$
sits at or above the largest weights — clip only rare, extreme weights, and prefer SNIPS or DR,
which tame the variance without throwing the signal away.
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
x = np.arange(len(cs))
ax.plot(x, cs["bias"].abs(), marker="o", label="|bias|")
ax.plot(x, cs["std"], marker="o", label="standard deviation")
ax.plot(x, cs["rmse"], marker="o", color="0.1", label="RMSE")
ax.set_xticks(x, [str(i) for i in cs.index])
ax.set_xlabel("clipping threshold lambda")
ax.set_ylabel("clicks per session")
ax.set_title("Clipped IPS: bias-variance trade-off")
ax.legend()
show(fig)
"""),
    md(r"""
## Your turn

**Question.** Make the *logging* policy explore less: $T_0 = 0.3$ instead of 1 (edit the cell that
defines `pi_0` and rerun from there). What happens to the largest weights, which estimator breaks
first, and which clipping threshold would you now pick? Why can no estimator recover the value of
a target that puts mass where the logging policy (almost) never goes?
"""),
]


# =============================================================================================
# 04 — position bias and interleaving
# =============================================================================================
NB04 = [
    md(r"""
# 04 · Position bias and interleaving

Users look at the top of a list more than at its bottom. Under the **position-based model**
(PBM) a click at position $k$ (1-based) needs an examination and a relevant item:
$$P(\text{click} \mid k, i) = \theta_k\, \gamma_i,$$
with $\theta_k = 1/k^{\eta}$ in this world ($\eta = 1$).
A click log mixes *where* an item was shown with *which* items a policy puts there. This notebook
estimates $\theta$ from logs simulated by the engine, then compares two rankers by
**interleaving** instead of an A/B test. Runtime: about a minute.
"""),
    code(setup()),
    code(WORLD),
    code(r"""
import warnings

from scipy import stats as st
from scipy.special import expit

from simulator.clicks.models import pbm_examination
from simulator.engine.model import RecloopModel
from simulator.ope import credit, ctr_ratio, em_position_bias, interleaving_test, team_draft_interleave

K = WORLD["simulation"]["slate_size"]
TRUE_THETA = pbm_examination(K, WORLD["click_model"]["eta"]).astype(float)
POSITIONS = np.arange(1, K + 1)  # 1-based, as in every figure


def log_of(policy, spec, days):
    # simulate `days` days of one policy and return its impression log (DataFrame)
    cfg = parse_config({**WORLD, "policies": {policy: spec}})
    model = RecloopModel(cfg, policy, seed=0, log_dir=WORKDIR / f"log-{policy}")
    model.run(days)
    return model, pd.read_parquet(WORKDIR / f"log-{policy}")


def curve_plot(estimates, title):
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    ax.plot(POSITIONS, TRUE_THETA / TRUE_THETA[0], color="0.1", ls="--", marker="o", label="truth 1/k")
    for label, e in estimates.items():
        ax.errorbar(
            POSITIONS,
            e.examination,
            yerr=[e.examination - e.ci_lower, e.ci_upper - e.examination],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.set_xticks(POSITIONS)
    ax.set_xlabel("position k (1 = top)")
    ax.set_ylabel("examination relative to position 1")
    ax.set_title(title)
    ax.legend()
    return fig
"""),
    md(r"""
## 1. A randomised log: the CTR ratio

The `random` policy places uniformly random tracks at every position, so the items at position
$k$ are as relevant on average as those at position 1 and
$$\frac{\theta_k}{\theta_1} = \frac{\mathrm{CTR}_k}{\mathrm{CTR}_1}.$$
Intervals: percentile bootstrap over sessions (a session's impressions stay together).
"""),
    code(r"""
_, random_log = log_of("random", {"type": "random"}, days=20)
print(f"{len(random_log):,} impressions, {random_log['session_id'].nunique():,} sessions")
ratio = ctr_ratio(
    random_log["session_id"].to_numpy(),
    random_log["position"].to_numpy(),
    random_log["item_id"].to_numpy(),
    random_log["click"].to_numpy(),
    K,
    rng=0,
    n_bootstrap=100,
)
show(curve_plot({"CTR ratio, random placement": ratio}, "Position bias from a randomised log"))
pd.DataFrame(
    {
        "position": POSITIONS,
        "truth": TRUE_THETA / TRUE_THETA[0],
        "estimate": ratio.examination,
        "ci_lower": ratio.ci_lower,
        "ci_upper": ratio.ci_upper,
    }
).set_index("position").round(3)
"""),
    md(r"""
## 2. A production log: the ratio is biased, EM helps

Greedy puts its best guesses on top: the items at position 1 are *more relevant* than those at
position 10, so the CTR ratio blames the position for what is really relevance (`ctr_ratio`
detects that the placement is not random and warns). The EM estimator of the PBM (Wang et al.
2018) fits $\theta_k$ and one relevance per track jointly; it needs no randomisation, only that
tracks appear at several positions.
"""),
    code(r"""
_, greedy_log = log_of("greedy", GREEDY, days=10)
arrays = [greedy_log[c].to_numpy() for c in ("session_id", "position", "item_id", "click")]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    naive = ctr_ratio(*arrays, K, rng=0, n_bootstrap=50)
print("ctr_ratio says:", [str(w.message)[:110] for w in caught])
em = em_position_bias(*arrays, K, rng=0, n_bootstrap=20)
estimates = {"CTR ratio on greedy's log": naive, "EM on greedy's log": em}
show(curve_plot(estimates, "Position bias from a production log"))
"""),
    md(r"""
EM moves the curve towards the truth but not all the way: here relevance is *personal*
($r(u,i)$), while EM's relevance per track averages over who was shown it — greedy shows a track
on top to exactly the users who like it. With a randomised swap experiment (swap position 1 with a
random position, Joachims et al. 2017; `swap_intervention`) the bias goes away at the cost of
slightly worse slates for a few sessions.

## 3. Interleaving vs A/B testing

Two rankers: **A** = the oracle (true relevance), **B** = the oracle with noisy scores. An A/B
test shows A to half of the sessions and B to the other half and compares clicks per session.
**Team-draft interleaving** (Radlinski, Kurup & Joachims 2008) shows *every* session one merged
list — the two rankers pick alternately, a coin deciding who starts each round — and credits each
click to the ranker that contributed the item; a session is won by the ranker with more credited
clicks, and a sign test on the decisive sessions decides. Because every session sees both rankers,
user-to-user differences cancel: interleaving needs fewer sessions.
"""),
    code(r"""
world = RecloopModel(parse_config({**WORLD, "policies": {"random": {}}}), "random", seed=0)
pop = world.population
logit = np.concatenate([block for _, block in pop.relevance_chunks(np.arange(pop.n_users))]).astype(float)
R = expit(logit)
rng = np.random.default_rng(1)
A = np.argsort(-logit, axis=1)[:, :K]
B = np.argsort(-(logit + rng.normal(0.0, 0.4, logit.shape)), axis=1)[:, :K]
theta = TRUE_THETA[None, :]
for name, lists in (("A", A), ("B", B)):
    expected = (theta * np.take_along_axis(R, lists, 1)).sum(1).mean()
    print(f"expected clicks per session, ranker {name}: {expected:.3f}")


def ab_test(n, rng):
    u = rng.integers(0, pop.n_users, n)
    to_a = rng.random(n) < 0.5
    shown = np.where(to_a[:, None], A[u], B[u])
    clicks = (rng.random((n, K)) < theta * np.take_along_axis(R[u], shown, 1)).sum(1)
    return st.ttest_ind(clicks[to_a], clicks[~to_a], equal_var=False).pvalue


def interleaving(n, rng):
    u = rng.integers(0, pop.n_users, n)
    items, team = team_draft_interleave(A[u], B[u], K, rng)
    clicks = rng.random((n, K)) < theta * np.take_along_axis(R[u], items, 1)
    return interleaving_test(credit(team, clicks)).p_value


rows = []
for n in (200, 400, 800, 1600, 3200):
    rows.append(
        {
            "sessions": n,
            "A/B test": np.mean([ab_test(n, rng) < 0.05 for _ in range(60)]),
            "interleaving": np.mean([interleaving(n, rng) < 0.05 for _ in range(60)]),
        }
    )
power = pd.DataFrame(rows).set_index("sessions")
power
"""),
    code(r"""
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
for col in power.columns:
    ax.plot(power.index, power[col], marker="o", label=col)
ax.set_xscale("log")
ax.minorticks_off()
ax.set_xticks(power.index, [str(n) for n in power.index])
ax.set_xlabel("sessions in the experiment")
ax.set_ylabel("power: share of 60 experiments with p < 0.05")
ax.set_ylim(0, 1.02)
ax.set_title("Detecting that A beats B")
ax.legend()
show(fig)
"""),
    md(r"""
## Your turn

**Question.** Make position bias milder: set $\eta = 0.5$ (change `WORLD["click_model"]["eta"]`
and rerun from the top). Does the CTR-ratio estimate on greedy's log get better or worse, and why?
How does the power of interleaving change relative to the A/B test?
"""),
]


def build() -> dict[str, nbformat.NotebookNode]:
    """Every notebook, by file name."""
    books = {
        "01_the_collapse.ipynb": NB01,
        "02_breaking_the_loop.ipynb": NB02,
        "03_counterfactual_evaluation.ipynb": NB03,
        "04_position_bias_and_interleaving.ipynb": NB04,
    }
    out = {}
    for name, cells in books.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata = {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        }
        stem = name.split("_")[0]
        for i, cell in enumerate(cells):
            cell = nbformat.from_dict(dict(cell))
            cell["id"] = f"nb{stem}-{i:02d}"
            nb.cells.append(cell)
        nbformat.validate(nb)
        out[name] = nb
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook is out of date")
    args = parser.parse_args(argv)
    NOTEBOOKS_DIR.mkdir(exist_ok=True)
    stale = []
    for name, nb in build().items():
        text = nbformat.writes(nb) + "\n"
        path = NOTEBOOKS_DIR / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run scripts/make_notebooks.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
