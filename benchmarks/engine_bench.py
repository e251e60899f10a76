"""Latency matrix of ``panoptic bench``: models x input sizes x engines, one process each run.

Usage: python benchmarks/engine_bench.py [--out benchmarks/engine_bench.json] [--device cpu]

Rows: the bundled default model (EfficientNet-Lite0, synthetic) at its size; the ResNet-18
and ResNet-50 Cityscapes recipes (untrained weights: timing only) at 512x1024 and 1024x2048.
Engines: torch and onnxruntime (``--engines torch,onnxruntime,tensorrt`` adds TensorRT).
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = ['--model', 'dense_detections']


def _recipe(name: str) -> list[str]:
    return ['--config', str(REPO / 'config' / 'models' / f'{name}.yaml')]


R18, R50 = (_recipe(f'dense_detections_r{d}_cityscapes_1024x2048') for d in (18, 50))
# (row label, model source, network input, timed runs)
RUNS = [
    ('default (Lite0 synth)', DEFAULT, (512, 1024), 30),
    ('R18 Cityscapes', R18, (512, 1024), 10),
    ('R18 Cityscapes', R18, (1024, 2048), 5),
    ('R50 Cityscapes', R50, (512, 1024), 10),
    ('R50 Cityscapes', R50, (1024, 2048), 5),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=None)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--precision', default='fp32')
    ap.add_argument('--engines', default='torch,onnxruntime')
    ap.add_argument('--iters-scale', type=float, default=1.0)
    args = ap.parse_args()
    rows = []
    for name, source, (h, w), iters in RUNS:
        for engine in args.engines.split(','):
            with tempfile.NamedTemporaryFile(suffix='.json') as f:
                cmd = [sys.executable, '-m', 'panoptic_ros.cli', 'bench', *source,
                       '--engine', engine, '--device', args.device, '--precision',
                       args.precision, '--height', str(h), '--width', str(w), '--iters',
                       str(max(3, int(iters * args.iters_scale))), '--warmup', '2',
                       '--out', f.name]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f'{name} {h}x{w} {engine}: failed: {proc.stderr.strip()[-300:]}',
                          file=sys.stderr)
                    continue
                r = json.load(open(f.name))
            r['model'] = name
            rows.append(r)
            s = r['stages']
            print(f'| {name} | {h}x{w} | {engine} | {s["preprocess"]["median_ms"]:.1f} | '
                  f'{s["inference"]["median_ms"]:.1f} | {s["postprocess"]["median_ms"]:.1f} | '
                  f'{s["total"]["median_ms"]:.1f} | {s["total"]["p95_ms"]:.1f} |', flush=True)
    if args.out:
        from panoptic_ros.fileio import atomic_write_json

        atomic_write_json(args.out, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
