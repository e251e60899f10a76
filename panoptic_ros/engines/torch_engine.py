"""PyTorch engine: the model in eager mode on CPU or CUDA (fp16 and channels_last on CUDA)."""

from __future__ import annotations

import torch


class TorchEngine:
    """Runs ``model.infer``.

    Args:
        model: a registry model.
        input_size: ``(H, W)`` the model expects.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...
        precision: ``fp32`` or ``fp16`` (CUDA only: autocast to half, channels_last).
    """

    name = 'torch'

    def __init__(self, model: torch.nn.Module, input_size: tuple[int, int], *,
                 device: str | torch.device = 'cpu', precision: str = 'fp32') -> None:
        self.device = torch.device(device)
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            from panoptic_ros.errors import PanopticError

            raise PanopticError(f'device {device!r} requested but CUDA is not available')
        self.half = precision == 'fp16' and self.device.type == 'cuda'
        self.model = model.to(self.device).eval()
        if self.device.type == 'cuda':
            self.model = self.model.to(memory_format=torch.channels_last)
        self.input_size = tuple(input_size)
        self.output_names = tuple(model.output_names)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.device.type == 'cuda':
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast('cuda', dtype=torch.float16, enabled=self.half):
            return self.model.infer(images)
