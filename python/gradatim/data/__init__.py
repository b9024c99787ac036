"""The data side of gradatim: manifests, augmentation, the drop-in DataLoader, box-aware text."""

from gradatim.data.augment import Augment
from gradatim.data.box_text import parse_boxes, render_boxes
from gradatim.data.dataset import ManifestDataset
from gradatim.data.loader import DataLoader

__all__ = ["Augment", "DataLoader", "ManifestDataset", "parse_boxes", "render_boxes"]
