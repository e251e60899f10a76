"""TensorRT engine: a serialized plan run with the TensorRT Python API on torch CUDA memory."""

from __future__ import annotations

from pathlib import Path

import torch

from panoptic_ros.errors import PanopticError
from panoptic_ros.export.tensorrt import import_tensorrt


class TensorRTEngine:
    """Runs a plan built by :func:`~panoptic_ros.export.tensorrt.build_engine`.

    Inputs and outputs live in torch CUDA tensors; inference is enqueued on torch's current
    stream (no host copies).
    """

    name = 'tensorrt'

    def __init__(self, plan: str | Path, *, device: str = 'cuda') -> None:
        trt = import_tensorrt()
        self.device = torch.device(device)
        if self.device.type != 'cuda':
            raise PanopticError(f'the tensorrt engine runs on a CUDA device, not {device!r}')
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(Path(plan).read_bytes())
        if self.engine is None:
            raise PanopticError(f'TensorRT cannot load the engine {plan} (built by another '
                                f'TensorRT version or GPU?)')
        self.context = self.engine.create_execution_context()
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                  trt.DataType.INT32: torch.int32, trt.DataType.BOOL: torch.bool}
        if hasattr(trt.DataType, 'INT64'):
            dtypes[trt.DataType.INT64] = torch.int64
        self.outputs: dict[str, torch.Tensor] = {}
        self.input_name = ''
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_name, self.input_shape = name, shape
            else:
                self.outputs[name] = torch.empty(
                    shape, dtype=dtypes[self.engine.get_tensor_dtype(name)], device=self.device)
                self.context.set_tensor_address(name, self.outputs[name].data_ptr())
        self.input_size = tuple(self.input_shape[-2:])
        self.output_names = tuple(self.outputs)

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.to(self.device, torch.float32).contiguous()
        if tuple(x.shape) != self.input_shape:
            raise PanopticError(f'tensorrt engine expects input {self.input_shape}, got '
                                f'{tuple(x.shape)}')
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise PanopticError('TensorRT execution failed')
        # outputs are reused by the next call; TensorRT may narrow int64 outputs to int32
        return {k: (v.long() if v.dtype == torch.int32 else v.clone())
                for k, v in self.outputs.items()}
