"""Image decoding, the input pipeline's transforms, and a base class for list-of-images datasets."""
from .dataset import ImageListDataset
from .images import BadImageError, read_image
from .transforms import EvalTransform, TrainTransform

__all__ = ["ImageListDataset", "BadImageError", "read_image", "EvalTransform", "TrainTransform"]
