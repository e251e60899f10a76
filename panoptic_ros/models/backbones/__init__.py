"""Backbone trunks that turn an image into multi-scale feature maps."""
