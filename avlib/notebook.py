"""``python -m avlib.notebook NOTEBOOK OUTPUT [papermill's options]``: papermill, for a terminal.

``make pretrain`` runs ``notebooks/02_pretrain.ipynb`` through this.  It takes papermill's own command
line (``-p name value``, ``-y YAML``, ``-f file``, ``--cwd`` ...: the same parser, papermill's) and
differs in what the terminal shows:

* the kernel's stdout and stderr as they come (the training's progress lines, the probe table, the
  run folder's path), instead of papermill's cell counter, which says nothing for minutes;
* for a notebook that fails, one line: the error's name and message (e.g. a misspelt parameter's
  ``ConfigError``), where papermill prints ~40 lines of traceback; the full traceback stays in the
  executed notebook, which is written either way; the exit status is 1.

It imports nothing from avlib (the notebook's kernel does), so it starts in a second.
"""

from __future__ import annotations

import sys

import click
from papermill.cli import papermill as papermill_command
from papermill.exceptions import PapermillExecutionError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        context = papermill_command.make_context("python -m avlib.notebook", args)
    except click.exceptions.Exit as done:  # --help, --version
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    # papermill's own command, with the kernel's output streamed here instead of the cell counter
    context.params.update(stdout_file=sys.stdout, stderr_file=sys.stderr, progress_bar=False, log_output=False)
    output = context.params.get("output_path")
    try:
        with context:
            papermill_command.invoke(context)
    except PapermillExecutionError as error:
        sys.stdout.flush()
        print(f"{error.ename}: {error.evalue}", file=sys.stderr)
        print(f"(in cell [{error.exec_count}]; the executed notebook, with the whole traceback: {output})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
