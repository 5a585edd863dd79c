"""``make screenshots``: regenerates ``reports/screenshots/*.png``, what a new user sees, in headless
system Chromium driven by Playwright (as ``tests/test_browser.py`` does; Playwright never downloads a
browser here: ``apt-get install -y --no-install-recommends chromium fonts-dejavu-core``).

1. Two tiny training runs (the ``random`` and ``active`` samplers, ~20 s each on 2 cores) in a temporary
   folder with its own data home (``AVLIB_HOME``): your runs and datasets are not touched.
2. TensorBoard on that ``runs/`` folder: its landing page (Time Series: the loss, the probes and the
   kNN monitor first), the Scalars page, the dictionary counts (tag filter ``5_dictionary/video``),
   the HParams table, and the projector (the newest snapshot, its keys in their class's colour).
3. Notebook 03 (``notebooks/03_negative_diversity.ipynb``, as the working tree holds it) in
   JupyterLab after Run All, with its defaults except ``run_dirs`` (the two tiny runs) and
   ``output_dir`` (the temporary folder): the whole notebook, and its inspector.

This is the only command that writes ``reports/screenshots/``; it replaces the PNGs there.
Usage: ``python bench/screenshots.py [--keep DIR]`` (``--keep``: work in DIR and leave it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from avlib.localhost import CHROMIUM, CHROMIUM_ARGS, answer_when_up, free_port, open_notebook_in_lab

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "screenshots"
# the main job's configuration shrunk (tests/test_learning_signal.py: it learns, learning_signal ~0.64): 4 classes x
# 24 clips at 32 px, batch 16, 32-key dictionaries, 45 epochs = 135 steps; the charts show a run that learns
TINY = dict(num_classes=4, clips_per_class=24, clip_seconds=2.0, fps=8, frame_size=32, crop_size=24,
            sample_rate=8000, n_mels=32, window_s=1.0, audio_window_s=1.0, batch_size=16, dictionary_size=32,
            checkpoint_every=50, num_workers=0, progress=False, warmup_steps=5, monitor_every=15,
            snapshot_every=15, num_threads=1)


class Server:
    """A server process (TensorBoard, JupyterLab) on 127.0.0.1, stopped on exit."""

    def __init__(self, command: list[str], ready_url: str, log: Path, cwd: Path, env: dict | None = None):
        self.log = log
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                        stderr=open(log, "w"))
        answer_when_up(ready_url, self.process, log)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def train_tiny_runs(work: Path) -> list[Path]:
    """Two tiny runs under ``work/runs`` (the data home is ``work/home``, set by :func:`main`)."""
    from avlib.config import PretrainConfig
    from avlib.train import pretrain

    run_dirs = []
    for sampler in ("random", "active"):
        run_dir = work / "runs" / sampler
        started = time.perf_counter()
        pretrain(PretrainConfig(run_dir=str(run_dir), sampler=sampler, **TINY))
        print(f"trained {run_dir} in {time.perf_counter() - started:.1f} s", flush=True)
        run_dirs.append(run_dir)
    return run_dirs


def _settle(page, seconds: float = 2.0) -> None:
    """Wait for the network to go quiet (at most 15 s: the projector keeps polling), then ``seconds``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_load_state("networkidle", timeout=15_000)
    except PlaywrightTimeout:
        pass
    time.sleep(seconds)


def tensorboard_screenshots(browser, work: Path) -> list[Path]:
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(work / "runs"), "--port", str(port),
               "--host", "127.0.0.1"]
    shots = []
    with Server(command, f"http://127.0.0.1:{port}/data/runs", work / "tensorboard.log", cwd=work):
        page = browser.new_page()
        page.set_viewport_size({"width": 1500, "height": 2000})
        base = f"http://127.0.0.1:{port}/"

        page.goto(base)  # the landing page: Time Series
        page.wait_for_selector("text=1_loss", timeout=60_000)
        page.wait_for_selector("text=3_knn_monitor", timeout=60_000)
        _settle(page, 4)
        shots.append(_shot(page, "tensorboard_time_series.png"))

        page.fill("input[placeholder='Filter tags (regex)']", "5_dictionary/video")  # the counts
        page.keyboard.press("Escape")  # close the tag suggestions over the charts
        page.mouse.click(1100, 60)
        _settle(page, 4)
        shots.append(_shot(page, "tensorboard_dictionary_counts.png"))

        page.goto(base + "#scalars")  # the Scalars page (the same groups, the same order)
        page.wait_for_selector("text=1_loss", timeout=60_000)
        _settle(page, 4)
        shots.append(_shot(page, "tensorboard_scalars.png"))

        page.set_viewport_size({"width": 1500, "height": 900})
        page.goto(base + "#hparams")
        page.wait_for_selector("text=sampler", timeout=60_000)
        _settle(page, 3)
        shots.append(_shot(page, "tensorboard_hparams.png"))

        page.set_viewport_size({"width": 1500, "height": 1000})
        page.goto(base + "#projector")
        deadline = time.monotonic() + 120  # the projector (in its own frame) says how many points it shows
        while not any(frame.locator("text=/Points: \\d+/").count() for frame in page.frames):
            if time.monotonic() > deadline:
                raise TimeoutError("the projector showed no points within 120 s")
            time.sleep(1)
        _settle(page, 8)  # the PCA is computed in the page
        shots.append(_shot(page, "tensorboard_projector.png"))
        page.close()
    return shots


