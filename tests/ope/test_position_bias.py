"""Position-bias estimators recover a known PBM examination curve from simulated logs.

Simulated logs (``_simulate``): ``N_ITEMS = 50`` items with relevance ``gamma ~ Beta(2, 5)``
(mean 0.29), ``K = 5`` slots, ``N_SESSIONS = 20_000`` sessions; each session shows ``K``
distinct items drawn uniformly from the catalog; examination ``theta_k = 1 / (k+1)^eta``;
``click ~ Bernoulli(theta_k * gamma_d)``. The simulation seeds are in ``SEEDS``; the
bootstrap seed is 0 everywhere.

Placement:
- ``"random"``: the session's items in random order (randomised placement);
- ``"sorted"``: the same candidates sorted by true relevance (a deterministic ranker; items
  still move between slots because the candidate sets vary, which EM needs);
- ``"sorted"`` + ``swap=True``: the sorted slate after ``swap_with_reference`` (the
  randomised swap experiment of Joachims et al. 2017).

Measured at these seeds (max |error| of the relative curve over positions; in brackets the
largest half-width of the 99.75% intervals):

=====  ==============  ==============  ==============  ==============  ==============
eta    ctr (random)    EM (random)     ctr (sorted)    EM (sorted)     swap (sorted)
=====  ==============  ==============  ==============  ==============  ==============
0.5    0.023 (0.037)   0.022 (0.032)   0.318 (0.024)   0.023 (0.048)   0.021 (0.040)
1      0.024 (0.027)   0.023 (0.024)   0.148 (0.017)   0.014 (0.039)   0.015 (0.033)
2      0.016 (0.022)   0.014 (0.022)   0.067 (0.014)   0.013 (0.018)   0.005 (0.019)
=====  ==============  ==============  ==============  ==============  ==============
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest

from simulator.errors import ValidationError
from simulator.ope.position_bias import (
    PlacementWarning,
    PositionBasedEM,
    SparseRelevanceWarning,
    check_randomised_placement,
    ctr_ratio,
    em_position_bias,
    estimate_position_bias,
    swap_intervention,
    swap_with_reference,
)

K = 5
N_ITEMS = 50
N_SESSIONS = 20_000
ETAS = (0.5, 1.0, 2.0)
# Each curve is checked against its K-1 = 4 non-reference intervals, so the per-position
# level is Bonferroni-corrected: 1 - 0.01 / 4 = 0.9975 makes the whole-curve coverage >= 99%.
# 400 replicates put about one replicate beyond each 0.125% tail, enough for the percentile.
CONFIDENCE = 1 - 0.01 / (K - 1)
N_BOOT = 400
# seeds of the simulations, per eta (placement "random", "sorted", swap experiment)
SEEDS = {0.5: (11, 12, 13), 1.0: (21, 22, 23), 2.0: (31, 32, 33)}


def _truth(eta: float, k: int = K) -> np.ndarray:
    return 1.0 / np.arange(1, k + 1) ** eta


@functools.cache
def _simulate(
    eta: float,
    placement: str,
    seed: int,
    swap: bool = False,
    n_sessions: int = N_SESSIONS,
    k: int = K,
    n_items: int = N_ITEMS,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    relevance = rng.beta(2.0, 5.0, size=n_items)
    slates = rng.random((n_sessions, n_items)).argpartition(k, axis=1)[:, :k]
    if placement == "sorted":
        order = np.argsort(-relevance[slates], axis=1)
        slates = np.take_along_axis(slates, order, axis=1)
    else:
        slates = rng.permuted(slates, axis=1)
    original = np.broadcast_to(np.arange(k, dtype=np.int16), slates.shape)
    if swap:
        slates, original = swap_with_reference(slates, rng, ref=0)
    clicks = rng.random(slates.shape) < _truth(eta, k) * relevance[slates]
    log = {
        "session_id": np.repeat(np.arange(n_sessions, dtype=np.int64), k),
        "position": np.tile(np.arange(k, dtype=np.int16), n_sessions),
        "item_id": slates.ravel().astype(np.int32),
        "click": clicks.ravel(),
        "original_position": np.asarray(original).ravel().astype(np.int16),
        "user_id": np.repeat(rng.integers(0, 1000, size=n_sessions).astype(np.int32), k),
    }
    for arr in log.values():
        arr.setflags(write=False)
    return log


def _ctr(log, **kw):
    return ctr_ratio(
        log["session_id"],
        log["position"],
        log["item_id"],
        log["click"],
        K,
        **{"n_bootstrap": N_BOOT, "confidence": CONFIDENCE, "rng": 0, **kw},
    )


def _em(log, **kw):
    return em_position_bias(
        log["session_id"],
        log["position"],
        log["item_id"],
        log["click"],
        K,
        **{"n_bootstrap": N_BOOT, "confidence": CONFIDENCE, "rng": 0, **kw},
    )


def _swap(log, **kw):
    return swap_intervention(
        log["session_id"],
        log["position"],
        log["original_position"],
        log["click"],
        K,
        **{"n_bootstrap": N_BOOT, "confidence": CONFIDENCE, "rng": 0, **kw},
    )


def _max_error(est, eta):
    return float(np.max(np.abs(est.examination - _truth(eta))))


# ------------------------------------------------------------------------------------------
# Recovery of the truth
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", ETAS)
def test_randomised_placement_ctr_ratio_and_em_recover_truth(eta):
    log = _simulate(eta, "random", SEEDS[eta][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlacementWarning)  # the check must pass here
        ctr = _ctr(log)
    em = _em(log)
    for est in (ctr, em):
        assert est.identifiable, est.reason
        assert est.examination[0] == 1.0
        assert est.covers(_truth(eta)).all(), (est.method, est.examination, _truth(eta))
        assert _max_error(est, eta) < 0.04
        assert est.n_bootstrap == N_BOOT
        assert est.n_sessions == N_SESSIONS and est.n_impressions == N_SESSIONS * K
    assert em.converged


@pytest.mark.parametrize("eta", ETAS)
@pytest.mark.parametrize("classes", ["both", "reference"])
def test_swap_intervention_recovers_truth_on_a_sorted_ranker(eta, classes):
    # The production ranking is deterministic (sorted by relevance); only the swap is random.
    log = _simulate(eta, "sorted", SEEDS[eta][2], swap=True)
    est = _swap(log, classes=classes)
    assert est.identifiable
    assert est.covers(_truth(eta)).all(), (est.examination, _truth(eta))
    assert _max_error(est, eta) < 0.05


@pytest.mark.parametrize("eta", ETAS)
def test_deterministic_placement_biases_ctr_ratio_but_not_em(eta):
    log = _simulate(eta, "sorted", SEEDS[eta][1])
    with pytest.warns(PlacementWarning, match="NOT randomised") as record:
        ctr = _ctr(log)
    assert record[0].filename == __file__  # attributed to the caller, not the library
    assert not ctr.identifiable
    assert "randomised placement" in ctr.reason
    em = _em(log)
    ctr_err, em_err = _max_error(ctr, eta), _max_error(em, eta)
    # Lower slots hold worse items, so the ratio underestimates their examination:
    # measured 0.33 / 0.15 / 0.074 for eta = 0.5 / 1 / 2 (EM: 0.020 / 0.019 / 0.010).
    assert np.all(ctr.examination[1:] < _truth(eta)[1:])
    assert ctr_err > 0.05
    assert not ctr.covers(_truth(eta)).all()
    assert em_err < 0.04
    assert ctr_err > 3 * em_err
    assert em.covers(_truth(eta)).all()


def test_em_accepts_a_personal_relevance_key():
    eta = 1.0
    log = _simulate(eta, "random", SEEDS[eta][0])
    # (user, item) key with 100 users x 50 items: median 20 impressions per key
    key = (log["user_id"] % 100).astype(np.int64) * N_ITEMS + log["item_id"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SparseRelevanceWarning)
        est = em_position_bias(
            log["session_id"],
            log["position"],
            log["item_id"],
            log["click"],
            K,
            relevance_key=key,
            n_bootstrap=0,
        )
    assert _max_error(est, eta) < 0.05  # measured 0.034


def test_em_warns_on_sparse_relevance_keys():
    eta = 1.0
    log = _simulate(eta, "random", SEEDS[eta][0])
    # 1000 users x 50 items: median 2 impressions per key -> incidental-parameter bias
    key = log["user_id"].astype(np.int64) * N_ITEMS + log["item_id"]
    with pytest.warns(SparseRelevanceWarning, match=r"median \d impressions per key"):
        est = em_position_bias(
            log["session_id"],
            log["position"],
            log["item_id"],
            log["click"],
            K,
            relevance_key=key,
            n_bootstrap=0,
        )
    assert "seen at a single position were left out" in est.reason
    assert est.n_impressions < N_SESSIONS * K
    assert "sparse" in est.reason


def test_em_leaves_out_keys_seen_at_a_single_position():
    # Item 9 is always at slot 2 and always clicked: kept, the bound theta_2 >= CTR_9 = 1
    # would pin theta_2 to 1. Items 1, 2 and 3 move between slots and link all three.
    slates = np.array([[1, 2, 9], [2, 1, 9], [1, 2, 9], [2, 1, 9], [3, 1, 2], [1, 2, 3]])
    clicks = np.array([[1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 0, 1], [1, 1, 1]])
    est = em_position_bias(
        np.repeat(np.arange(6), 3),
        np.tile([0, 1, 2], 6),
        slates.ravel(),
        clicks.ravel().astype(bool),
        3,
        n_bootstrap=0,
        min_key_impressions=0,
    )
    assert est.n_impressions == 18 - 4
    assert "4 impressions of 1 relevance keys seen at a single position" in est.reason
    assert np.all(np.isfinite(est.examination))


def test_em_without_acceleration_reaches_the_same_fixed_point():
    eta = 1.0
    log = _simulate(eta, "sorted", SEEDS[eta][1])
    args = (log["session_id"], log["position"], log["item_id"], log["click"])
    fast = PositionBasedEM(K, n_bootstrap=0, tol=1e-8, max_iter=20_000).fit(*args)
    slow = PositionBasedEM(K, n_bootstrap=0, tol=1e-8, max_iter=20_000, accelerate=False).fit(*args)
    assert fast.converged_ and slow.converged_
    assert fast.n_iter_ < slow.n_iter_
    np.testing.assert_allclose(fast.estimate_.examination, slow.estimate_.examination, atol=1e-4)
    # the best item always tops its slate and the worst always ends it: single-position
    # keys, left out of the fit
    assert fast.gamma_.shape == fast.keys_.shape == (N_ITEMS - 2,)


def test_em_warns_when_it_does_not_converge():
    log = _simulate(1.0, "sorted", SEEDS[1.0][1])
    with pytest.warns(RuntimeWarning, match="did not converge"):
        est = em_position_bias(
            log["session_id"],
            log["position"],
            log["item_id"],
            log["click"],
            K,
            max_iter=2,
            n_bootstrap=0,
        )
    assert est.converged is False and est.n_iter == 2
    assert "did not converge" in est.reason
    assert np.all(np.isfinite(est.examination))


# ------------------------------------------------------------------------------------------
# Placement check
# ------------------------------------------------------------------------------------------


def test_placement_check_passes_random_and_rejects_sorted():
    rand = _simulate(1.0, "random", SEEDS[1.0][0])
    srt = _simulate(1.0, "sorted", SEEDS[1.0][1])
    ok = check_randomised_placement(rand["position"], rand["item_id"], K, click=rand["click"])
    bad = check_randomised_placement(srt["position"], srt["item_id"], K, click=srt["click"])
    assert ok.testable and ok.randomised and ok.p_value >= 0.01
    # 200 items x 5 slots -> dof = 199 * 4
    assert ok.dof == (N_ITEMS - 1) * (K - 1) and ok.n_items_pooled == 0
    assert bad.testable and not bad.randomised and bad.p_value < 1e-100
    assert bad.max_deviation > 5 * ok.max_deviation
    assert "NOT randomised" in bad.message


def test_placement_check_reports_untestable_sparse_logs():
    # 4 impressions of 4 different items: no item reaches an expected count of 5
    chk = check_randomised_placement(np.array([0, 1, 0, 1]), np.array([1, 2, 3, 4]), 2)
    assert not chk.testable and chk.dof == 0 and chk.p_value == 1.0


def test_ctr_ratio_can_skip_the_check():
    log = _simulate(1.0, "sorted", SEEDS[1.0][1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = _ctr(log, check_placement=False)
    assert est.identifiable  # the caller vouched for the log


# ------------------------------------------------------------------------------------------
# Swap helper
# ------------------------------------------------------------------------------------------


def test_swap_with_reference_swaps_only_the_reference_and_one_target():
    rng = np.random.default_rng(5)
    n, k, ref = 40_000, 6, 2
    items = np.argsort(rng.random((n, 50)), axis=1)[:, :k].astype(np.int32)
    swapped, original = swap_with_reference(items, rng=7, ref=ref)
    assert swapped.dtype == np.int32 and original.dtype == np.int16
    np.testing.assert_array_equal(np.take_along_axis(items, original.astype(int), axis=1), swapped)
    moved = original != np.arange(k)
    # each row: unchanged (control arm) or exactly the reference and one other slot moved
    assert set(np.unique(moved.sum(axis=1))) == {0, 2}
    assert np.all(moved[:, ref] == moved.any(axis=1))
    np.testing.assert_array_equal(np.sort(swapped, axis=1), np.sort(items, axis=1))
    # the target is uniform over the K slots: each arm ~ n / K = 6667 sessions; a 5-sigma
    # band of the binomial sd sqrt(n p (1-p)) = 74.5 is +-373
    arm = original[:, ref]
    counts = np.bincount(arm, minlength=k)
    assert np.all(np.abs(counts - n / k) < 5 * math.sqrt(n * (1 / k) * (1 - 1 / k)))
    again, _ = swap_with_reference(items, rng=7, ref=ref)
    np.testing.assert_array_equal(again, swapped)


# ------------------------------------------------------------------------------------------
# Result object, reproducibility, dispatcher
# ------------------------------------------------------------------------------------------


def test_estimate_is_reproducible_frozen_and_finite():
    log = _simulate(1.0, "random", SEEDS[1.0][0])
    a = _ctr(log, ref_examination=0.9, n_bootstrap=50)
    b = _ctr(log, ref_examination=0.9, n_bootstrap=50)
    np.testing.assert_array_equal(a.ci_lower, b.ci_lower)
    np.testing.assert_allclose(a.absolute, 0.9 * a.examination)
    assert np.all(a.ci_lower <= a.examination) and np.all(a.examination <= a.ci_upper)
    with pytest.raises(AttributeError):
        a.method = "x"  # frozen dataclass
    with pytest.raises(ValueError):
        a.examination[1] = 0.0  # read-only arrays
    frame = a.to_frame()
    assert list(frame.columns) == ["position", "examination", "ci_lower", "ci_upper", "absolute"]
    assert frame.attrs["method"] == "ctr_ratio"


def test_position_without_clicks_gives_zero_not_nan():
    # slot 1 is shown but never clicked: its examination estimate is 0 (finite)
    session = np.array([0, 0, 1, 1, 2, 2])
    pos = np.array([0, 1, 0, 1, 0, 1])
    item = np.array([1, 2, 2, 1, 1, 2])
    click = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    est = ctr_ratio(session, pos, item, click, 2, n_bootstrap=20, rng=0, check_placement=False)
    np.testing.assert_array_equal(est.examination, [1.0, 0.0])
    assert np.all(np.isfinite(est.ci_lower)) and np.all(np.isfinite(est.ci_upper))


def test_non_reference_position_can_be_the_reference():
    eta = 1.0
    log = _simulate(eta, "random", SEEDS[eta][0])
    est = _ctr(log, reference=2)
    truth = _truth(eta) / _truth(eta)[2]
    assert est.examination[2] == 1.0
    assert est.covers(truth).all()


def test_dispatcher_reads_log_columns():
    log = _simulate(1.0, "sorted", SEEDS[1.0][2], swap=True)
    est = estimate_position_bias(log, "swap_intervention", n_bootstrap=0)
    assert est.method == "swap_intervention" and est.n_positions == K
    with pytest.raises(ValidationError, match="did you mean 'em'"):
        estimate_position_bias(log, "emm")
    with pytest.raises(ValidationError, match="missing"):
        estimate_position_bias({"position": log["position"]}, "em")


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

_GOOD = {
    "session_id": np.array([0, 0, 1, 1, 2, 2, 3, 3]),
    "position": np.array([0, 1, 0, 1, 0, 1, 0, 1]),
    "item_id": np.array([1, 2, 2, 1, 1, 2, 2, 1]),
    "click": np.array([1, 0, 1, 1, 0, 1, 1, 0], dtype=bool),
    "n_positions": 2,
}
_GOOD_SWAP = {  # control arm (sessions 0, 1) and arm 1 (sessions 2, 3)
    "session_id": _GOOD["session_id"],
    "position": _GOOD["position"],
    "original_position": np.array([0, 1, 0, 1, 1, 0, 1, 0]),
    "click": np.array([1, 1, 1, 0, 1, 1, 1, 1], dtype=bool),
    "n_positions": 2,
}


def _call(method, overrides):
    base = dict(_GOOD_SWAP if method == "swap" else _GOOD)
    if method == "swap":
        base.pop("item_id", None)
    base.update(overrides)
    fn = {"ctr": ctr_ratio, "em": em_position_bias, "swap": swap_intervention}[method]
    base.setdefault("n_bootstrap", 0)
    if method == "em":
        base.setdefault("min_key_impressions", 0)  # tiny logs: no sparse-key warning
    if method == "ctr":
        base.setdefault("check_placement", False)
    return fn(**base)


@pytest.mark.parametrize("method", ["ctr", "em", "swap"])
def test_good_tiny_logs_run(method):
    est = _call(method, {})
    assert est.examination.shape == (2,) and np.all(np.isfinite(est.examination))


_COMMON_BAD = [
    ({"n_positions": 1}, "not identifiable: n_positions is 1"),
    ({"position": np.zeros(8, dtype=int)}, "not identifiable: the log holds a single position"),
    ({"position": np.array([0, 1, 0, 2, 0, 1, 0, 1])}, r"position must be in \[0, n_positions\)"),
    ({"position": np.array([0, 1, 0, -1, 0, 1, 0, 1])}, r"position must be in \[0, n_positions\)"),
    ({"n_positions": 3}, r"not identifiable: positions \[2\] have no impressions"),
    ({"click": np.zeros(8, dtype=bool)}, "no clicks: examination not identifiable"),
    ({"click": np.array([1, 0, 1, 1, 0, 1, 1, 2])}, "click must be 0 or 1"),
    ({"click": np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, np.nan])}, "click must be 0 or 1"),
    ({"session_id": np.arange(3)}, "session_id must have the same length"),
    ({"position": np.array([], dtype=int)}, "not identifiable: the log is empty"),
    ({"position": np.zeros((4, 2), dtype=int)}, "must be a 1-D array"),
    ({"position": np.linspace(0, 1, 8)}, "position must hold integers"),
    ({"reference": 2}, r"reference must be an int in \[0, 2\)"),
    ({"n_bootstrap": -1}, "n_bootstrap must be an int >= 0"),
    ({"confidence": 1.5}, r"confidence must be a float in \(0, 1\)"),
    ({"ref_examination": 0.0}, r"ref_examination must be None or a float in \(0, 1\]"),
    ({"n_positions": 2.0}, "n_positions must be an int"),
]


@pytest.mark.parametrize("method", ["ctr", "em", "swap"])
@pytest.mark.parametrize(("kwargs", "match"), _COMMON_BAD)
def test_bad_input_common(method, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        _call(method, kwargs)


@pytest.mark.parametrize(
    ("method", "kwargs", "match"),
    [
        # no click at the reference slot 0
        (
            "ctr",
            {"click": np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=bool)},
            "reference position 0 has no clicks",
        ),
        (
            "em",
            {"click": np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=bool)},
            "reference position 0 has no clicks",
        ),
        # every item always in the same slot: no key links the two positions
        (
            "em",
            {"item_id": np.array([1, 2, 1, 2, 1, 2, 1, 2])},
            "not identifiable: no relevance key appears at two or more positions",
        ),
        # items 1, 2 swap between slots 0, 1 and items 3, 4 between slots 2, 3: two islands
        (
            "em",
            {
                "session_id": np.repeat([0, 1], 4),
                "position": np.tile([0, 1, 2, 3], 2),
                "item_id": np.array([1, 2, 3, 4, 2, 1, 4, 3]),
                "click": np.ones(8, dtype=bool),
                "n_positions": 4,
            },
            r"not identifiable: positions \[2, 3\] share no clicked relevance key",
        ),
        ("em", {"tol": 0.0}, "tol must be a float > 0"),
        ("em", {"max_iter": 0}, "max_iter must be an int >= 1"),
        ("em", {"relevance_key": np.arange(3)}, "relevance_key must have the same length"),
        # item 5 displayed at slot 1 coming from slot 2 is not a swap with slot 0
        (
            "swap",
            {
                "n_positions": 3,
                "position": np.array([0, 1, 0, 1, 0, 1, 0, 2]),
                "original_position": np.array([0, 1, 0, 1, 1, 0, 1, 1]),
            },
            "is not a swap with the reference position 0",
        ),
        (
            "swap",
            {"original_position": np.array([0, 1, 0, 1, 1, 0, 1, 3])},
            r"original_position must be in \[0, 2\)",
        ),
        # only the swapped arm: no control sessions, CTR(ref, ref) unknown
        (
            "swap",
            {"original_position": np.array([1, 0, 1, 0, 1, 0, 1, 0])},
            "no impressions of items originally at position 0 shown at position 0",
        ),
        # arm 1 exists but its moved top item is never clicked
        (
            "swap",
            {"click": np.array([1, 1, 1, 0, 1, 0, 1, 0], dtype=bool)},
            "no clicks on items originally at position 0 shown at position 1",
        ),
        ("swap", {"classes": "all"}, "classes must be 'both' or 'reference'"),
    ],
)
def test_bad_input_per_method(method, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        _call(method, kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"items": np.arange(5)}, "items must be a 2-D array"),
        ({"items": np.zeros((3, 1), dtype=int)}, "not identifiable: items has 1 column"),
        ({"ref": 4}, r"reference must be an int in \[0, 3\)"),
    ],
)
def test_swap_with_reference_bad_input(kwargs, match):
    base = {"items": np.arange(9).reshape(3, 3), "rng": 0}
    base.update(kwargs)
    with pytest.raises(ValidationError, match=match):
        swap_with_reference(**base)


def test_check_randomised_placement_bad_input():
    with pytest.raises(ValidationError, match=r"position must be in \[0, 2\)"):
        check_randomised_placement(np.array([0, 2]), np.array([1, 1]), 2)
    with pytest.raises(ValidationError, match=r"alpha must be a float in \(0, 1\)"):
        check_randomised_placement(np.array([0, 1]), np.array([1, 1]), 2, alpha=2.0)
    with pytest.raises(ValidationError, match="item_id must have the same length"):
        check_randomised_placement(np.array([0, 1]), np.array([1]), 2)
