"""Panoptic segmentation from semantic segmentation and instance contours (Chennupati et al.).

A ResNet-FPN with semantic-FPN necks predicts semantics, instance contours and centre offsets
(section III-A); instances are the connected components of the thing mask minus the contours,
split and merged with DBSCAN on the predicted centres (sections III-C, III-D).
"""

from panoptic_ros.models.contours.model import ContoursNet
from panoptic_ros.models.contours.objective import ContoursObjective
from panoptic_ros.models.contours.postprocess import ContoursPostprocess
from panoptic_ros.models.registry import register_model


@register_model('contours', postprocess=ContoursPostprocess, objective=ContoursObjective,
                small={'backbone': 'resnet18', 'fpn_channels': 32, 'neck_channels': 32,
                       'separate_necks': False})
def build_contours(**kwargs) -> ContoursNet:
    """Registry builder; keyword arguments are those of :class:`ContoursNet`."""
    return ContoursNet(**kwargs)
