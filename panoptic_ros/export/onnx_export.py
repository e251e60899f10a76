"""Export a registry model to ONNX: static input shape, normalisation and decoding inside.

The graph computes ``model.infer`` (``decode(forward(images))``): input ``images`` ``[N, 3, H,
W] float32`` RGB in 0-255, outputs ``model.output_names``. Data-dependent steps (NMS, masks,
fusion) stay in the shared torch post-processing. The file's metadata carries the model card,
so an ONNX file also says which classes and post-processing it needs.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from panoptic_ros.errors import PanopticError
from panoptic_ros.fileio import atomic_write_bytes

OPSET = 17          # the newest opset TensorRT 8.5's parser covers (see tensorrt_onnx_ops.txt)
INPUT_NAME = 'images'


class InferGraph(torch.nn.Module):
    """``model.infer`` with its outputs as a tuple in ``model.output_names`` order."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.output_names = tuple(model.output_names)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.infer(images)
        return tuple(out[k] for k in self.output_names)


def export_onnx(model: torch.nn.Module, path: str | Path, *, height: int, width: int,
                batch: int = 1, card: dict | None = None, opset: int = OPSET):
    """Write ``model`` as ONNX to ``path`` (atomically) and check it; returns the ONNX model.
    ``model`` is moved to the CPU and left in eval mode."""
    import onnx

    if height % 128 or width % 128:
        raise PanopticError(f'export size {height}x{width}: height and width must be multiples '
                            f'of 128 (the coarsest FPN stride)')
    # the wrapper in eval mode: torch.onnx.export restores the wrapper's mode afterwards, and a
    # wrapper left in training mode would switch the caller's model to training mode
    graph = InferGraph(model.cpu()).eval()
    x = torch.zeros(batch, 3, height, width)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(graph, (x,), buf, input_names=[INPUT_NAME],
                          output_names=list(graph.output_names), opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    meta = {'panoptic_ros.input_size': json.dumps([height, width]),
            'panoptic_ros.batch': str(batch)}
    if card is not None:
        meta['panoptic_ros.card'] = json.dumps({k: v for k, v in card.items() if k != 'spec'})
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(path, proto.SerializeToString())
    return proto


def supported_tensorrt_ops() -> set[str]:
    """ONNX op types TensorRT's parser supports (``tensorrt_onnx_ops.txt``)."""
    text = (Path(__file__).with_name('tensorrt_onnx_ops.txt')).read_text()
    return {op for line in text.splitlines() if not line.startswith('#') for op in line.split()}


def graph_ops(proto) -> set[str]:
    """Op types used in an ONNX model (main graph and subgraphs)."""
    ops: set[str] = set()

    def visit(graph) -> None:
        for node in graph.node:
            ops.add(node.op_type)
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    visit(attr.g)
    visit(proto.graph)
    return ops
