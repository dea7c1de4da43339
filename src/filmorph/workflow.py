"""Glue for Snakemake `script:` entry points (workflow_scripts/*.py).

The package never imports Snakemake; these helpers only receive the `snakemake` object a
script is given and turn it into a call of a stage's command-line `main(argv)`, with the
job's stderr (progress bars, messages) going to the rule's log file, and leave the job's
provenance record (:mod:`filmorph.provenance`) beside the outputs.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from filmorph.io import log_tail


def _named(namedlist: Any) -> dict[str, Any]:
    """The named entries of a Snakemake Namedlist (params, wildcards) as a plain dict."""
    items = namedlist.items() if hasattr(namedlist, "items") else []
    return {str(k): v for k, v in items}


def _files(namedlist: Any) -> list[str]:
    out: list[str] = []
    for f in namedlist or []:
        if isinstance(f, (list, tuple)):
            out.extend(str(x) for x in f)
        else:
            out.append(str(f))
    return out


@contextlib.contextmanager
def job_provenance(smk: Any, *, log: Any = sys.stderr) -> Iterator[None]:
    """Record the provenance of the job around the block: a previous record of the same job is
    removed on entry; on a clean exit the record (inputs and outputs hashed, params as the
    config subset) is written atomically to ``results/provenance/{rule}/{wildcards}.json``. A
    block that raises (or a job that fails) leaves no record."""
    from filmorph import provenance as prov

    rule = str(smk.rule)
    wildcards = _named(smk.wildcards)
    path = prov.record_path(rule, wildcards)
    path.unlink(missing_ok=True)
    start = prov.utc_now()
    yield
    end = prov.utc_now()
    params = _named(smk.params)
    config = getattr(smk, "config", None) or {}
    record = prov.build_record(
        rule=rule, wildcards=wildcards, params=params, inputs=_files(smk.input),
        outputs=_files(smk.output), start=start, end=end,
        log=str(smk.log[0]) if len(smk.log) else None,
        seed=prov.find_seed(params, config.get("seed")))
    prov.write_record(path, record)
    print(f"provenance: {path}", file=log)


@contextlib.contextmanager
def job_log(smk: Any, header: str | None = None) -> Iterator[TextIO]:
    """The job's first log file, opened for the block with stderr redirected to it (plain
    stderr for a job without log), `header` its first line. A failure reaches both the log
    Snakemake points to and the console: an exception's traceback is written to the log, then
    the exception goes on (the interpreter prints it on the console); a non-zero exit status
    (`SystemExit`: ``sys.exit(rc)``, argparse) is written to the log, and the end of what the
    block wrote there is repeated on the console before the exit goes on."""
    log = smk.log[0] if len(smk.log) else None
    if not log:
        yield sys.stderr
        return
    console = sys.stderr
    with open(log, "w", encoding="utf-8", buffering=1) as fh, contextlib.redirect_stderr(fh):
        if header is not None:
            print(header, file=fh)
        start = fh.tell()
        try:
            yield fh
        except SystemExit as exc:
            if exc.code:  # None and 0 are success
                if isinstance(exc.code, str):
                    print(exc.code, file=fh)
                print(f"exit status: {exc.code}", file=fh)
                fh.flush()
                rule = getattr(smk, "rule", "job")
                print(f"{rule} failed (exit status {exc.code}); the end of its log {log}:\n"
                      f"{log_tail(str(log), start=start)}", file=console)
            raise
        except BaseException:
            traceback.print_exc(file=fh)
            raise


def run_stage(smk: Any, main: Callable[[Sequence[str]], int], argv: Sequence[Any], *,
              provenance: bool = True) -> None:
    """Run `main(argv)` with stderr sent to the job's first log file (:func:`job_log`: a
    failure's traceback or message lands in the log and on the console); fail on non-zero.
    With `provenance`, a successful job leaves its record (:func:`job_provenance`)."""
    argv = [str(a) for a in argv]
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(job_log(smk, "argv: " + " ".join(argv)))
        if provenance:
            stack.enter_context(job_provenance(smk, log=fh))
        rc = main(argv)
        if rc:
            sys.exit(rc)  # leaves the provenance block by an exception: no record
