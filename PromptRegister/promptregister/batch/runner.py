"""Run a cohort: every manifest row registered into <out>/<id>/, then one summary.

Execution is Dask's (dask.distributed): a LocalCluster of worker processes on this machine by default, any
running scheduler (SLURM, Kubernetes, cloud; `scheduler=`), or this process alone (`workers=0`, no Dask). Each
pair is one task (pair_task.run_pair); each worker process loads the models once (warm_models) and runs one pair
at a time with its share of the cores (cluster.THREAD_VARIABLES), so N workers never run more threads than the
machine has cores. A worker that dies mid-pair (killed, out of memory) has its pair retried elsewhere by the scheduler,
at most MAX_ATTEMPTS times in all; a pair that fails for its input is a "failed" record and the others go on.

Pairs already done (their marker matches their inputs and settings, and their outputs are as the marker
recorded them) are skipped before any cluster starts or any model loads; their figures come from the marker. A
pair whose outputs went missing or changed runs again, and the log and its summary message say why.

The local cluster and a given scheduler are cluster.py's (the local one speaks TLS with a certificate of its
own, so no other user of the machine can submit tasks to it).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from ..errors import PromptRegisterError
from ..progress import CountProgress
from .cluster import MAX_ATTEMPTS, LogCallback, cores, dashboard_link, dask_client, scheduler_address
from .manifest import Manifest, PairRow, load_manifest
from .pair_task import pair_check, run_pair, stored_record
from .settings import BatchSettings
from .summary import CSV_FILE, HTML_FILE, counts, table, write_csv, write_html


class BatchSummary(list):
    """The summary records, one dict per manifest row in manifest order (a list), with where they were written.

    `dataframe()` gives the same as a pandas DataFrame (pandas is optional)."""

    def __init__(self, records: Sequence[Dict[str, Any]], out_dir: Path, dashboard: Optional[str] = None):
        super().__init__(records)
        self.out_dir = Path(out_dir)
        self.csv = self.out_dir / CSV_FILE
        self.html = self.out_dir / HTML_FILE
        self.dashboard = dashboard

    @property
    def counts(self) -> Dict[str, int]:
        return counts(self)

    def dataframe(self):
        try:
            import pandas
        except ImportError:
            raise PromptRegisterError("the summary as a DataFrame needs pandas (pip install pandas); the records "
                                      "themselves are this list") from None
        return pandas.DataFrame(list(self)).set_index("id")


WORKER_MEMORY_BYTES = 3 * 1024 ** 3
"""What one worker may need at most: a SAM model, two volumes, their embeddings cache."""


def default_workers(due: int) -> int:
    """One worker process per core, each running its pair on one thread: on 2 cores, 2 such workers registered
    12 pairs 1.37 times as fast as 1 worker on 2 threads (bench/batch.py, docs/benchmarks.md). At most one per
    pair, and no more than the memory holds (WORKER_MEMORY_BYTES each)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: do not limit by memory
        memory = WORKER_MEMORY_BYTES * cores()
    return max(1, min(due, cores(), memory // WORKER_MEMORY_BYTES))


def run(manifest: Union[str, os.PathLike, Manifest], out_dir: Union[str, os.PathLike], *,
        settings: Optional[BatchSettings] = None, workers: Optional[int] = None, scheduler: Optional[str] = None,
        progress: bool = False, on_progress: Optional[CountProgress] = None,
        log: Optional[LogCallback] = None) -> BatchSummary:
    """Register every pair of `manifest` (a path or a loaded Manifest) into `out_dir`/<id>/ and write
    `out_dir`/summary.csv and summary.html; returns the records (BatchSummary).

    Arguments:
        settings: models and options for every pair (BatchSettings; default: the defaults of `register`).
        workers: local worker processes (default: default_workers); 0 runs the pairs in this process, without Dask.
        scheduler: the address of a running Dask scheduler (tcp://host:8786) or its scheduler file, instead of a
            local cluster (its workers must see the manifest's files and `out_dir` at the same paths).
        progress: a tqdm bar over the pairs (the command line's).
        on_progress: called with (finished, total) after every pair; it may raise to stop the run (the worker's
            cancel), which cancels the pairs not yet finished.
        log: where the run's notes go (the model taken, the dashboard address); default stderr.
    Raises ManifestError (every problem of the manifest) or PromptRegisterError before anything runs.
    """
    from ..outputs import check_writable

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    settings = settings or BatchSettings()
    if workers is not None and scheduler:
        raise PromptRegisterError("give --workers (a local cluster) or --scheduler (a running one), not both")
    if workers is not None and workers < 0:
        raise PromptRegisterError(f"--workers must be 0 (this process) or more; got {workers}")
    if scheduler:
        scheduler = scheduler_address(scheduler)  # a malformed address fails here, before the manifest is read
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    rows = [settings.prompts_for(row) for row in manifest.rows]
    out_dir = Path(out_dir)
    check_writable(out_dir)
    settings = settings.resolved()
    log(f"model: {settings.model}")

    records: Dict[str, Dict[str, Any]] = {}
    due: List[PairRow] = []
    again: Dict[str, str] = {}  # why a pair that had a marker runs again (not for changed inputs or settings)
    for row in rows:
        if row.problem:  # found with the manifest's other checks; this pair alone fails
            records[row.id] = {"id": row.id, "status": "failed", "message": row.problem, "seconds": 0.0}
            log(f"pair {row.id} will not run: {row.problem}")
            continue
        check = pair_check(row, out_dir, settings)
        if check.state == "done":
            records[row.id] = {**stored_record(row, out_dir), "status": "skipped"}
            continue
        due.append(row)
        if check.reason:
            again[row.id] = check.reason
            log(f"pair {row.id}: {check.reason}; running it again")
    skipped = sum(record["status"] == "skipped" for record in records.values())
    if skipped:
        log(f"{skipped} of {len(rows)} pairs are done already (inputs, settings and outputs unchanged): skipped")
    dashboard = None
    with _progress_bar(progress, len(rows), len(records)) as bar:
        def finished(record: Dict[str, Any]) -> None:
            if record["id"] in again:  # the summary says why this pair ran again
                notes = [f"run again ({again[record['id']]})", record.get("message")]
                record["message"] = "; ".join(note for note in notes if note)
            records[record["id"]] = record
            bar(record)
            if on_progress is not None:
                on_progress(len(records), len(rows))

        if due and workers == 0:
            for row in due:
                finished(_guarded(row, out_dir, settings))
        elif due:
            with dask_client(workers if workers is not None else default_workers(len(due)), scheduler, settings,
                             log) as (client, resources):
                dashboard = dashboard_link(client, log)
                _run_on_cluster(client, due, out_dir, settings, resources, finished)
    ordered = [records[row.id] for row in rows]
    out_dir.mkdir(parents=True, exist_ok=True)  # when no pair ran, nothing has made it yet
    write_csv(ordered, out_dir / CSV_FILE)
    write_html(ordered, out_dir)
    return BatchSummary(ordered, out_dir, dashboard)


def _guarded(row: PairRow, out_dir: Path, settings: BatchSettings) -> Dict[str, Any]:
    """run_pair in this process; an unexpected error becomes a failed record, as it does on a Dask worker."""
    started = time.perf_counter()
    try:
        return run_pair(row, out_dir, settings)
    except Exception as error:  # noqa: BLE001 - one pair's bug must not stop the cohort
        return internal_failure(row, error, time.perf_counter() - started)


def internal_failure(row: PairRow, error: BaseException, seconds: float = 0.0) -> Dict[str, Any]:
    name = type(error).__name__
    if name == "KilledWorker":
        message = (f"its worker process died each time it was tried ({MAX_ATTEMPTS} times on a local cluster; a "
                   "given scheduler allows its own number): out of memory, or killed; the pair was not registered")
    else:
        message = f"internal error {name}: {error} (please report it with the worker's log)"
    return {"id": row.id, "status": "failed", "message": message, "seconds": round(seconds, 3)}


def _run_on_cluster(client, due: Sequence[PairRow], out_dir: Path, settings: BatchSettings,
                    resources: Optional[Dict[str, float]], finished: Callable[[Dict[str, Any]], None]) -> None:
    from dask.distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    futures = {client.submit(run_pair, row, out_dir, settings, key=f"pair-{row.id}-{run_id}", pure=False,
                             resources=resources): row for row in due}
    try:
        for future in as_completed(futures):
            row = futures[future]
            try:
                record = future.result()
            except Exception as error:  # noqa: BLE001 - a dead worker or a bug: this pair fails, the rest go on
                record = internal_failure(row, error)
            finished(record)
    except BaseException:
        client.cancel(list(futures))  # cancelled or interrupted: the pairs not yet finished stop
        raise


@contextmanager
def _progress_bar(shown: bool, total: int, already: int) -> Iterator[Callable[[Dict[str, Any]], None]]:
    if not shown:
        yield lambda record: None
        return
    from tqdm import tqdm

    with tqdm(total=total, initial=already, unit="pair", desc="pairs", file=sys.stderr) as bar:
        def advance(record: Dict[str, Any]) -> None:
            bar.set_postfix_str(f"{record['id']} {record['status']}", refresh=False)
            bar.update(1)
        yield advance


def print_summary(summary: BatchSummary) -> None:
    """The printed table and where the files are (the command line's ending)."""
    print(table(summary))
    done = summary.counts
    print(f"{len(summary)} pair{'' if len(summary) == 1 else 's'}: {done['ok']} registered, {done['skipped']} skipped (done before), "
          f"{done['failed']} failed")
    print(f"wrote {summary.csv} and {summary.html}")
