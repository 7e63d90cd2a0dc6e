"""Click models against their closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.clicks.models import CascadeModel, PositionBasedModel, make_click_model, pbm_examination
from simulator.errors import ValidationError


def test_pbm_examination_closed_form():
    # 1/(k+1)^eta at k = 0..3 with eta = 2: 1, 1/4, 1/9, 1/16
    np.testing.assert_allclose(pbm_examination(4, 2.0), [1, 1 / 4, 1 / 9, 1 / 16], rtol=1e-6)
    np.testing.assert_allclose(pbm_examination(3, 0.0), [1, 1, 1])


@pytest.mark.parametrize("eta", [0.5, 1.0, 2.0])
def test_pbm_empirical_ctr_matches_closed_form(eta):
    # n = 200k sessions, relevance 0.6 everywhere: CTR_k = 0.6/(k+1)^eta.
    # The binomial sd of a CTR near 0.6 is <= sqrt(0.25/2e5) = 0.0011; tolerance 5 sd = 0.0056.
    n, k = 200_000, 5
    rel = np.full((n, k), 0.6, dtype=np.float32)
    fb = PositionBasedModel(eta=eta).simulate(rel, np.random.default_rng(7))
    expected = 0.6 / np.arange(1, k + 1) ** eta
    np.testing.assert_allclose(fb.clicks.mean(axis=0), expected, atol=0.0056)
    np.testing.assert_allclose(fb.click_probability[0], expected, rtol=1e-6)


def test_pbm_explicit_examination_vector():
    m = PositionBasedModel(examination=(0.9, 0.5, 0.2))
    _exam, p = m.click_probabilities(np.full((2, 3), 0.5, np.float32))
    np.testing.assert_allclose(p[0], [0.45, 0.25, 0.1], rtol=1e-6)
    with pytest.raises(ValidationError, match="slate has 4"):
        m.click_probabilities(np.full((2, 4), 0.5, np.float32))


def test_cascade_stops_after_first_click_and_matches_closed_form():
    # relevance (0.3, 0.5, 0.2): P(click_0)=0.3, P(click_1)=0.7*0.5=0.35, P(click_2)=0.7*0.5*0.2=0.07
    n = 200_000
    rel = np.tile(np.array([0.3, 0.5, 0.2], np.float32), (n, 1))
    fb = CascadeModel().simulate(rel, np.random.default_rng(3))
    assert fb.clicks.sum(axis=1).max() == 1  # never more than one click
    np.testing.assert_allclose(fb.click_probability[0], [0.3, 0.35, 0.07], rtol=1e-6)
    np.testing.assert_allclose(fb.examination[0], [1.0, 0.7, 0.35], rtol=1e-6)
    # binomial sd <= 0.0011 at n = 200k: tolerance 0.006
    np.testing.assert_allclose(fb.clicks.mean(axis=0), [0.3, 0.35, 0.07], atol=0.006)


def test_simulate_draws_one_uniform_per_slot():
    # common random numbers: both models consume exactly n*K uniforms
    rel = np.full((10, 4), 0.5, np.float32)
    for model in (PositionBasedModel(), CascadeModel()):
        rng = np.random.default_rng(0)
        model.simulate(rel, rng)
        ref = np.random.default_rng(0)
        ref.random((10, 4), dtype=np.float32)
        assert rng.random() == ref.random()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: PositionBasedModel(eta=-1), "eta must be a finite float >= 0; got -1"),
        (lambda: PositionBasedModel(examination=(0.5, 1.5)), r"values in \(0, 1\]"),
        (
            lambda: PositionBasedModel().simulate(np.full((2, 2), 1.5), np.random.default_rng()),
            r"probabilities in \[0, 1\]",
        ),
        (lambda: make_click_model("pbn"), r"did you mean 'pbm'"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValidationError, match=match):
        call()
