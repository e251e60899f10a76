"""ONNX Runtime engine: the exported graph on the CPU or CUDA execution provider."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from panoptic_ros.errors import PanopticError


# ONNX Runtime's type strings -> torch dtypes (the outputs our graphs have)
ORT_DTYPES = {'tensor(float)': torch.float32, 'tensor(float16)': torch.float16,
              'tensor(int64)': torch.int64, 'tensor(int32)': torch.int32,
              'tensor(uint8)': torch.uint8, 'tensor(bool)': torch.bool}


class OnnxRuntimeEngine:
    """Runs an ONNX file made by :func:`~panoptic_ros.export.onnx_export.export_onnx`.

    Inputs and outputs go through IO binding: the input is bound where the preprocessed
    images already are, and every output is written by ONNX Runtime straight into a torch
    tensor on the engine's device (our exports have static shapes), so on CUDA nothing
    crosses to the host between preprocessing and post-processing, and on the CPU the
    post-processing reads ONNX Runtime's results in place.

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
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = []                   # (name, shape, torch dtype, numpy dtype)
        for o in self.session.get_outputs():
            if o.type not in ORT_DTYPES or not all(isinstance(d, int) for d in o.shape):
                raise PanopticError(
                    f'{path}: output {o.name} is {o.type} of shape {o.shape}; expected a '
                    f'static shape and one of {sorted(ORT_DTYPES)} (as panoptic export makes)')
            dtype = ORT_DTYPES[o.type]
            self.outputs.append((o.name, list(o.shape), dtype,
                                 torch.empty(0, dtype=dtype).numpy().dtype))
        self.output_names = tuple(name for name, _, _, _ in self.outputs)
        self._ort_device = ('cuda', self.device.index or 0) if self.device.type == 'cuda' \
            else ('cpu', 0)

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[N, 3, h, w]`` uint8 images on the engine's device -> the graph's outputs as
        torch tensors on that device."""
        x = images.detach().to(self.device, torch.float32).contiguous()
        binding = self.session.io_binding()
        kind, index = self._ort_device
        binding.bind_input(self.input_name, kind, index, np.float32, list(x.shape),
                           x.data_ptr())
        outs = {}
        for name, shape, dtype, np_dtype in self.outputs:
            outs[name] = torch.empty(shape, dtype=dtype, device=self.device)
            binding.bind_output(name, kind, index, np_dtype, shape, outs[name].data_ptr())
        if self.device.type == 'cuda':      # the input is written on torch's stream
            torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        return outs
