"""Reading and writing images, label maps and transforms (atomically)."""

from .atomic import atomic_output  # noqa: F401
from .images import read_label_map, read_volume, write_label_map, write_volume  # noqa: F401
from .transforms import read_transform, write_transform  # noqa: F401
