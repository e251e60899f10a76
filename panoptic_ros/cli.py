"""``panoptic``: the command line tools of panoptic_ros.

Each subcommand imports what it needs only when it runs, so ``panoptic pq`` does not pay for
torch or rclpy.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from pathlib import Path
from typing import Callable

from panoptic_ros.errors import PanopticError
from panoptic_ros.heap import keep_freed_memory

# a full disk or a folder the user cannot write: one line, not a traceback
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


def _deferred(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A subcommand handler that imports ``module`` only when the subcommand runs and calls
    its ``function(args)``."""
    def handler(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(args)
    return handler


def _int_at_least(minimum: int, expected: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``; ``expected`` says so in the error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f'expected {expected}, got {text!r}')
        return value
    return parse


_positive = _int_at_least(1, 'a positive integer')
_non_negative = _int_at_least(0, 'an integer >= 0')


def _add_model(p: argparse.ArgumentParser, weights_help: str = 'weights file') -> None:
    """``--model NAME`` or ``--weights FILE`` (the bundled default model without either)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument('--model', help='an architecture (its bundled model) or the stem of a '
                   'bundled weights file (default: the bundled dense_detections model)')
    g.add_argument('--weights', help=f'{weights_help} (overrides --model)')


def _cmd_pq(args: argparse.Namespace) -> int:
    from panoptic_ros.evaluation.pq import format_pq_table
    from panoptic_ros.evaluation.pq_files import evaluate_files
    from panoptic_ros.fileio import atomic_write_json

    results, categories = evaluate_files(args.gt_json, args.gt_dir, args.pred_json,
                                         args.pred_dir, workers=args.workers)
    print(format_pq_table(results, categories))
    if args.out:
        atomic_write_json(args.out, results, indent=4)
        print(f'results written to {args.out}')
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from panoptic_ros.synth.writer import write_dataset

    stats = write_dataset(Path(args.out), split=args.split, num=args.num, height=args.height,
                          width=args.width, seed=args.seed, workers=args.workers,
                          progress=not args.quiet, sequence_length=args.sequence_length,
                          frame_rate=args.frame_rate)
    n = stats['num']
    what = (f'{n} sequence{"s" * (n != 1)} of {args.sequence_length} frames at '
            f'{args.frame_rate:g} Hz' if args.sequence_length else f'{n} images')
    print(f'{what} ({args.height}x{args.width}, split {args.split}) written to '
          f'{args.out} in {stats["seconds"]:.1f} s ({stats["images"] / stats["seconds"]:.1f} '
          f'images/s, {stats["workers"]} workers)')
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from panoptic_ros.demo import run_demo

    return run_demo(Path(args.out), args.model)


def _cmd_train(args: argparse.Namespace) -> int:
    from panoptic_ros.config import load_recipe
    from panoptic_ros.training.loop import train

    recipe = load_recipe(args.config)
    data = args.data or recipe.data.get('root')
    if not data:
        raise PanopticError('no dataset: pass --data DIR or set data.root in the config')
    summary = train(recipe, data, args.out, resume=args.resume, device=args.device,
                    progress=not args.quiet)
    if summary:
        v = summary['final_val']
        print(f'{summary["steps"]} steps in {summary["train_seconds"] / 60:.1f} min on '
              f'{summary["hardware"]}; val PQ {100 * v["pq"]:.1f}, mIoU {100 * v["miou"]:.1f} '
              f'({summary["val_images"]} images); weights: {Path(args.out) / "model.safetensors"}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='panoptic', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    p = sub.add_parser('pq', help='panoptic quality of COCO-format predictions',
                       description='PQ/SQ/RQ of predictions in COCO panoptic format (JSON + '
                       'RGB-id PNGs), with the semantics of the official evaluators.')
    p.add_argument('--gt-json', required=True, help='ground-truth JSON (annotations, categories)')
    p.add_argument('--gt-dir', required=True, help='folder of ground-truth PNGs')
    p.add_argument('--pred-json', required=True, help='prediction JSON (annotations)')
    p.add_argument('--pred-dir', required=True, help='folder of predicted PNGs')
    p.add_argument('--out', help='write results JSON here (official layout)')
    p.add_argument('--workers', type=_positive, default=None,
                   help='processes (default: all cores)')
    p.set_defaults(func=_cmd_pq)

    p = sub.add_parser('synth', help='render synthetic street scenes (Cityscapes layout)',
                       description='Render street-like scenes with Cityscapes classes and write '
                       'them in the Cityscapes layout, with panoptic ground truth.')
    p.add_argument('--out', required=True, help='dataset root to write into')
    p.add_argument('--split', default='train', help='split name (train, val, test, ...)')
    p.add_argument('--num', type=int, default=100,
                   help='number of images (of sequences with --sequence-length)')
    p.add_argument('--height', type=int, default=512)
    p.add_argument('--width', type=int, default=1024)
    p.add_argument('--seed', type=int, default=0, help='same seed, same images')
    p.add_argument('--sequence-length', type=int, metavar='N',
                   help='render video: N frames per scene while the camera drives and traffic '
                   'moves, objects keeping their ids (Cityscapes video naming '
                   '<city>_<sequence>_<frame>)')
    p.add_argument('--frame-rate', type=float, default=10.0,
                   help='frames per second of --sequence-length video (default 10, as '
                   'KITTI-STEP)')
    p.add_argument('--workers', type=_positive, default=None,
                   help='processes (default: all cores)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser('train', help='train a model from a recipe (config/models/*.yaml)',
                       description='Train on one CPU/GPU, or under torchrun on several GPUs or '
                       'machines (DistributedDataParallel). Checkpoints go to OUT/checkpoints, '
                       'TensorBoard logs to OUT/tensorboard, the final weights with their card '
                       'to OUT/model.safetensors.')
    p.add_argument('--config', required=True, help='recipe YAML')
    p.add_argument('--data', help='dataset root (default: the recipe\'s data.root)')
    p.add_argument('--out', required=True, help='run folder')
    p.add_argument('--resume', action='store_true', help='continue the run in OUT from its '
                   'last checkpoint')
    p.add_argument('--device', help='cpu, cuda, cuda:N (default: cuda when available)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser('eval', help='PQ/SQ/RQ and mIoU of a model on a dataset',
                       description='Run a model over a dataset split and report PQ/SQ/RQ (All, '
                       'Things, Stuff, per class) and mIoU with the project\'s evaluator.')
    _add_model(p)
    p.add_argument('--data', required=True, help='dataset root (Cityscapes layout, or COCO '
                   'with --format coco)')
    p.add_argument('--split', default='val')
    p.add_argument('--format', default='cityscapes', choices=['cityscapes', 'coco'])
    p.add_argument('--engine', default='torch', choices=['torch', 'onnxruntime', 'tensorrt'])
    p.add_argument('--device', default='cpu')
    p.add_argument('--precision', default='fp32', choices=['fp32', 'fp16'])
    p.add_argument('--num', type=_positive, help='evaluate the first NUM images only')
    p.add_argument('--batch', type=_positive, default=1, help='images per engine call')
    p.add_argument('--out', help='write results JSON (panoptic pq layout + miou) here')
    p.add_argument('--predictions', help='write COCO panoptic predictions (PNGs + '
                   'predictions.json) into this folder')
    p.add_argument('--video', action='store_true', help='the split is video (panoptic synth '
                   '--sequence-length, Cityscapes video naming): frames in sequence order through the '
                   'tracker; adds STQ, AQ, VPQ and id switches of the track ids and of the '
                   'per-frame ids')
    p.add_argument('--track-iou', type=float,
                   help='--video: the tracker\'s mask IoU threshold (default: the node\'s)')
    p.add_argument('--track-max-age', type=int,
                   help='--video: frames a track survives unmatched (default: the node\'s)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_deferred('panoptic_ros.evaluation.run', 'run_eval'))

    p = sub.add_parser('export', help='export a model to ONNX or a TensorRT engine',
                       description='ONNX (static input shape, normalisation and decoding inside, '
                       'checked with the ONNX checker and against ONNX Runtime) or a TensorRT '
                       'engine built from it with the TensorRT Python API.')
    _add_model(p)
    p.add_argument('--format', default='onnx', choices=['onnx', 'tensorrt'])
    p.add_argument('--height', type=_positive, help='input height (default: the model card\'s)')
    p.add_argument('--width', type=_positive, help='input width (default: the model card\'s)')
    p.add_argument('--batch', type=_positive, default=1)
    p.add_argument('--out', required=True, help='output .onnx or .plan file')
    p.add_argument('--fp16', action='store_true', help='TensorRT: allow FP16 kernels')
    p.add_argument('--workspace', type=float, default=4.0, help='TensorRT workspace (GiB)')
    p.add_argument('--cache-dir', help='TensorRT engine and timing cache folder '
                   '(default: ~/.cache/panoptic_ros)')
    p.set_defaults(func=_deferred('panoptic_ros.export.run', 'run_export'))

    p = sub.add_parser('bench', help='per-stage latency of a model on an engine',
                       description='Latency of preprocess, inference and post-processing on a '
                       'synthetic camera image, after warm-up: median and p95.')
    _add_model(p)
    p.add_argument('--config', help='time the recipe\'s model with untrained weights instead')
    p.add_argument('--engine', default='torch', choices=['torch', 'onnxruntime', 'tensorrt'])
    p.add_argument('--device', default='cpu')
    p.add_argument('--precision', default='fp32', choices=['fp32', 'fp16'])
    p.add_argument('--height', type=_positive, help='network input height (default: the card\'s)')
    p.add_argument('--width', type=_positive, help='network input width (default: the card\'s)')
    p.add_argument('--image-height', type=_positive, help='camera image height (default: input)')
    p.add_argument('--image-width', type=_positive, help='camera image width (default: input)')
    p.add_argument('--warmup', type=_non_negative, default=5)
    p.add_argument('--iters', type=_positive, default=30)
    p.add_argument('--threads', type=_positive, help='torch CPU threads')
    p.add_argument('--out', help='write the figures as JSON here')
    p.set_defaults(func=_deferred('panoptic_ros.bench', 'run_bench'))

    p = sub.add_parser('card', help='package trained weights with their model card',
                       description='Copy weights (optionally as float16) and put the metrics '
                       'of "panoptic eval --out" into their card; writes WEIGHTS.md with the '
                       'sha256.')
    p.add_argument('--weights', required=True, help='weights file written by panoptic train')
    p.add_argument('--out', help='write here instead of updating --weights in place')
    p.add_argument('--fp16', action='store_true', help='store float16 tensors')
    p.add_argument('--eval', help='results JSON of panoptic eval on these weights')
    p.add_argument('--paper', help='paper reference for the card')
    p.add_argument('--postprocess', nargs='+', metavar='NAME=VALUE', help='set '
                   'post-processing parameters in the card (e.g. score_threshold=0.25)')
    p.add_argument('--param', nargs='+', metavar='NAME=VALUE', help='set model arguments '
                   'that hold no weights (e.g. output_stride=2); the weights must still fit')
    p.set_defaults(func=_deferred('panoptic_ros.card', 'run_card'))

    p = sub.add_parser('bag', help='make rosbag2 bags from datasets; replay bags through the '
                       'node for PQ and latency')
    bag = p.add_subparsers(dest='bag_command', required=True, metavar='BAG_COMMAND')
    p = bag.add_parser('make', help='a Cityscapes-layout dataset as a camera bag with panoptic '
                       'ground truth',
                       description='Write /camera/image_raw (or .../compressed), '
                       '/camera/camera_info and /ground_truth/panoptic (32SC1, the node\'s '
                       'panoptic encoding) with stamps spaced by the rate.')
    p.add_argument('--data', required=True, help='dataset root (Cityscapes layout)')
    p.add_argument('--split', default='val')
    p.add_argument('--out', required=True, help='bag folder to create')
    p.add_argument('--storage', default='mcap', choices=['mcap', 'sqlite3'])
    p.add_argument('--rate', type=float, default=10.0, help='frames per second (default 10)')
    p.add_argument('--compressed', choices=['jpeg', 'png'], help='store the camera as '
                   'sensor_msgs/CompressedImage in this format (default: raw rgb8)')
    p.add_argument('--jpeg-quality', type=int, default=90)
    p.add_argument('--zstd', action='store_true', help='zstd compression (MCAP chunks, or '
                   'per message for sqlite3)')
    p.add_argument('--num', type=_positive, help='first NUM images only')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_deferred('panoptic_ros.bag.run', 'run_bag_make'))

    p = bag.add_parser('eval', help='replay a bag through panoptic_node: PQ and latency report',
                       description='Replay the camera images of a rosbag2 bag through the '
                       'node (live, over DDS) or its pipeline in process (offline); write '
                       'report.md, report.json, plots, a montage and the output bag.')
    p.add_argument('--bag', required=True, help='bag folder (or one .mcap/.db3 file)')
    p.add_argument('--image-topic', help='camera topic (default: the only Image or '
                   'CompressedImage topic)')
    p.add_argument('--gt-topic', help='ground-truth 32SC1 panoptic topic (default: '
                   '/ground_truth/panoptic when present)')
    p.add_argument('--no-gt', action='store_true', help='ignore ground truth: timing only')
    p.add_argument('--mode', default='live', choices=['live', 'offline'])
    rate = p.add_mutually_exclusive_group()
    rate.add_argument('--rate-factor', type=float, default=1.0, help='live: play at this '
                      'multiple of the recorded rate (0.5: half speed)')
    rate.add_argument('--max-rate', action='store_true', help='live: send frames back to '
                      'back')
    p.add_argument('--find-peak', action='store_true', help='live: then search the highest '
                   'input rate with under 5%% dropped frames')
    p.add_argument('--peak-frames', type=_positive, default=30,
                   help='frames per peak-search trial')
    p.add_argument('--peak-steps', type=_positive, default=3, help='bisection steps of the search')
    _add_model(p, 'weights file; with --connect, the weights the running node uses')
    p.add_argument('--engine', default='torch', choices=['torch', 'onnxruntime', 'tensorrt'])
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N (the node also takes '
                   'auto)')
    p.add_argument('--connect', action='store_true', help='live: use the panoptic_node already '
                   'running in --namespace instead of starting one')
    p.add_argument('--namespace', default='/panoptic_eval', help='live: namespace of the node '
                   '(default /panoptic_eval)')
    p.add_argument('--input-topic', help='live: publish the images here instead of '
                   'NAMESPACE/image (a node remapped to a camera topic)')
    p.add_argument('--startup-timeout', type=float, default=120.0,
                   help='live: seconds to wait for the node to become active')
    p.add_argument('--out', default='bag_eval', help='output folder (default bag_eval)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_deferred('panoptic_ros.bag.run', 'run_bag_eval'))

    p = sub.add_parser('zoo', help='the table of bundled models: PQ and latency side by side',
                       description='Evaluate every bundled model on one held-out dataset and '
                       'time it on the torch and onnxruntime engines; write the Markdown table '
                       'between the zoo markers of --out (docs/models.md).')
    p.add_argument('--data', required=True, help='held-out dataset (Cityscapes layout)')
    p.add_argument('--split', default='val')
    p.add_argument('--num', type=_positive, default=200, help='images to evaluate (default 200)')
    p.add_argument('--image-size', type=_positive, nargs=2, default=[512, 1024],
                   metavar=('H', 'W'),
                   help='camera image for the latency figures (default 512 1024)')
    p.add_argument('--warmup', type=_non_negative, default=3)
    p.add_argument('--iters', type=_positive, default=10)
    p.add_argument('--out', help='Markdown page to update (e.g. docs/models.md)')
    p.add_argument('--json', help='also write the figures as JSON here')
    p.set_defaults(func=_deferred('panoptic_ros.zoo', 'run_zoo'))

    p = sub.add_parser('demo', help='run the main job on the bundled sample data')
    p.add_argument('--model', help='an architecture (its bundled model) or a bundled file stem '
                   '(default: the bundled dense_detections model)')
    p.add_argument('--out', default='demo_output', help='output folder')
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return args.func(args)
    except PanopticError as exc:
        print(f'panoptic {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _WRITE_ERRORS:
            raise
        print(f'panoptic {args.command}: error: cannot write {exc.filename}: {exc.strerror}',
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'panoptic {args.command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
