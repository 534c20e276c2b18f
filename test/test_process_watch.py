"""ProcessExitWatch: one report per exited child, as it exits; the exit status left to read."""

import queue
import signal
import subprocess
import sys
from typing import Iterator, Tuple

import pytest

from viam_session.supervisor.process_watch import ProcessExitWatch

TIMEOUT_S = 30.0


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])


@pytest.fixture
def watch() -> Iterator[Tuple[ProcessExitWatch, 'queue.Queue[Tuple[str, int]]']]:
    reports: 'queue.Queue[Tuple[str, int]]' = queue.Queue()
    process_watch = ProcessExitWatch(lambda key, pid: reports.put((key, pid)))
    yield process_watch, reports
    process_watch.close()


def test_a_killed_child_is_reported_once_and_left_unreaped(watch) -> None:
    process_watch, reports = watch
    victim, bystander = _sleeper(), _sleeper()
    try:
        process_watch.watch('victim', victim.pid)
        process_watch.watch('bystander', bystander.pid)
        victim.send_signal(signal.SIGKILL)
        assert reports.get(timeout=TIMEOUT_S) == ('victim', victim.pid)
        assert victim.poll() == -signal.SIGKILL    # the owner still reads the exit status
        bystander.terminate()
        assert reports.get(timeout=TIMEOUT_S) == ('bystander', bystander.pid)
        assert reports.empty()
    finally:
        for process in (victim, bystander):
            process.kill()
            process.wait()


def test_a_child_reaped_before_it_is_watched_is_reported_at_once(watch) -> None:
    process_watch, reports = watch
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    process_watch.watch('quick', process.pid)
    assert reports.get(timeout=TIMEOUT_S) == ('quick', process.pid)
