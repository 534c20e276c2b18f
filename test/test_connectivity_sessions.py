"""
Robot-side connectivity loss on a real link: remote sessions end at once, local ones stay.

The whole robot runs in network namespace `a` (see scenarios/connectivity_loss.py) and watches
its veth; the test takes the other end down, which drops the robot's carrier, and later up.
"""

import json
from pathlib import Path
import queue
import sys
import threading
import time

import pytest

from viam_session_harness.netfault.netns import netns_unavailable_reason, NetnsPair

SCENARIO = Path(__file__).resolve().parent / 'scenarios' / 'connectivity_loss.py'
DEADLINE_S = 120.0

pytestmark = pytest.mark.skipif(netns_unavailable_reason() is not None,
                                reason=str(netns_unavailable_reason()))


def _lines(process) -> 'queue.Queue[dict]':
    lines: 'queue.Queue[dict]' = queue.Queue()

    def read() -> None:
        for text in process.stdout:
            try:
                lines.put(json.loads(text))
            except json.JSONDecodeError:
                pass

    threading.Thread(target=read, daemon=True).start()
    return lines


def _next(lines: 'queue.Queue[dict]', event: str) -> dict:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        if line['event'] == event:
            return line


def test_link_down_closes_remote_sessions_and_keeps_local_ones(tmp_path):
    """Carrier lost: the remote session ends within a fraction of its window; local runs on."""
    with NetnsPair() as pair:
        log = open(tmp_path / 'scenario.log', 'w', encoding='utf-8')
        process = pair.run(pair.a.ns, [sys.executable, str(SCENARIO), pair.a.dev],
                           discovery_range='LOCALHOST', stdin=-1, stdout=-1, stderr=log,
                           text=True)
        lines = _lines(process)
        try:
            ready = _next(lines, 'ready')
            link_down_ns = time.monotonic_ns()
            pair.set_link(pair.b.ns, pair.b.dev, up=False)
            closed = _next(lines, 'closed')
            assert closed['reason'].startswith('robot lost connectivity: interface')
            assert closed['owned'] == ['/remote_motor']
            assert closed['live'] == [ready['local']]
            assert closed['local_active'] and closed['local_duty'] == pytest.approx(0.3)
            assert closed['client_lost'].startswith('closed by robot')
            # The window is 10 s: the stop comes from the connectivity watch, not expiry.
            stop_after_link_down_s = (closed['stop_t_ns'] - link_down_ns) * 1e-9
            print(f'link down -> remote motor at PWM 0: {stop_after_link_down_s * 1e3:.1f} ms')
            assert stop_after_link_down_s < 5.0
            assert 'lost connectivity' in _next(lines, 'refused')['reason']

            pair.set_link(pair.b.ns, pair.b.dev, up=True)
            process.stdin.write('up\n')
            process.stdin.flush()
            assert _next(lines, 'restarted')['result']['event'] == 'started'
        finally:
            process.stdin.close()
            process.wait(timeout=60)
            log.close()
            print((tmp_path / 'scenario.log').read_text())
