"""Small pieces the benchmarks share: load average, quantiles, CPU hogs, judging a stop."""

from contextlib import contextmanager
from pathlib import Path
import subprocess
import sys
from typing import Dict, Iterator, List, Optional, Sequence

from viam_session.chips.sim_chip import LineChange

__all__ = ['cpu_hogs', 'judge_stop', 'loadavg', 'quantile']

HOG = 'while True:\n    pass\n'


def loadavg() -> str:
    """Return the 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    return ' '.join(Path('/proc/loadavg').read_text().split()[:3])


def quantile(values: Sequence[float], q: float) -> float:
    """Return the q-quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))]


@contextmanager
def cpu_hogs(count: int) -> Iterator[List[subprocess.Popen]]:
    """Run `count` busy-looping processes at normal priority while the block runs."""
    hogs = [subprocess.Popen([sys.executable, '-c', HOG]) for _ in range(count)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def judge_stop(changes: Sequence[LineChange], reference_ns: int, allowed_s: float,
               window_s: float, end_ns: int) -> Dict[str, object]:
    """
    Judge a stop from an actuator's PWM changes, recorded since it ran, oldest first.

    The actuator ran before the first change. `stop_ns` is where the last run of PWM 0 up to
    `end_ns` began (None: still powered at `end_ns`). The outcome is `powered_after_loss` when
    it was powered at some moment between `reference_ns` + `allowed_s` and `end_ns` (a stop
    that came in time but was undone later counts too), else `stopped`; `figure_ms` is
    stop - reference - window.
    """
    deadline_ns = reference_ns + int(allowed_s * 1e9)
    stop_ns: Optional[int] = None
    for change in changes:
        if change.t_ns > end_ns:
            break
        if change.value == 0.0:
            stop_ns = change.t_ns if stop_ns is None else stop_ns
        else:
            stop_ns = None
    figure = None if stop_ns is None else round((stop_ns - reference_ns) * 1e-6
                                                - window_s * 1e3, 2)
    powered = stop_ns is None or stop_ns > deadline_ns
    return {'stop_ns': stop_ns, 'figure_ms': figure,
            'outcome': 'powered_after_loss' if powered else 'stopped'}
