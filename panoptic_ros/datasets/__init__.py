"""Datasets: Cityscapes (real or synthetic) and COCO panoptic, returning one sample type."""
