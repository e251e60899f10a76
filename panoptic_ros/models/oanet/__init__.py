"""OANet: Occlusion Aware Network, "An End-to-End Network for Panoptic Segmentation" (seed 004).

A Mask R-CNN instance branch and a stuff branch share one ResNet-FPN up to the 3x3 conv before
the RPN head (section 3.1); a spatial ranking module scores every instance from the binary
instance masks so that overlapping instances are pasted in the right order (section 3.2).
"""

from panoptic_ros.models.oanet.model import OANet
from panoptic_ros.models.oanet.objective import OANetObjective
from panoptic_ros.models.oanet.postprocess import OANetPostprocess
from panoptic_ros.models.registry import register_model


@register_model('oanet', postprocess=OANetPostprocess, objective=OANetObjective,
                small={'backbone': 'resnet18', 'fpn_channels': 32, 'stuff_channels': 16,
                       'box_fc': 64, 'mask_convs': 1, 'mask_channels': 16,
                       'anchor_sizes': [16, 32, 64, 128, 256], 'pre_nms_topk': 100,
                       'post_nms_topk': 50, 'detections': 20, 'det_candidates': 100,
                       'srm_threshold': 0.0})
def build_oanet(**kwargs) -> OANet:
    """Registry builder; keyword arguments are those of :class:`OANet`."""
    return OANet(**kwargs)
