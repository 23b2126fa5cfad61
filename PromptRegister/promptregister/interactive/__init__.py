"""The interactive loop's engine side: a session that keeps ROI pairs under stable ids while the user clicks,
corrects, deletes and undoes, and refits the transform from the previous fit (warm start)."""

from .masks import decode_mask, encode_mask
from .pairbook import InteractivePair, PairBook
from .session import InteractiveSession

__all__ = ["InteractiveSession", "InteractivePair", "PairBook", "encode_mask", "decode_mask"]
