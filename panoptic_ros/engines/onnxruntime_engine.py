"""ONNX Runtime engine: the exported graph on the CPU or CUDA execution provider."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from panoptic_ros.errors import PanopticError


class OnnxRuntimeEngine:
    """Runs an ONNX file made by :func:`~panoptic_ros.export.onnx_export.export_onnx`.

    Args:
        path: the ONNX file.
        device: ``cpu`` or ``cuda[:N]`` (CUDA execution provider; an error if ONNX Runtime
            has none).
        threads: intra-op threads (0: ONNX Runtime's default, all cores).
        spin: let the intra-op threads spin-wait between runs (ONNX Runtime's default; off
            here, see ``docs/benchmarks.md``).
    """

    name = 'onnxruntime'

    def __init__(self, path: str | Path, *, device: str = 'cpu', threads: int = 0,
                 spin: bool = False) -> None:
        import onnxruntime as ort

        self.device = torch.device(device)
        if self.device.type == 'cuda':
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise PanopticError(f'onnxruntime on {device}: this onnxruntime has no CUDA '
                                    f'execution provider (has {ort.get_available_providers()}); '
                                    f'install onnxruntime-gpu or use device cpu')
            providers = [('CUDAExecutionProvider', {'device_id': self.device.index or 0}),
                         'CPUExecutionProvider']
        else:
            providers = ['CPUExecutionProvider']
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:
            # after a run the pool's threads spin-wait for the next one by default, holding
            # the cores that the torch post-processing needs right then
            opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise PanopticError(f'onnxruntime cannot load {path}: {exc}') from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.input_size = tuple(json.loads(meta['panoptic_ros.input_size']))
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        outs = self.session.run(list(self.output_names), {self.input_name: x})
        return {k: torch.from_numpy(v).to(self.device) for k, v in zip(self.output_names, outs)}
