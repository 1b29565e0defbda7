"""The Dagster UI and the MLflow registry, driven in Debian's headless chromium over a materialized state.

Screenshots land in $CODELUPE_SCREENSHOT_DIR when set (else in pytest's tmp_path) so a person can look.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from codelupe_pipeline.automation.run_once import run_pipeline_once
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.instance import prepare_dagster_home
from codelupe_pipeline.settings import Settings
from codelupe_pipeline_tests.conftest import FAST_RUN_CONFIG
from codelupe_pipeline_tests.servers import dagster_dev, free_port, mlflow_server, wait_for_http

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make system-deps` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_asset_graph_launch_and_registry_in_a_real_browser(
    settings: Settings, browser: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(browser, WebDriver)
    shots = Path(os.environ.get("CODELUPE_SCREENSHOT_DIR", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)

    def page_text() -> str:
        try:
            return str(browser.find_element(By.TAG_NAME, "body").text)
        except WebDriverException:  # mid re-render
            return ""

    # A materialized state in a persistent instance, as `make run` leaves it.
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    home = prepare_dagster_home(settings)
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert run_pipeline_once(defs, instance, FAST_RUN_CONFIG).result.success  # as `codelupe run` does
    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())

    dagster_port, mlflow_port = free_port(), free_port()
    with (
        dagster_dev(settings, dagster_port, tmp_path / "dagster.log") as dagster,
        mlflow_server(settings, mlflow_port, tmp_path / "mlflow.log") as mlflow,
    ):
        base = f"http://127.0.0.1:{dagster_port}"
        wait_for_http(f"{base}/server_info", 240, dagster.proc)
        wait_for_http(f"http://127.0.0.1:{mlflow_port}/health", 240, mlflow.proc)

        # The asset graph: every asset of every group is drawn.
        for group, assets in sorted(groups.items()):
            browser.get(f"{base}/locations/codelupe_pipeline/asset-groups/{group}")
            wait_until(lambda assets=assets: assets <= set(page_text().split("\n")), 90, f"the {group} graph")
            browser.save_screenshot(str(shots / f"dagster-group-{group}.png"))

        # A materialization launched from the UI completes.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs_before = {r.run_id for r in instance.get_runs()}
        browser.get(f"{base}/assets/curation_funnel")

        def click_materialize() -> bool:
            try:  # React re-renders the page as data arrives: an element can go stale between find and click
                browser.find_element(By.XPATH, "//button[normalize-space()='Materialize']").click()
                return True
            except WebDriverException:
                return False

        wait_until(click_materialize, 90, "the Materialize button")

        def launched_run_succeeded() -> bool:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                new = [r for r in instance.get_runs() if r.run_id not in runs_before]
                return bool(new) and new[0].status == dg.DagsterRunStatus.SUCCESS

        wait_until(launched_run_succeeded, 240, "the run launched from the UI to succeed")
        browser.get(f"{base}/runs")
        wait_until(lambda: "Success" in page_text(), 60, "the runs page to show the run")
        browser.save_screenshot(str(shots / "dagster-runs.png"))
        browser.get(f"{base}/assets/curation_funnel")
        wait_until(lambda: "Latest materialization" in page_text(), 60, "the asset page")
        browser.save_screenshot(str(shots / "dagster-asset-curation_funnel.png"))
        assert "Owners" in page_text() and "codelupe" in page_text()  # CODELUPE_ASSET_OWNERS' default team

        # The adapter's page: what a person reads instead of logs, and the link to its MLflow run.
        browser.get(f"{base}/assets/lora_adapter")
        wait_until(lambda: "tokens_per_second" in page_text(), 90, "the adapter's metadata")
        for key in ("loss_curve_plot", "peak_memory_mb", "memory_plan", "mlflow_run", "PyTorch"):
            assert key in page_text(), key
        browser.save_screenshot(str(shots / "dagster-asset-lora_adapter.png"))

        # The MLflow registry shows the model, its aliases and the provenance tags of the version.
        model = settings.registered_model
        browser.get(f"http://127.0.0.1:{mlflow_port}/#/models/{model}")
        wait_until(lambda: "champion" in page_text() and "challenger" in page_text(), 120, "the model's aliases")
        browser.save_screenshot(str(shots / "mlflow-model.png"))
        browser.get(f"http://127.0.0.1:{mlflow_port}/#/models/{model}/versions/1")
        wait_until(lambda: "dataset_version" in page_text(), 120, "the version's tags")
        assert "humaneval_pass_at_1" in page_text()
        browser.save_screenshot(str(shots / "mlflow-version.png"))
