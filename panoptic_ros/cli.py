"""``panoptic``: the command line tools of panoptic_ros.

Each subcommand imports what it needs only when it runs, so ``panoptic pq`` does not pay for
torch or rclpy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panoptic_ros.errors import PanopticError


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
                          progress=not args.quiet)
    print(f'{stats["num"]} images ({args.height}x{args.width}, split {args.split}) written to '
          f'{args.out} in {stats["seconds"]:.1f} s ({stats["num"] / stats["seconds"]:.1f} '
          f'images/s, {stats["workers"]} workers)')
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from panoptic_ros.demo import run_demo

    return run_demo(Path(args.out))


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
    p.add_argument('--workers', type=int, default=None, help='processes (default: all cores)')
    p.set_defaults(func=_cmd_pq)

    p = sub.add_parser('synth', help='render synthetic street scenes (Cityscapes layout)',
                       description='Render street-like scenes with Cityscapes classes and write '
                       'them in the Cityscapes layout, with panoptic ground truth.')
    p.add_argument('--out', required=True, help='dataset root to write into')
    p.add_argument('--split', default='train', help='split name (train, val, test, ...)')
    p.add_argument('--num', type=int, default=100, help='number of images')
    p.add_argument('--height', type=int, default=512)
    p.add_argument('--width', type=int, default=1024)
    p.add_argument('--seed', type=int, default=0, help='same seed, same images')
    p.add_argument('--workers', type=int, default=None, help='processes (default: all cores)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser('demo', help='run the main job on the bundled sample data')
    p.add_argument('--out', default='demo_output', help='output folder')
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PanopticError as exc:
        print(f'panoptic {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'panoptic {args.command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
