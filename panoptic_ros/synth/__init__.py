"""Synthetic street scenes with Cityscapes classes, written in the Cityscapes layout."""
