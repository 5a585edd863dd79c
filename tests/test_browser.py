"""The analysis notebook in a real browser: JupyterLab on 127.0.0.1, headless system Chromium (Playwright).

Runs every cell of ``03_negative_diversity.ipynb`` (on two tiny runs), changes the query in the
inspector, checks that the negatives listed in the page become those the data side ranks for the new
query, and screenshots the inspector into the test's temporary folder (tests write no tracked file;
``make screenshots`` regenerates ``reports/screenshots/``).  Skipped, with a banner
at the end of the run, where ``/usr/bin/chromium`` is missing; ``.ci/run`` installs Debian's
``chromium`` and sets ``AVLIB_REQUIRE_SYSTEM=1``, so in CI it runs or fails (``tests/system.py``).
Playwright never downloads a browser here.
"""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from avlib.localhost import CHROMIUM, CHROMIUM_ARGS, answer_when_up, free_port, open_notebook_in_lab
from system import needs_system

ROOT = Path(__file__).resolve().parents[1]

pytestmark = needs_system(CHROMIUM, "apt-get install chromium fonts-dejavu-core")


@pytest.fixture
def lab(tmp_path):
    """Two tiny runs, a parameterised copy of notebook 03 beside them, and a JupyterLab serving that folder."""
    from avlib.train import pretrain
    from tiny import tiny_config

    run_dirs = [str(tmp_path / sampler) for sampler in ("random", "active")]
    for run_dir, sampler in zip(run_dirs, ("random", "active")):
        pretrain(tiny_config(run_dir, sampler=sampler, epochs=3, snapshot_every=3, probe=False))
    papermill.execute_notebook(str(ROOT / "notebooks" / "03_negative_diversity.ipynb"),
                               str(tmp_path / "03_negative_diversity.ipynb"), prepare_only=True,
                               parameters={"run_dirs": run_dirs, "output_dir": str(tmp_path / "out"), "umap": False})
    settings = tmp_path / "lab-settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news prompt over the page
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    port, token = free_port(), secrets.token_hex(16)
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.open_browser=False", "--allow-root"],  # CI containers may run as root
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"),
    )
    try:
        answer_when_up(f"http://127.0.0.1:{port}/api/status?token={token}", process, tmp_path / "lab.log", timeout_s=90)
        yield {"url": f"http://127.0.0.1:{port}/lab/tree/03_negative_diversity.ipynb?token={token}",
               "run_dirs": run_dirs, "log": tmp_path / "lab.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _listed(page) -> list[int]:
    """Clip indices of the negatives the page shows, in order ('#rank clip N' in each row)."""
    text = page.locator(".avlib-negatives").inner_text()
    return [int(clip) for clip in re.findall(r"#\d+ clip (\d+)", text)]


def test_inspector_runs_in_jupyterlab_and_follows_the_query(lab, tmp_path):
    screenshot = tmp_path / "inspector.png"
    from playwright.sync_api import sync_playwright

    from avlib.analysis.inspector import inspect_query
    from avlib.dictionary.snapshots import read_snapshot

    # what the data side ranks for each query of the random run's last snapshot (the inspector's start)
    queries = read_snapshot(lab["run_dirs"][0]).batch_clip_index.tolist()
    expected = {q: [n.clip_index for n in inspect_query(lab["run_dirs"][0], -1, "audio", q, top_k=6).negatives]
                for q in queries}
    other = next(q for q in queries[1:] if expected[q] != expected[queries[0]])

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            open_notebook_in_lab(page, lab["url"], timeout_ms=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".avlib-negatives img", timeout=180_000)
            page.wait_for_function("() => /#1 clip/.test(document.querySelector('.avlib-negatives').innerText)",
                                   timeout=60_000)
            assert _listed(page) == expected[queries[0]], (lab["log"].read_text()[-2000:])

            before = page.locator(".avlib-negatives").inner_text()
            page.locator(".avlib-query select").select_option(index=queries.index(other))  # a new query clip
            page.wait_for_function("""before => {
                const text = document.querySelector('.avlib-negatives').innerText;
                return /#1 clip/.test(text) && text !== before;
            }""", arg=before, timeout=60_000)
            assert _listed(page) == expected[other]
            assert f"clip {other}" in page.locator(".avlib-inspector").inner_text()

            inspector = page.locator(".avlib-inspector")
            inspector.scroll_into_view_if_needed()
            page.wait_for_function("() => [...document.querySelectorAll('.avlib-inspector img')]"
                                   ".every(img => img.complete && img.naturalWidth > 0)", timeout=30_000)
            inspector.screenshot(path=str(screenshot))
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
