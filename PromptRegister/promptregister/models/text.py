"""The contract of a text-prompted box detector (GroundingDINO for Tell2Reg)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from ..errors import PromptRegisterError
from .base import check_image


@dataclass
class Detections:
    """Boxes found on one slice.

    Attributes:
        boxes: (n, 4) float x0, y0, x1, y1 in the slice's pixel frame.
        scores: (n,) box confidence in [0, 1].
        phrases: the phrase (from the prompt) each box was matched to.
    """

    boxes: np.ndarray
    scores: np.ndarray
    phrases: List[str]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def clean_phrases(phrases: Sequence[str]) -> List[str]:
    """Lower-case, stripped, non-empty phrases; an empty prompt is an error."""
    if isinstance(phrases, str):
        phrases = [p for part in phrases.split(",") for p in part.split(".")]
    cleaned = [" ".join(p.strip().lower().split()) for p in phrases]
    cleaned = [p for p in cleaned if p]
    if not cleaned:
        raise PromptRegisterError("the text prompt is empty; give at least one word or phrase, e.g. 'prostate'")
    return cleaned


def caption(phrases: Sequence[str]) -> str:
    """GroundingDINO's prompt format: phrases separated by ' . ', ending with '.'."""
    return " . ".join(clean_phrases(phrases)) + " ."


def _tidy(phrase: str) -> str:
    """Drop tokenizer markers ([CLS], [SEP]) and separators from a decoded phrase."""
    words = [w for w in str(phrase).replace(".", " ").split() if not (w.startswith("[") and w.endswith("]"))]
    return " ".join(words)


def check_thresholds(box_threshold: float, text_threshold: float) -> None:
    for name, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
        if not 0.0 <= float(value) <= 1.0:
            raise PromptRegisterError(f"{name} must lie in [0, 1], got {value}")


class TextDetector(ABC):
    """Finds boxes on an RGB slice for a list of phrases."""

    name: str = "detector"

    def detect(self, image: np.ndarray, phrases: Sequence[str], box_threshold: float = 0.35,
               text_threshold: float = 0.25) -> Detections:
        """Boxes for the phrases on one (H, W, 3) uint8 slice, in its pixel frame, clipped to the slice.

        Arguments:
            image: the slice.
            phrases: words or phrases ("prostate", "bladder"); a comma-separated string works too.
            box_threshold: keep boxes whose best token score exceeds this.
            text_threshold: tokens above this form the box's phrase.
        """
        image = check_image(image)
        phrases = clean_phrases(phrases)
        check_thresholds(box_threshold, text_threshold)
        found = self._detect(image, phrases, float(box_threshold), float(text_threshold))
        height, width = image.shape[:2]
        boxes = np.asarray(found.boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        phrases_found = [_tidy(phrase) for phrase in found.phrases]
        return Detections(boxes, np.asarray(found.scores, dtype=np.float32).reshape(-1), phrases_found)

    @abstractmethod
    def _detect(self, image: np.ndarray, phrases: List[str], box_threshold: float,
                text_threshold: float) -> Detections:
        """Detect on a validated slice; boxes in slice pixels."""
