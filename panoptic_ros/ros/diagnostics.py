"""Frame statistics of the node and their ``diagnostic_msgs`` report.

:class:`FrameStats` is thread-safe: the executor thread counts received frames, the worker
thread counts processed and dropped ones, the diagnostics timer reads a snapshot.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

STAGES = ('decode', 'preprocess', 'inference', 'postprocess', 'publish', 'queue', 'total')

OK, WARN, ERROR = 0, 1, 2       # diagnostic_msgs/DiagnosticStatus levels (bytes there)


@dataclass
class Thresholds:
    """When the report turns WARN or ERROR (node parameters ``diagnostics.*``)."""

    warn_latency_ms: float = 500.0      # p95 of reception-to-publish time
    error_latency_ms: float = 2000.0
    warn_drop_ratio: float = 0.5        # dropped / received over the window
    warn_age_ms: float = 1000.0         # p95 of output time minus input stamp
    stale_s: float = 5.0                # ERROR: input arrives but nothing published this long


class FrameStats:
    """Rates, per-stage latency percentiles over a window, drop and bad-input counters.

    Args:
        window: number of recent frames the percentiles and rates are computed over.
    """

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._window = window
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._stages = {s: deque(maxlen=self._window) for s in STAGES}
            self._age = deque(maxlen=self._window)
            self._received = deque(maxlen=self._window)     # monotonic times
            self._published = deque(maxlen=self._window)
            self.received = 0
            self.processed = 0
            self.dropped: Counter[str] = Counter()
            self.bad_inputs: Counter[str] = Counter()
            self.stream_events: Counter[str] = Counter()
            self.publish_errors = 0
            self.last_error = ''

    def on_received(self) -> None:
        with self._lock:
            self.received += 1
            self._received.append(time.monotonic())

    def on_dropped(self, reason: str, count: int = 1, message: str = '') -> None:
        with self._lock:
            self.dropped[reason] += count
            self.last_error = message or self.last_error

    def on_bad_input(self, kind: str, message: str) -> None:
        with self._lock:
            self.bad_inputs[kind] += 1
            self.last_error = message

    def on_stream_events(self, events) -> None:
        with self._lock:
            self.stream_events.update(events)

    def on_publish_error(self, message: str) -> None:
        with self._lock:
            self.publish_errors += 1
            self.last_error = message

    def on_published(self, timings_ms: dict[str, float], age_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self._published.append(time.monotonic())
            for stage in STAGES:
                self._stages[stage].append(timings_ms.get(stage, 0.0))
            self._age.append(age_ms)

    @staticmethod
    def _rate(times: deque, now: float) -> float:
        if not times:
            return 0.0
        span = now - times[0]
        return (len(times) - 1) / span if len(times) > 1 and span > 0 else 0.0

    def snapshot(self) -> dict:
        """Counters, ``rate_in``/``rate_out`` (Hz), ``{stage: (p50, p95, max)}`` in ms, the
        age percentiles, and seconds since the last input and output (inf when none)."""
        now = time.monotonic()
        with self._lock:
            lat = {s: _percentiles(v) for s, v in self._stages.items()}
            return {
                'received': self.received, 'processed': self.processed,
                'dropped': dict(self.dropped), 'bad_inputs': dict(self.bad_inputs),
                'stream_events': dict(self.stream_events),
                'publish_errors': self.publish_errors, 'last_error': self.last_error,
                'rate_in': self._rate(self._received, now),
                'rate_out': self._rate(self._published, now),
                'latency_ms': lat, 'age_ms': _percentiles(self._age),
                'since_input_s': now - self._received[-1] if self._received else float('inf'),
                'since_output_s': now - self._published[-1] if self._published else float('inf'),
            }


def _percentiles(values) -> tuple[float, float, float]:
    if not values:
        return (0.0, 0.0, 0.0)
    a = np.fromiter(values, float)
    return (float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(a.max()))


def assess(snap: dict, th: Thresholds, active: bool) -> tuple[int, str]:
    """Level and one-line summary of a snapshot."""
    if not active:
        return OK, 'inactive'
    total_p95 = snap['latency_ms']['total'][1]
    if snap['received'] and snap['since_input_s'] < th.stale_s < snap['since_output_s']:
        return ERROR, f'input arriving but no output for {th.stale_s:g} s'
    if total_p95 > th.error_latency_ms:
        return ERROR, f'latency p95 {total_p95:.0f} ms > {th.error_latency_ms:g} ms'
    problems = []
    if total_p95 > th.warn_latency_ms:
        problems.append(f'latency p95 {total_p95:.0f} ms > {th.warn_latency_ms:g} ms')
    if snap['age_ms'][1] > th.warn_age_ms:
        problems.append(f'age p95 {snap["age_ms"][1]:.0f} ms > {th.warn_age_ms:g} ms')
    dropped = sum(snap['dropped'].values())
    if snap['received'] and dropped / snap['received'] > th.warn_drop_ratio:
        problems.append(f'{dropped} of {snap["received"]} frames dropped')
    if snap['bad_inputs'] or snap['publish_errors']:
        problems.append(f'{sum(snap["bad_inputs"].values())} bad inputs, '
                        f'{snap["publish_errors"]} publish errors')
    if problems:
        return WARN, '; '.join(problems)
    if not snap['received']:
        return OK, 'waiting for images'
    return OK, f'{snap["rate_out"]:.1f} Hz out, latency p50 {snap["latency_ms"]["total"][0]:.0f} ms'


def key_values(snap: dict, info: dict[str, str]) -> list[tuple[str, str]]:
    """Flat ``(key, value)`` pairs for a ``DiagnosticStatus``: ``info`` (engine, model, ...)
    first, then rates, counters, per-stage ``latency.<stage>.p50|p95|max`` ms and ``age``."""
    kv = list(info.items())
    kv += [('rate_in_hz', f'{snap["rate_in"]:.2f}'), ('rate_out_hz', f'{snap["rate_out"]:.2f}'),
           ('frames_received', str(snap['received'])),
           ('frames_processed', str(snap['processed'])),
           ('frames_dropped', str(sum(snap['dropped'].values())))]
    kv += [(f'dropped.{k}', str(v)) for k, v in sorted(snap['dropped'].items())]
    kv.append(('bad_inputs', str(sum(snap['bad_inputs'].values()))))
    kv += [(f'bad_input.{k}', str(v)) for k, v in sorted(snap['bad_inputs'].items())]
    kv += [(f'stream.{k}', str(v)) for k, v in sorted(snap['stream_events'].items())]
    kv.append(('publish_errors', str(snap['publish_errors'])))
    for stage, (p50, p95, mx) in snap['latency_ms'].items():
        kv += [(f'latency.{stage}.p50_ms', f'{p50:.2f}'), (f'latency.{stage}.p95_ms', f'{p95:.2f}'),
               (f'latency.{stage}.max_ms', f'{mx:.2f}')]
    p50, p95, mx = snap['age_ms']
    kv += [('age.p50_ms', f'{p50:.2f}'), ('age.p95_ms', f'{p95:.2f}'), ('age.max_ms', f'{mx:.2f}')]
    if snap['last_error']:
        kv.append(('last_error', snap['last_error']))
    return kv
