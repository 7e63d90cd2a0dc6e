"""Config validation: every bad input names the key, the rule and the value."""

from __future__ import annotations

import re

import pytest
from conftest import tiny_config_data

from simulator.config import apply_overrides, load_config, parse_config, parse_override
from simulator.errors import ConfigError


def _with(path: str, value):
    data = tiny_config_data()
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return data


BAD = [
    # (key path, value, expected fragment of the message)
    ("users.n_users", -5, r"users\.n_users: Input should be greater than 0; got -5"),
    ("catalog.n_items", 0, r"catalog\.n_items: Input should be greater than 0"),
    ("click_model.eta", -1.0, r"click_model\.eta: Input should be greater than or equal to 0"),
    ("simulation.slate_size", 1000, r"slate_size must be <= catalog\.n_items \(300\); got 1000"),
    ("simulation.slate_size", 1, r"simulation\.slate_size: Input should be greater than or equal to 2"),
    ("catalog.n_genres", 1, r"users\.alternating_share must be 0 when catalog\.n_genres = 1"),
    ("simulation.log_fraction", 1.5, r"simulation\.log_fraction: Input should be less than or equal to 1"),
    ("users.n_userz", 5, r"users\.n_userz: unknown key \(did you mean 'n_users'\?\)"),
    ("bogus_section.x", 1, r"bogus_section: unknown key"),
    ("click_model.type", "dbn", r"click_model\.type: Input should be 'pbm' or 'cascade'"),
    ("experiment.seeds", [1, 1], r"seeds must be unique"),
    ("policies.greedy.factors", 0, r"policies\.greedy\.factors: Input should be greater than or equal to 1"),
    ("policies.greedy.alpah", 3.0, r"policies\.greedy\.alpah: unknown key \(did you mean 'alpha'\?\)"),
    ("policies.gredy", {}, r"unknown policy 'gredy' \(did you mean 'greedy'\?\)"),
    ("metrics.n_tracked_users", 10_000, r"n_tracked_users must be <= users\.n_users"),
]


@pytest.mark.parametrize(("path", "value", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_name_the_key(path, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(_with(path, value))


def test_missing_experiment_section():
    data = tiny_config_data()
    del data["experiment"]
    with pytest.raises(ConfigError, match=r"experiment: required key is missing"):
        parse_config(data)


def test_intervention_must_target_a_policy():
    data = tiny_config_data(interventions=[{"day": 3, "policy": "greddy", "param": "x", "value": 1}])
    with pytest.raises(ConfigError, match=r"did you mean 'greedy'"):
        parse_config(data)


def test_missing_file_and_malformed_toml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\nname = 'x'\n")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_config(bad)


def test_overrides_parse_toml_literals():
    assert parse_override("users.n_users=100") == (["users", "n_users"], 100)
    assert parse_override("experiment.seeds=[1, 2]") == (["experiment", "seeds"], [1, 2])
    assert parse_override("click_model.type=cascade") == (["click_model", "type"], "cascade")
    data = apply_overrides(tiny_config_data(), ["users.n_users=123", "click_model.eta=0.5"])
    cfg = parse_config(data)
    assert cfg.users.n_users == 123 and cfg.click_model.eta == 0.5
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        parse_override("no_equals_sign")


def test_override_keys_are_toml_dotted_keys():
    # a quoted part keeps its dots (a swept key); "=" inside quotes is part of the key
    assert parse_override('sweep.grid."users.n_users"=[100, 200]') == (
        ["sweep", "grid", "users.n_users"],
        [100, 200],
    )
    assert parse_override("sweep.grid.'a=b'=1") == (["sweep", "grid", "a=b"], 1)
    assert parse_override("experiment.name=x=y") == (["experiment", "name"], "x=y")
    assert parse_override("policies.eps 5%.epsilon=0.1") == (["policies", "eps 5%", "epsilon"], 0.1)
    data = apply_overrides(tiny_config_data(), ['sweep.grid."users.n_users"=[50, 60]'])
    assert parse_config(data).sweep.grid == {"users.n_users": [50, 60]}
    for bad in ("a..b=1", "=3", 'sweep.grid."users.n_users=3'):
        with pytest.raises(ConfigError, match=r"key\.path=value"):
            parse_override(bad)


def test_experiment_configs_validate():
    # every shipped config is a valid document
    from pathlib import Path

    from simulator.ope.interleaving_study_config import load_interleaving_study

    configs = sorted(Path(__file__).parents[1].glob("experiments/*.toml"))
    assert configs
    for path in configs:
        # [study] documents (interleaving_vs_ab) have their own schema
        (load_interleaving_study if "\n[study]" in path.read_text() else load_config)(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("relevance.intercept=nan", "relevance.intercept: Input should be a finite number"),
        ("relevance.intercept=inf", "relevance.intercept: Input should be a finite number"),
        ("users.n_users=99999999999999999999999", "users.n_users: Input should be less than or equal to"),
        ("catalog.n_genres=true", "catalog: n_genres must be a number; got True"),
        ("experiment.seeds=[true]", "experiment.seeds.0: Input should be a valid integer"),
        ("experiment.seeds=[99999999999999999999]", "experiment.seeds.0: Input should be less than"),
    ],
)
def test_values_that_pass_a_range_check_but_break_a_run_are_refused(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(apply_overrides(tiny_config_data(), [override]))


def test_an_unquoted_swept_key_gets_a_hint_to_quote_it():
    data = apply_overrides(tiny_config_data(), ["sweep.grid.users.n_users=[100, 200]"])
    with pytest.raises(
        ConfigError, match=r'sweep\.grid\.users: .*a swept key is one quoted key: "users\.<key>"'
    ):
        parse_config(data)
