"""PanoNet: real-time panoptic segmentation through position-sensitive feature embedding
(seed 000).

Two independent ICNets predict semantics and a 12-channel pixel embedding, the second fed the
image plus ``x, y`` coordinate maps (section III-A); a discriminative loss pulls the embeddings
of an instance together and pushes instances apart (section III-B); instances are the
mean-shift clusters of each thing class's embeddings (section III-D).
"""

from panoptic_ros.models.panonet.model import PanoNet
from panoptic_ros.models.panonet.objective import PanoNetObjective
from panoptic_ros.models.panonet.postprocess import PanoNetPostprocess
from panoptic_ros.models.registry import register_model


@register_model('panonet', postprocess=PanoNetPostprocess, objective=PanoNetObjective,
                small={'backbone': 'efficientnet_lite0', 'pretrained': False, 'channels': 32})
def build_panonet(**kwargs) -> PanoNet:
    """Registry builder; keyword arguments are those of :class:`PanoNet`."""
    return PanoNet(**kwargs)
