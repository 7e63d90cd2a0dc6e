"""Off-policy evaluation: estimate a target policy's value from a log of another policy.

Standard estimators work on numpy arrays in the (n_rounds, n_actions, len_list) convention
(``reward``, ``action``, ``position``, ``pscore``, ``action_dist``,
``estimated_rewards_by_reg_model``) and reproduce obp 0.5.7 to floating-point precision; slate
estimators work on (n_slates, len_list) arrays. Every estimator is a small frozen dataclass of
hyperparameters with ``estimate_round_rewards``, ``estimate_policy_value`` and
``estimate_interval``; :func:`make_estimator` builds one by name.

Modules: :mod:`~simulator.ope.estimators` (IPW, SNIPW, DM, DR, SNDR, Switch-DR, DR-OS, SG-IPW,
SG-DR), :mod:`~simulator.ope.slate` (item-position IPS, pseudo-inverse),
:mod:`~simulator.ope.bootstrap` (confidence intervals), :mod:`~simulator.ope.reward_model`
(q̂ with cross-fitting), :mod:`~simulator.ope.data` (Open Bandit Dataset and recloop logs),
:mod:`~simulator.ope.registry` (names).
"""

from simulator.ope.bootstrap import BootstrapInterval, bootstrap_interval
from simulator.ope.data import (
    OBD_ENV_VAR,
    BanditFeedback,
    SlateFeedback,
    default_obd_dir,
    empirical_action_dist,
    load_impression_log,
    load_open_bandit_dataset,
    load_slate_log,
)
from simulator.ope.estimators import (
    BaseOffPolicyEstimator,
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    Estimator,
    InverseProbabilityWeighting,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SubGaussianDoublyRobust,
    SubGaussianInverseProbabilityWeighting,
    SwitchDoublyRobust,
    importance_weights,
)
from simulator.ope.interleaving import (
    balanced_credit,
    balanced_interleave,
    credit,
    interleaving_test,
    team_draft_interleave,
)
from simulator.ope.position_bias import (
    PositionBasedEM,
    PositionBiasEstimate,
    check_randomised_placement,
    ctr_ratio,
    em_position_bias,
    estimate_position_bias,
    swap_intervention,
    swap_with_reference,
)
from simulator.ope.registry import ESTIMATORS, estimator_names, make_estimator, register_estimator
from simulator.ope.reward_model import RewardModel
from simulator.ope.slate import ItemPositionIPS, PseudoInverse, SlateEstimator

__all__ = [
    "ESTIMATORS",
    "OBD_ENV_VAR",
    "BanditFeedback",
    "BaseOffPolicyEstimator",
    "BootstrapInterval",
    "DirectMethod",
    "DoublyRobust",
    "DoublyRobustWithShrinkage",
    "Estimator",
    "InverseProbabilityWeighting",
    "ItemPositionIPS",
    "PositionBasedEM",
    "PositionBiasEstimate",
    "PseudoInverse",
    "RewardModel",
    "SelfNormalizedDoublyRobust",
    "SelfNormalizedInverseProbabilityWeighting",
    "SlateEstimator",
    "SlateFeedback",
    "SubGaussianDoublyRobust",
    "SubGaussianInverseProbabilityWeighting",
    "SwitchDoublyRobust",
    "balanced_credit",
    "balanced_interleave",
    "bootstrap_interval",
    "check_randomised_placement",
    "credit",
    "ctr_ratio",
    "default_obd_dir",
    "em_position_bias",
    "empirical_action_dist",
    "estimate_position_bias",
    "estimator_names",
    "importance_weights",
    "interleaving_test",
    "load_impression_log",
    "load_open_bandit_dataset",
    "load_slate_log",
    "make_estimator",
    "register_estimator",
    "swap_intervention",
    "swap_with_reference",
    "team_draft_interleave",
]
