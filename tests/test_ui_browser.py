"""The dashboard in a real browser: `streamlit run` on 127.0.0.1 over the fixture lake, driven by Playwright
with Debian's Chromium (/usr/bin/chromium; `.ci/run` installs it). Every page is opened, its key numbers
(computed here from the Delta tables) are found on screen, and a screenshot of each page is saved under
test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import ui_lake  # tests/ui_lake.py (pytest puts tests/ on sys.path: no __init__.py there)

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("NEXA_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 30_000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("ui-browser") / "lake"
    ui_lake.build(root)
    return str(root)


@pytest.fixture(scope="module")
def server(lake_root) -> Iterator[str]:
    """`streamlit run nexa_ui/app.py` on a free 127.0.0.1 port; yields its base URL."""
    port = _free_port()
    env = {**os.environ, "NEXA_LAKE_ROOT": lake_root, "OMP_NUM_THREADS": "1"}
    log = open(Path(lake_root).parent / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "nexa_ui" / "app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: "
                                   f"{(Path(lake_root).parent / 'streamlit.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("streamlit did not answer /_stcore/health within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (`apt-get install -y chromium`; "
                    ".ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        yield pg
    finally:
        context.close()


def visit(page, url: str) -> None:
    page.goto(url)
    page.get_by_test_id("stApp").wait_for()
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=TIMEOUT_MS)


def metric_value(page, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)  # let charts finish drawing
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert (SHOTS / f"{name}.png").stat().st_size > 10_000


def assert_no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0


def test_every_page_shows_lake_numbers(page, server, lake_root):
    from nexa_resources.lake import LakeResource

    lake = LakeResource(root=lake_root)
    source = ["model_id", "judge_model", "rubric_version", "eval_set"]
    carried = lake.read("eval/metrics").select(source).unique()
    overall = (  # each answer's mean metric score, then the mean over a model's answers
        lake.read("eval/scores").join(carried, on=source)
        .group_by("model_id", "prompt_id").agg(pl.col("score").cast(pl.Float64).mean())
        .group_by("model_id").agg(pl.col("score").mean().alias("overall"))
        .sort("overall", descending=True)
    )
    leader, leader_score = overall.row(0)
    labels = lake.read("eval/metrics").filter(pl.col("model_id") == leader)["model_label"].drop_nulls()

    visit(page, f"{server}/")  # the default page lives at the root
    assert metric_value(page, "Leader") == leader
    if labels.len() and labels[0] != leader:
        page.get_by_text(labels[0], exact=True).first.wait_for()
    assert metric_value(page, "Leader overall score") == f"{leader_score:.2f}"
    assert metric_value(page, "Models evaluated") == str(overall.height)
    assert_no_exception(page)
    shot(page, "1-leaderboard")

    weak = lake.read("feedback/weaknesses")
    target = weak.filter((pl.col("round") == weak["round"].max()) & (pl.col("status") == "weak")).sort(
        "gap", descending=True).row(0, named=True)
    visit(page, f"{server}/cells?model={target['model_id']}&metric={target['metric']}"
                f"&domain={target['domain']}&task_type={target['task_type']}")
    assert metric_value(page, f"{target['model_id']} score") == f"{target['score']:.2f}"
    assert metric_value(page, "Threshold") == f"{target['threshold']:.2f}"
    assert metric_value(page, "Status") == "weak"
    page.locator("canvas, svg").first.wait_for()
    assert_no_exception(page)
    shot(page, "2-cells")

    pairs = lake.read("distill/pairs")
    visit(page, f"{server}/inspector?pair={ui_lake.REGEN_CHILD}")
    assert metric_value(page, "Pairs shown") == str(pairs.height)
    assert metric_value(page, "Passed") == str(int(pairs["passed"].sum()))
    completion = lake.read("distill/completions").filter(pl.col("request_id") == ui_lake.REGEN_CHILD)["completion"][0]
    page.get_by_text(completion, exact=True).first.wait_for()
    page.get_by_text(ui_lake.REGEN_PARENT).first.wait_for()  # its regeneration chain
    assert_no_exception(page)
    shot(page, "3-inspector")

    checkpoints = lake.read("train/checkpoints").sort("created_at")
    visit(page, f"{server}/training")
    assert metric_value(page, "Checkpoints") == str(checkpoints.height)
    assert metric_value(page, "Latest tokens/s") == f"{checkpoints['tokens_per_s'][-1]:,.0f}"
    assert metric_value(page, "GPU $ (all checkpoints)") == f"${checkpoints['cost_usd'].sum():,.4f}"
    assert_no_exception(page)
    shot(page, "4-training")

    completions = lake.read("distill/completions")
    visit(page, f"{server}/costs")
    tokens = completions["prompt_tokens"].sum() + completions["completion_tokens"].sum()
    assert metric_value(page, "Teacher tokens") == f"{tokens:,}"
    assert metric_value(page, "GPU") == f"${checkpoints['cost_usd'].sum():,.4f}"
    assert_no_exception(page)
    shot(page, "5-costs")

    visit(page, f"{server}/sql")
    page.get_by_text(re.compile(r"^\d+ rows$")).wait_for()  # the default query ran
    editor = page.get_by_test_id("stTextArea").locator("textarea")
    editor.fill("SELECT count(*) AS n FROM distill.pairs")
    page.get_by_test_id("stButton").get_by_text("Run").click()
    page.get_by_text("1 rows", exact=True).wait_for()
    editor.fill("SELECT * FROM read_csv('/etc/passwd')")
    page.get_by_test_id("stButton").get_by_text("Run").click()
    refusal = page.get_by_test_id("stAlert").filter(has_text="external file access is disabled")
    refusal.wait_for()
    assert "Refused" in refusal.inner_text()
    assert "root:" not in page.content()
    assert_no_exception(page)
    shot(page, "6-sql-refused")


def test_weak_cell_to_its_pairs_in_clicks(page, server, lake_root):
    """Leaderboard → weak cell → its pairs, by clicking links in the browser."""
    from nexa_resources.lake import LakeResource

    lake = LakeResource(root=lake_root)
    weak = lake.read("feedback/weaknesses")
    target = weak.filter((pl.col("round") == weak["round"].max()) & (pl.col("status") == "weak")).sort(
        "gap", descending=True).row(0, named=True)
    visit(page, f"{server}/")  # the default page lives at the root
    page.get_by_role("link", name=re.compile(
        f"{target['domain']} · {target['task_type']} · {target['metric']}")).first.click()  # click 1
    page.wait_for_url(re.compile(r"/cells\?"))
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
    assert metric_value(page, "Status") == "weak"
    page.get_by_role("link", name=re.compile("Pairs behind")).click()  # click 2
    page.wait_for_url(re.compile(r"/inspector\?"))
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
    expected = lake.read("distill/pairs").filter(
        (pl.col("domain") == target["domain"]) & (pl.col("task_type") == target["task_type"]))
    page.get_by_test_id("stMetricValue").first.wait_for()
    assert metric_value(page, "Pairs shown") == str(expected.height)
    assert f"domain={target['domain']}" in page.url and f"task_type={target['task_type']}" in page.url
    shot(page, "7-weak-cell-pairs")
