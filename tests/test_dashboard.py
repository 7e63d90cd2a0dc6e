"""The SolaraViz dashboard: control validation, the model adapter, and a real browser session.

The browser test starts ``solara run simulator/dashboard/app.py`` on a free localhost port (the
same command and environment as ``recloop dashboard``), drives headless Debian Chromium with
Selenium, raises epsilon, rebuilds (Reset), steps, and checks that the plotted Gini changed. It
saves a screenshot to ``tests/artifacts/dashboard.png``. Locally it is skipped when Chromium,
chromedriver, selenium, solara or the offline assets are missing; under CI (``CI`` set) it fails
instead, because CI installs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import tiny_config_data

from simulator.config import parse_config
from simulator.dashboard import launch
from simulator.dashboard.model import (
    DEFAULT_WORLD,
    ControlError,
    DashboardModel,
    available_policies,
    controls_from_config,
    validate_controls,
)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HAS_EPSILON_GREEDY = "epsilon_greedy" in available_policies()


# --------------------------------------------------------------------------------- no browser
@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"epsilon": 1.5}, "epsilon must be a float in [0, 1]; got 1.5"),
        ({"epsilon": float("nan")}, "epsilon must be a float in [0, 1]; got nan"),
        ({"temperature": 0.0}, "temperature must be a float in [0.01, 1]; got 0.0"),
        ({"eta": -0.1}, "eta must be a float in [0, 3]; got -0.1"),
        ({"drift_share": "0.2"}, "drift_share must be a float in [0, 1]; got '0.2'"),
        ({"retrain_every_days": 0}, "retrain_every_days must be an integer in [1, 14]; got 0"),
        ({"retrain_every_days": 2.5}, "retrain_every_days must be an integer in [1, 14]; got 2.5"),
        ({"seed": True}, "seed must be an integer in [0, 999]; got True"),
        ({"seed": 1000}, "seed must be an integer in [0, 999]; got 1000"),
        ({"policy": "gredy"}, "got 'gredy' (did you mean 'greedy'?)"),
        ({"epsilom": 0.1}, "unknown dashboard control 'epsilom' (did you mean 'epsilon'?)"),
    ],
)
def test_out_of_range_controls_are_rejected(controls, message):
    with pytest.raises(ControlError, match=re.escape(message)):
        validate_controls(**controls)
    if "unknown" not in message:  # the model's signature takes only the known controls
        with pytest.raises(ControlError, match=re.escape(message)):
            DashboardModel(**controls)


def test_config_values_outside_the_controls_are_rejected():
    data = tiny_config_data(click_model={"eta": 5.0})
    with pytest.raises(ControlError, match=re.escape("click_model.eta: the dashboard's eta must be")):
        controls_from_config(parse_config(data))


def test_dashboard_model_steps_one_day_and_rebuilds_from_controls():
    base = parse_config(tiny_config_data(experiment={"name": "t", "n_rounds": 3}))
    m = DashboardModel(policy="random", seed=3, eta=0.5, drift_share=0.5, base_config=base)
    assert m.config.click_model.eta == 0.5 and m.config.users.alternating_share == 0.5
    assert m.config.experiment.seeds == [3] and list(m.config.policies) == ["dashboard"]
    assert m.day == 0 and m.latest() == {}
    m.step()
    assert m.day == 1 and m.datacollector.get_model_vars_dataframe().index.tolist() == [1]  # day 1
    assert 0 <= m.latest()["gini"] <= 1
    shares = m.user_genre_shares()
    assert shares["day"].tolist() == [1] and shares["shown"].shape == (1, base.catalog.n_genres)
    m.step()
    m.step()
    assert not m.running  # the config's 3 days are done
    m.step()
    assert m.day == 3
    # same controls, same world: a rebuild reproduces the first day
    again = DashboardModel(policy="random", seed=3, eta=0.5, drift_share=0.5, base_config=base)
    again.step()
    assert again.datacollector.get_model_vars_dataframe()["gini"].iloc[0] == pytest.approx(
        m.datacollector.get_model_vars_dataframe()["gini"].iloc[0]
    )


@pytest.mark.skipif(not HAS_EPSILON_GREEDY, reason="epsilon_greedy is not registered")
def test_epsilon_reaches_the_policy():
    base = parse_config(tiny_config_data(experiment={"name": "t", "n_rounds": 3}))
    m = DashboardModel(policy="epsilon_greedy", epsilon=0.3, base_config=base)
    assert m.config.policies["dashboard"].params["epsilon"] == 0.3


def test_import_does_not_need_solara():
    code = "import sys, simulator.dashboard, simulator.cli; assert 'solara' not in sys.modules"
    subprocess.run([os.sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------------------------ browser
def _require(ok: bool, why: str) -> None:
    """Skip locally, fail under CI (CI installs Chromium, the extra and the assets)."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must run the browser test (see .ci/run)")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``solara run`` on a free port with a small world; yields the URL."""
    _require(
        Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(), "Debian chromium/chromium-driver absent"
    )
    _require(shutil.which("npm") is not None or not launch.assets_missing(), "npm absent")
    try:
        import selenium  # noqa: F401
        import solara  # noqa: F401
    except ImportError as err:
        _require(
            False, f"dashboard test dependencies missing ({err.name}): pip install -e '.[dashboard,test]'"
        )
    _require(
        not launch.assets_missing(),
        f"solara assets missing in {launch.assets_dir()}: scripts/dashboard_assets.sh",
    )

    world = json.loads(json.dumps(DEFAULT_WORLD))
    world["users"]["n_users"] = 600
    world["catalog"]["n_items"] = 400
    # start at epsilon 0 (pure greedy): raising epsilon to 1 must flatten exposure
    world["policies"] = (
        {"eg": {"type": "epsilon_greedy", "epsilon": 0.0}} if HAS_EPSILON_GREEDY else {"greedy": {}}
    )
    tmp = tmp_path_factory.mktemp("dashboard")
    cfg_file = launch.write_config(parse_config(world), tmp / "config.json")
    port = _free_port()
    log = open(tmp / "solara.log", "w+")
    proc = subprocess.Popen(
        launch.solara_command("127.0.0.1", port),
        env=launch.solara_env(cfg_file),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"solara did not serve {url} (exit {proc.poll()}):\n{log.read()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="recloop-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1600,1800",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate(driver)
        except Exception:  # elements come and go while the websocket re-renders
            value = None
        if value:
            return value
        time.sleep(0.2)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "dashboard_failure.png"))
    body = driver.find_element("tag name", "body").text
    pytest.fail(f"timed out waiting for {what}; page text:\n{body[:2000]}")


def _button(driver, label: str):
    return driver.find_element("xpath", f"//button[.//text()[normalize-space()='{label}']]")


def _gini(driver) -> float | None:
    cell = driver.find_element(
        "xpath", "//th[normalize-space()='Gini of exposure']/ancestor::table//tbody//td[1]"
    )
    text = cell.text.strip()
    return float(text) if re.fullmatch(r"\d\.\d+", text) else None


_IMAGE_DIGEST = """
const done = arguments[arguments.length - 1];
const img = document.querySelectorAll("img.widget-image")[0];
if (!img) { done(null); return; }
fetch(img.src).then(r => r.arrayBuffer()).then(buf => {
  const u = new Uint8Array(buf); let h = 0;
  for (let i = 0; i < u.length; i++) { h = (Math.imul(h, 31) + u[i]) >>> 0; }
  done(u.length + ":" + h);
}).catch(() => done(null));
"""


def _gini_plot(driver) -> str | None:
    """A digest of the Gini plot's PNG bytes (the first matplotlib image: blob URLs change on
    every render, the bytes only when the plot does)."""
    return driver.execute_async_script(_IMAGE_DIGEST)


def _step_to(driver, day: int) -> None:
    while True:
        current = int(_wait(driver, lambda d: re.search(r"Day (\d+) of", d.page_source), "the day").group(1))
        if current >= day:
            return
        _button(driver, "Step").click()
        _wait(driver, lambda d, c=current: f"Day {c + 1} of" in d.page_source, f"day {current + 1}")


def test_browser_epsilon_changes_the_plotted_gini(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(server)
    _wait(d, lambda d: "Day 0 of" in d.find_element("tag name", "body").text, "the dashboard", timeout=90)
    for label in ("Reset", "Step", "policy", "epsilon", "temperature", "eta", "drift share", "seed"):
        assert label.lower() in d.find_element("tag name", "body").text.lower(), label

    _step_to(d, 2)
    gini_before = _wait(d, _gini, "a Gini value")
    plot_before = _wait(d, _gini_plot, "the Gini plot")

    slider = d.find_element("css selector", "div[role='slider'][aria-label='epsilon']")
    d.execute_script("arguments[0].focus();", slider)  # the thumb container has zero size
    ActionChains(d).send_keys(Keys.END).perform()  # the slider's maximum: epsilon = 1
    _wait(d, lambda d: slider.get_attribute("aria-valuenow") == "1", "epsilon = 1")
    _button(d, "Reset").click()
    _wait(d, lambda d: "Day 0 of" in d.page_source, "the rebuilt model")
    if HAS_EPSILON_GREEDY:
        assert "epsilon = 1" in d.find_element("tag name", "body").text
    _step_to(d, 2)
    gini_after = _wait(d, _gini, "a Gini value")
    _wait(d, lambda d: _gini_plot(d) not in (None, plot_before), "the Gini plot to change")

    ARTIFACTS.mkdir(exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    if HAS_EPSILON_GREEDY:
        # same world, same sessions; epsilon 0 -> 1: uniform random slots spread exposure
        assert gini_after < gini_before - 0.1, (gini_before, gini_after)


def test_cli_checks_the_config_against_the_controls(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    cfg = tmp_path / "world.toml"
    cfg.write_text('[experiment]\nname = "w"\n[users]\nn_users = 5000\n[policies.greedy]\n')
    runner = CliRunner()
    ok = runner.invoke(app, ["dashboard", str(cfg), "--check"])
    assert ok.exit_code == 0, ok.output
    assert "users.n_users 5,000 -> 1,000" in ok.output and "policy=greedy" in ok.output
    bad = runner.invoke(app, ["dashboard", str(cfg), "--set", "click_model.eta=5", "--check"])
    assert bad.exit_code == 2
    assert "error: click_model.eta: the dashboard's eta must be a float in [0, 3]; got 5.0" in bad.output
    missing = runner.invoke(app, ["dashboard", str(tmp_path / "nope.toml"), "--check"])
    assert missing.exit_code == 2 and "error:" in missing.output
