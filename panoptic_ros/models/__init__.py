"""Segmentation models: registry, backbones, necks and the architectures."""
