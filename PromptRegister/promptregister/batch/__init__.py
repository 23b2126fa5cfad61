"""Cohorts: many pairs from one manifest (issue #16). So far the manifest and its validation; the Dask runner
is to come."""

from .manifest import Manifest, ManifestError, PairRow, load_manifest

__all__ = ["Manifest", "ManifestError", "PairRow", "load_manifest"]
