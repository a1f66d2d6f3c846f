"""Image data: sources -> preprocessing (shared with serving) -> cached arrays -> a split.

``sources`` knows the folder layouts, ``preprocess`` turns one image into features,
``cache`` decodes a whole source once and keeps the arrays (with each image's original, where
file names say it), ``split`` makes the stratified train/valid/test split (optionally keeping
originals whole), ``split_cache`` keeps each split beside the arrays, ``synthetic`` generates
the built-in fish set (``png`` writes its files fast) and ``fetch`` downloads the Kaggle one.
"""

from fishopt.data.cache import Dataset, Progress, content_fingerprint, decode_all, load
from fishopt.data.preprocess import DEFAULT_IMAGE_SIZE, decode, parse_size, to_gray_array
from fishopt.data.sources import (
    DEFAULT_SYNTHETIC_PER_CLASS,
    DEFAULT_SYNTHETIC_SIZE,
    IMAGE_EXTENSIONS,
    SourceSpec,
    choose_source,
    find_kaggle_root,
    list_images,
    original_groups,
    parse_source,
)
from fishopt.data.split import Split, split

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_SYNTHETIC_PER_CLASS",
    "DEFAULT_SYNTHETIC_SIZE",
    "IMAGE_EXTENSIONS",
    "Dataset",
    "Progress",
    "SourceSpec",
    "Split",
    "choose_source",
    "content_fingerprint",
    "decode",
    "decode_all",
    "find_kaggle_root",
    "list_images",
    "load",
    "original_groups",
    "parse_size",
    "parse_source",
    "split",
    "to_gray_array",
]
