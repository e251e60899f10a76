"""Necks that turn backbone feature maps into a feature pyramid."""
