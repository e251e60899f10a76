"""Deployment stages: ONNX export (:mod:`.onnx_export`), TensorRT engine build
(:mod:`.tensorrt`), and the on-disk cache of both (:mod:`.artifacts`)."""
