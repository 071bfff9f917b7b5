"""Open Images V6 image-level labels: partial labels over ~9,600 trainable classes.

Files read (each a setting, relative to ``root`` unless absolute; the defaults are the
V6 release's names): ``oidv6-class-descriptions.csv`` (``LabelName,DisplayName``),
the trainable classes list ``oidv6-classes-trainable.txt`` (one LabelName a line), and
per split the human-verified labels ``oidv6-train-annotations-human-imagelabels.csv``,
``validation-annotations-human-imagelabels.csv``, ``test-annotations-human-imagelabels.csv``
(``ImageID,Source,LabelName,Confidence``: 1 positive, 0 verified negative). Images are
``<root>/<split>/<ImageID>.jpg``; they are not checked while indexing (9M ``stat``
calls): a missing one is a bad image met in training (``data.on_bad_image``).

Splits: ``train``, ``validation`` (also ``val``) and ``test``; an image is in a split
when its labels file has a row for it. Classes: the trainable LabelNames (``/m/…``: the
display names are not unique) in the trainable file's order; ``display_names`` holds
their names. A trainable class without a row for an image is **unknown** (-1), not
negative; rows of described but non-trainable classes are ignored.

Targets are sparse (CSR, cached memory-mapped) and densified per sample; see ``reader``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlcore import Plugin

#: split name -> (image folder under root, the config field naming its labels file)
SPLITS = {"train": ("train", "train_labels"), "validation": ("validation", "validation_labels"),
          "val": ("validation", "validation_labels"), "test": ("test", "test_labels")}


@dataclass
class OpenImagesConfig:
    """``root``: the folder holding the label files and the ``train/``, ``validation/``,
    ``test/`` image folders; the file settings name the files (relative to ``root``)."""

    root: str = field(metadata={"path": "dir"})
    descriptions: str = "oidv6-class-descriptions.csv"
    trainable: str = "oidv6-classes-trainable.txt"
    train_labels: str = "oidv6-train-annotations-human-imagelabels.csv"
    validation_labels: str = "validation-annotations-human-imagelabels.csv"
    test_labels: str = "test-annotations-human-imagelabels.csv"


def default_eval_transform():
    """The default ``data`` section's evaluation transform, which datasets apply when the
    framework passes none."""
    import mlcore

    return mlcore.default_eval_transform()


def build(cfg: OpenImagesConfig, split: str, transform=None):
    import os

    from mlcore import MlcoreError

    from .dataset import OpenImagesDataset
    from .reader import cached_index

    if split not in SPLITS:
        raise MlcoreError(f"Unknown value {split!r} for argument split. Valid values are "
                          f"['test', 'train', 'val', 'validation']")
    if not os.path.isdir(cfg.root):
        raise MlcoreError(f"dataset root {cfg.root!r} does not exist")
    folder, labels_field = SPLITS[split]
    index = cached_index(os.path.join(cfg.root, cfg.descriptions), os.path.join(cfg.root, cfg.trainable),
                         os.path.join(cfg.root, getattr(cfg, labels_field)))
    if transform is None:
        transform = default_eval_transform()
    return OpenImagesDataset(index, cfg.root, folder, transform)


plugin = Plugin("dataset", "openimages", "Open Images V6 human-verified image-level labels (partial, ~9,600 classes)",
                OpenImagesConfig, build)
