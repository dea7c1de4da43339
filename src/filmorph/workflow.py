"""Glue for Snakemake `script:` entry points (workflow_scripts/*.py).

The package never imports Snakemake; these helpers only receive the `snakemake` object a
script is given and turn it into a call of a stage's command-line `main(argv)`, with the
job's stderr (progress bars, messages) going to the rule's log file.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any


def run_stage(smk: Any, main: Callable[[Sequence[str]], int], argv: Sequence[Any]) -> None:
    """Run `main(argv)` with stderr sent to the job's first log file; fail on non-zero."""
    argv = [str(a) for a in argv]
    log = smk.log[0] if len(smk.log) else None
    with contextlib.ExitStack() as stack:
        if log:
            fh = stack.enter_context(open(log, "w", encoding="utf-8", buffering=1))
            stack.enter_context(contextlib.redirect_stderr(fh))
            print("argv:", " ".join(argv), file=fh)
        rc = main(argv)
    if rc:
        sys.exit(rc)
