"""Servers launched on this machine for a browser to look at (JupyterLab, TensorBoard): a free port, and
waiting until the launched process answers.  Shared by ``make screenshots`` (``bench/screenshots.py``)
and the browser tests, which start the same servers; it imports nothing from avlib.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answer_when_up(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 120,
                   read: Callable = lambda response: None):
    """``read(response)`` of the first 200 answer of ``url``, polled every 0.5 s while ``process`` (the
    server) runs.  Why the process and its log: a server that dies at start (a port in use, JupyterLab
    refusing root) should fail at once with its own words, not after the whole timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return read(response)
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


#: Debian's Chromium (``apt-get install chromium``), driven by Playwright, which never downloads a browser here
CHROMIUM = Path("/usr/bin/chromium")
#: headless, as root (no sandbox), and quiet on a machine with no internet: without the background-networking
#: flags Chromium keeps trying connections this machine refuses
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_notebook_in_lab(page, url: str, timeout_ms: int = 90_000) -> None:
    """Go to a notebook's JupyterLab ``url`` (``/lab/tree/...``; the server started with
    ``--LabApp.expose_app_in_browser=True``) and return once its cells are drawn and its kernel is idle:
    Run All before that runs nothing."""
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell')",
                           timeout=timeout_ms)
    page.wait_for_function("""() => {
        const widget = window.jupyterapp.shell.currentWidget;
        return widget && widget.sessionContext && widget.sessionContext.session
            && widget.sessionContext.session.kernel && widget.sessionContext.session.kernel.status === 'idle';
    }""", timeout=timeout_ms)
