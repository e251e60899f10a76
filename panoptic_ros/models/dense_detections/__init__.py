"""Real-Time Panoptic Segmentation from Dense Detections (Hou et al., CVPR 2020)."""

from panoptic_ros.models.dense_detections.model import DenseDetections
from panoptic_ros.models.dense_detections.objective import DenseDetectionsObjective
from panoptic_ros.models.dense_detections.postprocess import DenseDetectionsPostprocess
from panoptic_ros.models.registry import register_model


@register_model('dense_detections', postprocess=DenseDetectionsPostprocess,
                objective=DenseDetectionsObjective,
                small={'backbone': 'resnet18', 'fpn_channels': 32, 'tower_convs': 1})
def build_dense_detections(**kwargs) -> DenseDetections:
    """Registry builder; keyword arguments are those of :class:`DenseDetections`."""
    return DenseDetections(**kwargs)
