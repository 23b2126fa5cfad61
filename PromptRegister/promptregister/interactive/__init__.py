"""The interactive loop's engine side: a session that keeps ROI pairs under stable ids while the user clicks,
corrects, deletes and undoes, and refits the transform from the previous fit (warm start).

Only the run-length masks are imported here: the Slicer side decodes pairs with them and must not import torch
(`session` and `pairbook` do, through the methods). Import those from their modules.
"""

from .masks import decode_mask, encode_mask

__all__ = ["encode_mask", "decode_mask"]
