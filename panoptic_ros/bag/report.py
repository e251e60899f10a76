"""Replay reports: ``report.json`` (quality in ``panoptic pq``'s layout under ``quality``,
with STQ/VPQ under ``quality.video`` for video ground truth, timing under ``latency``),
``report.md`` for people, PNG plots (matplotlib), a montage of camera | ground truth | node
overlay for a few frames, and a strip of the overlays of consecutive frames (with tracking, an
object keeps its colour along it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from panoptic_ros.evaluation.evaluate import categories
from panoptic_ros.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from panoptic_ros.labels import LabelSet

TILE_WIDTH = 512


def _png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if ok:
        atomic_write_bytes(path, buf.tobytes())


def _tile(rgb: np.ndarray, nearest: bool) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    size = (TILE_WIDTH, max(1, round(h * TILE_WIDTH / w)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def montage_row(camera: np.ndarray, gt_colours: np.ndarray | None,
                overlay: np.ndarray | None) -> np.ndarray:
    """One montage row: camera | ground truth colours | overlay, each ``TILE_WIDTH`` wide
    (grey where a part is missing)."""
    cam = _tile(camera, False)
    blank = np.full_like(cam, 96)
    return np.hstack([cam, _tile(gt_colours, True) if gt_colours is not None else blank,
                      _tile(overlay, False) if overlay is not None else blank])


def _savefig(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=110, bbox_inches='tight')
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_latency(series: dict, path_time: Path, path_hist: Path, title: str) -> None:
    """Latency per frame over the run (end to end, node total, inference) and the histogram of
    end-to-end latency."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    t = np.asarray(series['time_s'])
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot(t, series['end_to_end_ms'], '.-', lw=1, label='end to end (sent to last output)')
    ax.plot(t, series['total'], '.-', lw=1, label='node: reception to publish')
    ax.plot(t, series['inference'], '.-', lw=1, label='inference')
    ax.set_xlabel('frame sent at (s since start)')
    ax.set_ylabel('latency (ms)')
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    _savefig(fig, path_time)

    e2e = np.asarray(series['end_to_end_ms'])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(e2e, bins=min(40, max(5, e2e.size // 2)), color='tab:blue', alpha=0.8)
    for q, style in ((50, '--'), (95, ':'), (99, '-.')):
        v = float(np.percentile(e2e, q))
        ax.axvline(v, color='k', ls=style, lw=1, label=f'p{q} {v:.0f} ms')
    ax.set_xlabel('end-to-end latency (ms)')
    ax.set_ylabel('frames')
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    _savefig(fig, path_hist)


def plot_pq_per_class(quality: dict, labels: LabelSet, path: Path) -> None:
    """Horizontal PQ bars per class (things orange, stuff blue), SQ and RQ in the labels."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    cats = categories(labels)
    rows = sorted(((cats[int(k)]['name'], v, cats[int(k)]['isthing'])
                   for k, v in quality['per_class'].items()), key=lambda r: r[1]['pq'])
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, [100 * r[1]['pq'] for r in rows],
            color=['tab:orange' if r[2] else 'tab:blue' for r in rows])
    ax.set_yticks(y, [f'{r[0]} (SQ {100 * r[1]["sq"]:.0f}, RQ {100 * r[1]["rq"]:.0f})'
                      for r in rows], fontsize=8)
    ax.set_xlabel('PQ')
    ax.set_xlim(0, 100)
    ax.grid(axis='x', alpha=0.3)
    a = quality['All']
    ax.set_title(f'PQ per class on {quality["frames"]} frames: All {100 * a["pq"]:.1f}, '
                 f'Things {100 * quality["Things"]["pq"]:.1f} (orange), Stuff '
                 f'{100 * quality["Stuff"]["pq"]:.1f} (blue)', fontsize=9)
    _savefig(fig, path)


def _fmt(v, digits: int = 1) -> str:
    return '-' if v is None else f'{v:.{digits}f}'


def markdown(report: dict, labels: LabelSet, files: dict[str, str]) -> str:
    """``report.md``: summary, quality, latency, drops, plots and montage."""
    bag, lat, q = report['bag'], report['latency'], report['quality']
    fr = lat['frames']
    lines = [f'# Replay report: {Path(bag["path"]).name}', '']
    if report.get('interrupted'):
        lines += ['**Interrupted (Ctrl-C): partial report of the frames done so far.**', '']
    if report.get('node_exit'):
        ex = report['node_exit']
        lines += [f'**panoptic_node exited (code {ex["code"]}) during the replay:** partial '
                  f'report of the frames it answered; its log: `{ex["log"]}`', '',
                  '```', ex['log_tail'], '```', '']
    if report.get('output_bag_error'):
        lines += ['**The output bag could not be written and was removed:** '
                  f'{report["output_bag_error"]}; the figures below cover every frame.', '']
    if bag.get('error'):
        lines += [f'**The bag stopped being readable after {bag["frames_read"]} frames:** '
                  f'{bag["error"]}', '']
    lines += [
        f'- bag: `{bag["path"]}` ({bag["storage"]}), camera `{bag["image_topic"]}` '
        f'({bag["image_type"].split("/")[-1]}), ground truth '
        f'`{bag["gt_topic"] or "none"}`; {bag["frames_read"]} of {bag["frames_in_bag"]} frames read',
        f'- mode: **{report["mode"]}**; {report["rate"]}',
        f'- model: {report["model"]}',
        f'- machine: {report["machine"]}',
        '']
    summary = [f'{fr["completed"]}/{fr["sent"]} frames answered '
               f'({100 * fr["drop_ratio"]:.1f}% dropped)']
    if q:
        summary.insert(0, f'PQ **{100 * q["All"]["pq"]:.1f}** (SQ {100 * q["All"]["sq"]:.1f}, '
                          f'RQ {100 * q["All"]["rq"]:.1f}), mIoU {100 * q["miou"]:.1f} on '
                          f'{q["frames"]} frames')
    e2e = lat['end_to_end_ms']
    if e2e:
        summary.append(f'latency p50 **{e2e["p50"]:.0f} ms**, p95 {e2e["p95"]:.0f} ms, max '
                       f'{e2e["max"]:.0f} ms; throughput {_fmt(lat["throughput_hz"])} Hz')
    lines += ['## Summary', '', '; '.join(summary) + '.', '']
    if q:
        cats = categories(labels)
        lines += ['## Quality', '', '| | PQ | SQ | RQ | classes |', '|---|---:|---:|---:|---:|']
        for k in ('All', 'Things', 'Stuff'):
            r = q[k]
            lines.append(f'| **{k}** | {100 * r["pq"]:.1f} | {100 * r["sq"]:.1f} | '
                         f'{100 * r["rq"]:.1f} | {r["n"]} |')
        lines += ['', f'mIoU {100 * q["miou"]:.1f}.', '', '| class | PQ | SQ | RQ | IoU |',
                  '|---|---:|---:|---:|---:|']
        for cid in sorted(q['per_class'], key=int):
            r = q['per_class'][cid]
            iou = q['iou_per_class'].get(int(cid), q['iou_per_class'].get(str(cid)))
            lines.append(f'| {cats[int(cid)]["name"]} | {100 * r["pq"]:.1f} | '
                         f'{100 * r["sq"]:.1f} | {100 * r["rq"]:.1f} | '
                         f'{"-" if iou is None else f"{100 * iou:.1f}"} |')
        lines.append('')
    if q and q.get('video'):
        lines += ['## Tracking', '',
                  'The answered frames scored as one video against the ground-truth track ids: '
                  'STQ = sqrt(AQ x SQ) (Weber et al. 2021), VPQ over windows of 1-4 frames '
                  '(Kim et al. 2020), id switches per 100 tracked objects. `tracker`: the '
                  "segments' `track_id`; `per_frame_ids`: their per-frame `instance_id`, the "
                  'baseline.', '',
                  '| ids | STQ | AQ | SQ | VPQ | id switches | per 100 objects |',
                  '|---|---:|---:|---:|---:|---:|---:|']
        for name, r in q['video'].items():
            lines.append(f'| {name} | {100 * r["stq"]:.1f} | {100 * r["aq"]:.1f} | '
                         f'{100 * r["sq"]:.1f} | {100 * r["vpq"]:.1f} | {r["id_switches"]} | '
                         f'{r["per_100"]:.1f} |')
        lines.append('')
    lines += ['## Latency', '',
              'End to end: from sending a frame to receiving the last of its outputs. '
              'Stages: as the node measured them (`total`: reception to publishing); '
              '`transport_in`: sending to the node\'s reception.', '',
              '| ms | p50 | p95 | p99 | max | mean |', '|---|---:|---:|---:|---:|---:|']
    for name, s in [('**end to end**', e2e)] + list(lat['stages_ms'].items()):
        if s:
            lines.append(f'| {name} | {s["p50"]:.1f} | {s["p95"]:.1f} | {s["p99"]:.1f} | '
                         f'{s["max"]:.1f} | {s["mean"]:.1f} |')
    j = lat.get('jitter_ms')
    if j:
        lines += ['', f'Jitter: latency standard deviation {j["latency_std"]:.1f} ms; output '
                  f'spacing minus input spacing p50 {j["interval_p50"]:.1f} ms, p95 '
                  f'{j["interval_p95"]:.1f} ms, max {j["interval_max"]:.1f} ms.']
    lines += ['', f'Input rate {_fmt(lat["input_rate_hz"])} Hz, output rate '
              f'{_fmt(lat["throughput_hz"])} Hz; {fr["dropped"]} of {fr["sent"]} frames without '
              'output' + (': ' + ', '.join(f'{k} {v}' for k, v in fr['drop_reasons'].items())
                          if fr['drop_reasons'] else '') + '.', '']
    peak = report.get('peak')
    if peak:
        lines += ['## Peak rate', '',
                  f'Highest input rate with under {100 * peak["max_drop_ratio"]:.0f}% drops: '
                  f'**{_fmt(peak["rate_hz"])} Hz** ({len(peak["trials"])} trials of '
                  f'{peak["frames_per_trial"]} frames).', '',
                  '| rate (Hz) | sent | answered | dropped | p50 ms | p95 ms |',
                  '|---:|---:|---:|---:|---:|---:|']
        for t in peak['trials']:
            lines.append(f'| {t["rate_hz"]:.2f} | {t["sent"]} | {t["completed"]} | '
                         f'{100 * t["drop_ratio"]:.1f}% | {_fmt(t["p50_ms"], 0)} | '
                         f'{_fmt(t["p95_ms"], 0)} |')
        lines.append('')
    shown = [(k, v) for k, v in files.items() if v.endswith('.png')]
    if shown:
        lines += ['## Plots', '']
        lines += [f'![{k}]({v})' for k, v in shown]
        lines.append('')
    if 'output_bag' in files:
        lines += ['## Output bag', '',
                  f'`{files["output_bag"]}` (MCAP) holds the camera images as sent and the '
                  'label images, overlay and segments that came back, each at its time of '
                  'sending or receipt: open it in Foxglove, or `ros2 bag play` it and look at '
                  'the topics in RViz.', '']
    return '\n'.join(lines)


def strip_image(frames: list[tuple[int, np.ndarray]], per_row: int = 3) -> np.ndarray:
    """Overlays ``(frame index, rgb)`` in order, ``per_row`` tiles of ``TILE_WIDTH`` a row,
    each with its frame index in a corner."""
    import cv2

    tiles = []
    for index, rgb in frames:
        tile = np.ascontiguousarray(_tile(rgb, False))
        cv2.putText(tile, f'frame {index}', (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0),
                    4, cv2.LINE_AA)
        cv2.putText(tile, f'frame {index}', (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    blank = np.full_like(tiles[0], 96)
    tiles += [blank] * (-len(tiles) % per_row)
    return np.vstack([np.hstack(tiles[k:k + per_row]) for k in range(0, len(tiles), per_row)])


def write_report(out: Path, report: dict, labels: LabelSet, series: dict,
                 montage: list[np.ndarray],
                 strip: list[tuple[int, np.ndarray]] | None = None) -> dict[str, str]:
    """Write ``report.json``, plots, montage, strip and ``report.md`` into ``out``; returns
    the files written (name -> path relative to ``out``). ``report.json`` comes first, so
    that the figures survive a disk that fills with the pictures, and again at the end with
    the list of files."""
    files: dict[str, str] = {}
    report['files'] = files
    atomic_write_json(out / 'report.json', report)
    title = f'{Path(report["bag"]["path"]).name}, {report["mode"]}'
    if series['end_to_end_ms']:
        plot_latency(series, out / 'latency_over_time.png', out / 'latency_histogram.png',
                     title)
        files['latency_over_time'] = 'latency_over_time.png'
        files['latency_histogram'] = 'latency_histogram.png'
    if report['quality']:
        plot_pq_per_class(report['quality'], labels, out / 'pq_per_class.png')
        files['pq_per_class'] = 'pq_per_class.png'
    if montage:
        _png(out / 'montage.png', np.vstack(montage))
        files['montage'] = 'montage.png'
    if strip:
        _png(out / 'strip.png', strip_image(sorted(strip, key=lambda f: f[0])))
        files['strip'] = 'strip.png'
    if (out / 'output_bag').exists():
        files['output_bag'] = 'output_bag'
    report['files'] = files
    atomic_write_json(out / 'report.json', report)
    atomic_write_text(out / 'report.md', markdown(report, labels, files))
    return files
