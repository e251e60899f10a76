"""CASNet: Common Attribute Support Network for panoptic segmentation (seed 002).

An FCN predicts semantics, the distances from every pixel to its instance's box borders (the
"common attribute") and class-specific box probabilities (section III-A); instances are seeds
of high box probability, and every thing pixel joins the same-class seed whose box overlaps
the box it predicts the most (section III-C).
"""

from panoptic_ros.models.casnet.model import CASNet
from panoptic_ros.models.casnet.objective import CASNetObjective
from panoptic_ros.models.casnet.postprocess import CASNetPostprocess
from panoptic_ros.models.registry import register_model


@register_model('casnet', postprocess=CASNetPostprocess, objective=CASNetObjective,
                small={'backbone': 'resnet18', 'neck': 'fpn', 'neck_channels': 32,
                       'head_convs': 1, 'head_channels': 32, 'distance_scale': 8.0})
def build_casnet(**kwargs) -> CASNet:
    """Registry builder; keyword arguments are those of :class:`CASNet`."""
    return CASNet(**kwargs)
