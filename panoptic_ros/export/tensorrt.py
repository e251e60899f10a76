"""Build a TensorRT engine from an exported ONNX file with TensorRT's Python API.

Engines are cached next to the ONNX file under a key of TensorRT version, GPU name, input
shape, precision and the ONNX file's hash; any change builds a new engine. A timing cache per
GPU and TensorRT version speeds up rebuilds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from panoptic_ros.errors import PanopticError
from panoptic_ros.export.artifacts import cache_root, file_sha256, is_intact, seal
from panoptic_ros.fileio import atomic_write_bytes


def import_tensorrt():
    """The ``tensorrt`` module, or a :class:`PanopticError` saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise PanopticError('the tensorrt engine needs NVIDIA TensorRT (Python package '
                            f'"tensorrt", 8.6 or newer) and an NVIDIA GPU: {exc}') from exc
    import torch

    if not torch.cuda.is_available():
        raise PanopticError('the tensorrt engine needs an NVIDIA GPU, and torch sees none '
                            '(torch.cuda.is_available() is False)')
    return trt


def _input_shape(onnx_path: Path) -> tuple[int, ...]:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims)


def engine_key(trt_version: str, gpu: str, shape: tuple[int, ...], precision: str,
               onnx_hash: str) -> str:
    text = '|'.join([trt_version, gpu, 'x'.join(map(str, shape)), precision, onnx_hash])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_engine(onnx_path: str | Path, *, fp16: bool = True, workspace_gib: float = 4.0,
                 cache_dir: str | Path | None = None, device: int = 0) -> Path:
    """Serialized engine (``.plan``) for ``onnx_path``, built unless already cached."""
    import torch

    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    gpu = torch.cuda.get_device_name(device)
    shape = _input_shape(onnx_path)
    precision = 'fp16' if fp16 else 'fp32'
    key = engine_key(trt.__version__, gpu, shape, precision, file_sha256(onnx_path))
    root = cache_root(cache_dir)
    plan = root / f'{onnx_path.stem}-{precision}-{key}.plan'
    if is_intact(plan):
        return plan
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, 'EXPLICIT_BATCH'):   # TensorRT < 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PanopticError(f'TensorRT cannot parse {onnx_path}: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    tc_path = root / f'timing-{hashlib.sha256(f"{trt.__version__}|{gpu}".encode()).hexdigest()[:12]}.cache'
    cache = config.create_timing_cache(tc_path.read_bytes() if tc_path.is_file() else b'')
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PanopticError(f'TensorRT failed to build an engine from {onnx_path} (see the '
                            f'TensorRT log above)')
    atomic_write_bytes(tc_path, bytes(config.get_timing_cache().serialize()))
    atomic_write_bytes(plan, bytes(serialized))
    seal(plan)
    return plan
