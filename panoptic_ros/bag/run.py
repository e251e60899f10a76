"""``panoptic bag make`` and ``panoptic bag eval``."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from panoptic_ros.bag import types
from panoptic_ros.bag.metrics import ReplayMetrics
from panoptic_ros.bag.source import BagSource, Frame
from panoptic_ros.errors import PanopticError

MONTAGE_ROWS = 4
STRIP_FRAMES, STRIP_STEP = 6, 2      # the report's strip: overlays of frames 0, 2, .., 10
MAX_DROP_RATIO = 0.05   # ros2_benchmark's criterion for the peak rate


def run_bag_make(args: argparse.Namespace) -> int:
    from panoptic_ros.bag.make import make_bag

    stats = make_bag(args.data, args.split, args.out, storage=args.storage, rate=args.rate,
                     compressed=args.compressed, quality=args.jpeg_quality, num=args.num,
                     compress=args.zstd, progress=not args.quiet)
    n = stats['sequences']
    video = (f' ({n} sequence{"s" * (n != 1)}, ground truth with track ids)'
             if stats['track_ids'] else '')
    print(f'{stats["frames"]} frames{video} at {args.rate:g} Hz written to {args.out} '
          f'({args.storage}, {stats["bytes"] / 2**20:.1f} MiB): {", ".join(stats["topics"])}')
    return 0


def _machine() -> str:
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {gpu}'


class _Collector:
    """What each answered frame leaves for the report: quality, a few montage rows and a
    strip of consecutive overlays."""

    def __init__(self, metrics: ReplayMetrics, labels, total: int, bar) -> None:
        self.metrics, self.labels, self.bar = metrics, labels, bar
        self.every = max(1, total // MONTAGE_ROWS)
        self.rows: list[np.ndarray] = []
        self.strip: list[tuple[int, np.ndarray]] = []

    def __call__(self, frame: Frame, outputs: dict, timing) -> None:
        from panoptic_ros.bag.report import montage_row
        from panoptic_ros.encoding import decode_panoptic
        from panoptic_ros.palette import colorize
        from panoptic_ros.ros.image_io import BadImage, image_to_rgb, to_rgb

        m = self.metrics
        if frame.gt is not None and 'panoptic' in outputs and 'semantic' in outputs:
            m.add_quality(f'{frame.index:06d}', frame.gt, outputs['segments'],
                          outputs['panoptic'], outputs['semantic'])
        overlay = outputs.get('overlay')
        if overlay is not None and frame.index % STRIP_STEP == 0 and \
                frame.index < STRIP_FRAMES * STRIP_STEP:
            self.strip.append((frame.index, image_to_rgb(overlay)))
        if frame.index % self.every == 0 and len(self.rows) < MONTAGE_ROWS:
            try:
                camera = to_rgb(frame.msg)
            except BadImage:
                camera = None
            if camera is not None:
                gt_colours = None
                if frame.gt is not None:
                    gt_colours = colorize(*decode_panoptic(frame.gt, self.labels.void_id,
                                                           m.gt_divisor), self.labels)
                self.rows.append(montage_row(
                    camera, gt_colours, None if overlay is None else image_to_rgb(overlay)))
        if self.bar is not None:
            e2e = 1e3 * (timing.done - timing.sent)
            q = m.quality() if m.evaluated and m.evaluated % 10 == 0 else None
            self.bar.set_postfix_str(f'latency {e2e:.0f} ms' + (
                f', PQ {100 * q["All"]["pq"]:.1f}' if q else ''), refresh=False)


def _bag_info(source: BagSource, frames_read: int) -> dict:
    return {'path': str(source.path), 'storage': source.storage,
            'image_topic': source.image_topic, 'image_type': source.msgtype,
            'gt_topic': source.gt_topic, 'gt_label_divisor': source.label_divisor,
            'frames_in_bag': source.count, 'frames_read': frames_read,
            'error': source.error, 'unreadable_messages': source.unreadable,
            'restamped': source.restamped}


def _find_peak(session, source: BagSource, labels, start_rate: float, frames: int,
               steps: int) -> dict:
    """ros2_benchmark's search: the highest rate at which fewer than 5% of the frames are
    dropped. Doubles or halves from ``start_rate`` until the result flips, then bisects
    ``steps`` times; every trial sends the bag's first ``frames`` frames evenly spaced."""
    from itertools import islice

    from panoptic_ros.bag.live import play

    trials = []

    def trial(rate: float) -> bool:
        m = ReplayMetrics(labels, source.label_divisor)
        play(session, islice(source.frames(), frames), m, due=lambda f: f.index / rate,
             on_frame=lambda *a: None)
        lat = m.latency()
        e2e = lat['end_to_end_ms']
        trials.append({'rate_hz': rate, 'sent': m.sent, 'completed': len(m.timings),
                       'drop_ratio': lat['frames']['drop_ratio'],
                       'drop_reasons': lat['frames']['drop_reasons'],
                       'p50_ms': e2e.get('p50'), 'p95_ms': e2e.get('p95')})
        print(f'  peak search: {rate:6.2f} Hz -> {100 * trials[-1]["drop_ratio"]:.1f}% dropped')
        time.sleep(1.0)            # let the node's queue empty between trials
        return trials[-1]['drop_ratio'] < MAX_DROP_RATIO

    lo, hi, rate = None, None, start_rate
    for _ in range(8):
        if trial(rate):
            lo = rate
            if hi is not None:
                break
            rate *= 2
        else:
            hi = rate
            if lo is not None:
                break
            rate /= 2
    for _ in range(steps if lo and hi else 0):
        mid = (lo + hi) / 2
        if trial(mid):
            lo = mid
        else:
            hi = mid
    return {'rate_hz': lo, 'max_drop_ratio': MAX_DROP_RATIO, 'frames_per_trial': frames,
            'trials': trials}


