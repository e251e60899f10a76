"""``panoptic export``: weights -> ONNX (checked, compared with ONNX Runtime) or TensorRT."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def run_export(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from panoptic_ros.engines.onnxruntime_engine import OnnxRuntimeEngine
    from panoptic_ros.export.artifacts import cached_onnx
    from panoptic_ros.export.onnx_export import (export_onnx, graph_ops,
                                                 supported_tensorrt_ops)
    from panoptic_ros.weights import load_model, resolve_model

    weights = resolve_model(args.model, args.weights)
    model, spec, card = load_model(weights)
    h, w = args.height or spec.input_size[0], args.width or spec.input_size[1]
    out = Path(args.out)
    if args.format == 'tensorrt':
        from panoptic_ros.export.tensorrt import build_engine

        onnx_path = cached_onnx(weights, batch=args.batch, cache_dir=args.cache_dir,
                                size=(h, w))
        plan = build_engine(onnx_path, fp16=args.fp16, workspace_gib=args.workspace,
                            cache_dir=args.cache_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plan, out)
        print(f'TensorRT engine written to {out} (cached as {plan})')
        return 0
    proto = export_onnx(model, out, height=h, width=w, batch=args.batch, card=card)
    missing = graph_ops(proto) - supported_tensorrt_ops()
    # check: ONNX Runtime against eager torch on a synthetic camera image
    from panoptic_ros.synth.scene import SceneRenderer

    rendered = SceneRenderer(h, w).render(np.random.default_rng(0))[0]
    image = torch.from_numpy(rendered).permute(2, 0, 1)
    images = image[None].expand(args.batch, -1, -1, -1).contiguous()
    with torch.no_grad():
        ref = model.infer(images)
    got = OnnxRuntimeEngine(out)(images)
    floats = [k for k in model.output_names if ref[k].is_floating_point()]
    diff = max((got[k].float() - ref[k].float()).abs().max().item() for k in floats)
    print(f'ONNX written to {out}: input images [{args.batch}, 3, {h}, {w}] float32 0-255, '
          f'outputs {", ".join(model.output_names)}; checker passed; ONNX Runtime vs torch max '
          f'difference {diff:.2e} ({", ".join(floats)})')
    if missing:
        print(f'warning: ops outside TensorRT\'s ONNX parser list: {sorted(missing)}')
    return 0
