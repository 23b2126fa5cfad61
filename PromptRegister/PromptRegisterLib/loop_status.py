"""What an interactive session shows the user, in words: one status line, the pairs list, the do-no-harm verdict.

Both front ends show these (the Slicer panel's Interactive section and the browser app), so they are computed
here, once, from the InteractiveLoop; no Qt, no trame.
"""

from __future__ import annotations

from typing import Dict, List, Optional

CHANGES = ("prompt", "correct", "delete", "undo", "auto", "text")
"""Answers that change the pairs: with "after every change" on, each is followed by a fit."""


def status_line(loop) -> str:
    """Pairs, low-confidence flags, embedding or sending progress, the last fit and what is still running."""
    parts = [f"{len(loop.pairs)} pairs"]
    flagged = [pair_id for pair_id, pair in loop.pairs.items() if pair.get("low_confidence")]
    if flagged:
        parts.append(f"low confidence: {', '.join(flagged)}")
    if loop.sending_fraction is not None:
        parts.append(f"sending the volumes to the worker {loop.sending_fraction:.0%}")
    else:
        parts.append("slices embedded" if loop.embedded else f"embedding slices {loop.embed_fraction:.0%}")
    if loop.last_fit is not None:
        summary = loop.last_fit["summary"]
        parts.append(f"last fit {loop.last_fit.get('seconds', 0):.1f} s, folding "
                     f"{summary.get('jacobian', {}).get('folding_percent', 0):.3f}%")
        if summary.get("kept_prealignment") or summary.get("warnings"):
            parts.append("; ".join(summary.get("warnings", [])))
    pending = running(loop)
    if pending:
        parts.append("working: " + ", ".join(pending))
    return "; ".join(parts)


def running(loop) -> List[str]:
    """The kinds of request still waiting for their answer, each once, in order."""
    return list(dict.fromkeys(kind for kind, _ in loop.pending.values()))


def pair_rows(loop) -> List[Dict[str, str]]:
    """One row per live pair, by column name (the table node's columns, interactive.TABLE_COLUMNS)."""
    rows = []
    for pair_id, pair in loop.pairs.items():
        dice = loop.dice.get(pair_id)
        rows.append({
            "pair": pair_id, "name": pair.get("name", ""), "method": pair.get("method", ""),
            "similarity": f"{float(pair.get('similarity', 0)):.3f}",
            "confidence": "" if pair.get("confidence") is None else f"{float(pair['confidence']):.3f}",
            "agreement": "" if pair.get("agreement") is None else f"{float(pair['agreement']):.2f}",
            "flag": ("low: " + "; ".join(pair.get("reasons", []))) if pair.get("low_confidence") else "",
            "corrected": "yes" if pair.get("corrected") else "",
            "refined": "yes" if pair.get("refined") else "not yet",
            "dice after fit": "" if dice is None else f"{dice:.3f}",
        })
    return rows


def should_refit(loop, events: List[dict], after_every_change: bool) -> bool:
    """Whether to fit again now: the pairs changed, the user asked for a fit after every change, and none runs."""
    changed = any(e.get("type") == "result" and e.get("kind") in CHANGES for e in events)
    fitting = any(kind == "fit" for kind, _ in loop.pending.values())
    return bool(changed and after_every_change and not fitting and loop.pairs)


def verdict(summary: Optional[dict]) -> str:
    """The do-no-harm check of a result in one sentence: does the moving image agree with the fixed one better
    than before the registration (image similarity inside the fixed foreground)?"""
    agreement = (summary or {}).get("image_agreement")
    if not agreement:
        return ""
    figures = f"{agreement.get('measure', 'image similarity')} {float(agreement['before']):.3f} before, " \
              f"{float(agreement['after']):.3f} after"
    if agreement.get("worse"):
        kept = " The result was replaced by the start transform." if (summary or {}).get("kept_prealignment") else \
            " Check the pairs, delete doubtful ones or add clicks."
        return f"Worse than before: the registered image agrees with the fixed image less ({figures}).{kept}"
    return f"Better than before: the registered image agrees with the fixed image more ({figures})."
