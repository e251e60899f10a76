"""Inference engines: one interface, same inputs and outputs.

An engine takes ``[N, 3, H, W] uint8`` RGB images at the model's input size (a torch tensor on
the engine's device) and returns the model's engine outputs (``model.output_names``: what
``model.infer`` computes) as torch tensors on that device. Post-processing is shared.
"""

from panoptic_ros.engines.base import ENGINES, Engine, create_engine

__all__ = ['ENGINES', 'Engine', 'create_engine']