def run_bag_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from panoptic_ros.bag.recorder import OutputBag
    from panoptic_ros.bag.report import write_report
    from panoptic_ros.evaluation.pq import format_pq_table
    from panoptic_ros.evaluation.evaluate import categories
    from panoptic_ros.weights import read_card, resolve_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = BagSource(args.bag, args.image_topic,
                       '' if args.no_gt else args.gt_topic)
    weights = resolve_model(args.model, args.weights)
    labels = read_card(weights)['spec'].label_set()
    metrics = ReplayMetrics(labels, source.label_divisor, video=source.gt_tracks)
    recorder = OutputBag(out / 'output_bag')
    bar = tqdm(total=source.count, unit='frame', disable=args.quiet, desc=f'bag eval '
               f'({args.mode})')
    collector = _Collector(metrics, labels, source.count, bar)
    node = session = None
    peak = node_exit = None
    interrupted = False
    report = {'mode': args.mode, 'machine': _machine(), 'model': '', 'rate': ''}
    try:
        if args.mode == 'offline':
            from rclpy.serialization import serialize_message

            from panoptic_ros.bag.offline import OfflinePipeline, run_offline

            pipeline = OfflinePipeline(str(weights), args.engine, args.device)
            report['model'] = pipeline.description
            report['rate'] = 'frame by frame, in process (no DDS)'

            def on_frame(frame, outputs, timing):
                recorder.write(source.image_topic, frame.msgtype, frame.log_ns, frame.raw)
                for name, msg in outputs.items():
                    recorder.write(f'/panoptic/{name}', types.OUTPUT_TYPES[name], frame.log_ns,
                                   serialize_message(msg))
                collector(frame, outputs, timing)
                bar.update()

            run_offline(source, pipeline, metrics, on_frame)
        else:
            from panoptic_ros.bag.live import LiveSession, NodeProcess, play

            compressed = source.msgtype == types.COMPRESSED_IMAGE
            ns = args.namespace
            if not args.connect:
                params = {'weights': str(weights), 'engine': args.engine,
                          'device': args.device,
                          'input_transport': 'compressed' if compressed else 'raw',
                          'diagnostics.period': 0.5}
                node = NodeProcess(ns, params, out / 'node.log')
            session = LiveSession(ns, compressed, args.input_topic)
            session.wait_ready(args.startup_timeout, node)
            first = next(source.frames(), None)
            if first is None:
                raise PanopticError(f'no readable image on {source.image_topic} in {source.path}'
                                    + (f' ({source.error})' if source.error else ''))
            session.handshake((source.restamp(first.msg, 10**9 + k)[1] for k in range(30)),
                              args.startup_timeout)
            lm = session.label_map
            if [li.name for li in lm.labels] != list(labels.names):
                raise PanopticError(f'the node publishes {lm.dataset} classes of {lm.model}; '
                                    f'--weights {weights.name} has {labels.name}: pass the '
                                    'weights the node runs')
            report['model'] = f'{lm.model}, {session.diagnostics.get("engine", "")}'.rstrip(', ')
            if args.max_rate:
                report['rate'] = 'as fast as possible (--max-rate)'
                due = lambda f: 0.0  # noqa: E731
            else:
                report['rate'] = (f'bag timing x {args.rate_factor:g}' if args.rate_factor == 1
                                  else f'bag timing stretched x {1 / args.rate_factor:g} '
                                  f'(--rate-factor {args.rate_factor:g})')
                due = lambda f: f.log_ns / 1e9 / args.rate_factor  # noqa: E731
            play(session, source.frames(), metrics, due, collector,
                 record=recorder.write, need_quality=bool(source.gt_topic),
                 on_sent=lambda: bar.update(), node_alive=node.alive if node else None)
            report['node'] = session.diagnostics
            if node is not None and not node.alive():
                node_exit = {'code': node.proc.returncode, 'log': str(node.log_path),
                             'log_tail': node.log_tail()}
                report['node_exit'] = node_exit
            if args.find_peak:
                bar.close()
                lat = metrics.latency()
                start = lat['throughput_hz'] or 1.0
                peak = _find_peak(session, source, labels, start, args.peak_frames,
                                  args.peak_steps)
    except KeyboardInterrupt:
        interrupted = True
        print('\ninterrupted: writing a partial report', flush=True)
    finally:
        bar.close()
        if session is not None:
            session.close()
        if node is not None:
            node.stop()
        recorder.close()
    # every frame read was sent (published, or processed in process)
    if recorder.error:
        report['output_bag_error'] = recorder.error
    report.update({'bag': _bag_info(source, metrics.sent), 'interrupted': interrupted,
                   'quality': metrics.quality(), 'latency': metrics.latency()})
    if peak:
        report['peak'] = peak
    source.close()
    files = write_report(out, report, labels, metrics.series(), collector.rows,
                         collector.strip)
    q, lat = report['quality'], report['latency']
    if q:
        print(format_pq_table(q, categories(labels)))
        print(f'{"mIoU":22s}| {100 * q["miou"]:5.1f}')
        if 'video' in q:
            from panoptic_ros.evaluation.sequences import format_video_table

            print(format_video_table(q['video']))
    e2e, fr = lat['end_to_end_ms'], lat['frames']
    if e2e:
        print(f'latency end to end: p50 {e2e["p50"]:.0f} ms, p95 {e2e["p95"]:.0f} ms, p99 '
              f'{e2e["p99"]:.0f} ms, max {e2e["max"]:.0f} ms; inference p50 '
              f'{lat["stages_ms"]["inference"]["p50"]:.0f} ms; throughput '
              f'{lat["throughput_hz"] or 0:.2f} Hz')
    print(f'{fr["completed"]} of {fr["sent"]} frames answered, {fr["dropped"]} dropped'
          + (f' ({", ".join(f"{k} {v}" for k, v in fr["drop_reasons"].items())})'
             if fr['drop_reasons'] else ''))
    if peak:
        print(f'peak rate with under 5% drops: {peak["rate_hz"] or 0:.2f} Hz')
    print(f'report: {out / "report.md"} ({", ".join(files)}; report.json)')
    if node_exit:
        raise PanopticError(f'panoptic_node exited (code {node_exit["code"]}) during the replay '
                            f'after {fr["completed"]} of {fr["sent"]} frames were answered; the '
                            f'report covers those; its log ({node_exit["log"]}):\n'
                            f'{node_exit["log_tail"]}')
    if recorder.error:
        raise PanopticError(f'cannot write the output bag {out / "output_bag"}: '
                            f'{recorder.error}; it was removed; the report covers all '
                            f'{fr["sent"]} frames')
    if source.error:
        raise PanopticError(f'bag {source.path} is corrupt or truncated after '
                            f'{metrics.sent} frames ({source.error}); the report covers those')
    return 130 if interrupted else 0
