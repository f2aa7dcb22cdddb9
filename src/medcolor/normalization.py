"""The intensity statistics the network's parts are built around (and the largest image side), in one place
below them all.

The data pipeline normalises gray images with CheXpert's mean/std (the paper's released modules were trained
with them; ``data.mean: compute`` replaces them); T maps a normalised gray image to an RGB image normalised
with ImageNet's statistics, which E's torchvision weights expect; the figures undo that normalisation to
show what E sees.
"""

from __future__ import annotations

#: input normalisation of the paper's released modules (computed over CheXpert, NOTES.md)
CHEXPERT_MEAN = 0.5028
CHEXPERT_STD = 0.2902

#: ImageNet's RGB statistics (torchvision's weights expect inputs normalised with them)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the largest image side medcolor takes anywhere (``data.size``, ``colorize --size``, a network's metadata,
#: synthetic images): one 8192 px float RGB image is 800 MB; past it an allocation fails late or takes the machine
MAX_IMAGE_SIZE = 8192

__all__ = ["CHEXPERT_MEAN", "CHEXPERT_STD", "IMAGENET_MEAN", "IMAGENET_STD", "MAX_IMAGE_SIZE"]
