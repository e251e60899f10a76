"""Real-Time Panoptic Segmentation from Dense Detections (Hou et al., CVPR 2020)."""