def notebook_screenshots(browser, work: Path, run_dirs: list[Path]) -> list[Path]:
    """Notebook 03 as the working tree holds it, parameterised for the tiny runs, after Run All."""
    import papermill

    lab_root = work / "lab"
    (lab_root / "notebooks").mkdir(parents=True)
    notebook = lab_root / "notebooks" / "03_negative_diversity.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "03_negative_diversity.ipynb"), str(notebook),
                               prepare_only=True, parameters={"run_dirs": [str(p) for p in run_dirs],
                                                              "output_dir": str(work / "notebook03_out")})
    settings = work / "lab-settings"
    for extension, name, value in (
            ("apputils-extension", "notification", {"fetchNews": "false", "checkForUpdates": False}),
            ("notebook-extension", "tracker", {"windowingMode": "none"})):  # every cell rendered, for the page shot
        (settings / "@jupyterlab" / extension).mkdir(parents=True, exist_ok=True)
        (settings / "@jupyterlab" / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(value))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces")}
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={lab_root}", "--ServerApp.open_browser=False",
               "--LabApp.expose_app_in_browser=True", "--allow-root"]
    shots = []
    with Server(command, f"http://127.0.0.1:{port}/api/status?token={token}", work / "lab.log", cwd=lab_root, env=env):
        page = browser.new_page()
        page.set_viewport_size({"width": 1500, "height": 1200})
        open_notebook_in_lab(page, f"http://127.0.0.1:{port}/lab/tree/notebooks/03_negative_diversity.ipynb?token={token}",
                             timeout_ms=120_000)
        started = time.perf_counter()
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function("""() => {  // every code cell has run and the kernel is idle again
            const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            return cells.length > 0 && cells.every(c => /\\[\\d+\\]/.test(c.innerText)) && kernel.status === 'idle';
        }""", timeout=600_000)
        page.wait_for_selector(".avlib-negatives img", timeout=120_000)
        page.wait_for_function("() => [...document.querySelectorAll('.jp-Notebook img')]"
                               ".every(img => img.complete && img.naturalWidth > 0)", timeout=60_000)
        print(f"notebook 03: Run All took {time.perf_counter() - started:.1f} s", flush=True)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                              ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()
        for text in errors:
            print(f"notebook 03 printed to stderr / raised:\n{text[:2000]}", flush=True)
        _settle(page, 2)
        # the whole notebook: make the page as tall as the notebook's content, then shoot it
        height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
            '.jp-NotebookPanel-notebook, .jp-WindowedPanel-outer, .jp-WindowedPanel-viewport, .jp-Notebook')]
            .map(e => e.scrollHeight))""")
        page.set_viewport_size({"width": 1500, "height": min(int(height) + 250, 16000)})
        _settle(page, 3)
        page.evaluate("() => document.querySelectorAll('.jp-NotebookPanel-notebook, .jp-WindowedPanel-outer')"
                      ".forEach(e => { e.scrollTop = 0; })")  # Run All left it at the last cell
        _settle(page, 2)
        shots.append(_shot(page, "notebook03_after_run_all.png"))
        inspector = page.locator(".avlib-inspector")
        inspector.scroll_into_view_if_needed()
        shots.append(_shot(inspector, "notebook03_inspector.png"))
        page.close()
    return shots


def _shot(target, name: str) -> Path:
    path = OUT / name
    target.screenshot(path=str(path))
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and leave it (default: a temporary one)")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium fonts-dejavu-core",
              file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="avlib-screenshots-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["AVLIB_HOME"] = str(work / "home")  # a data home of its own (the tiny synthetic dataset)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from playwright.sync_api import sync_playwright

    try:
        run_dirs = train_tiny_runs(work)
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        with sync_playwright() as playwright:
            # a fresh profile (Playwright passes it as --user-data-dir)
            browser = playwright.chromium.launch_persistent_context(
                str(work / "chromium"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                tensorboard_screenshots(browser, work)
                notebook_screenshots(browser, work, run_dirs)  # last: notebook 03 as the working tree holds it
            finally:
                browser.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
