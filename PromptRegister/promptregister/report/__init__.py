"""`register --report`: report.html with PNG figures of a registration, readable offline (no scripts, no fonts,
nothing fetched). images.py turns planes of volumes into RGB pictures, figures.py composes the figures, page.py
writes the page."""

from .page import REPORT_FILE, write_report

__all__ = ["REPORT_FILE", "write_report"]
