"""Drive a `remote_robot` scenario process in namespace `a`: commands in, JSON lines out."""

import json
import os
from pathlib import Path
import queue
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

from viam_session_harness.netfault.impaired_pair import ImpairedPair

__all__ = ['RemoteRobotProcess']


class RemoteRobotProcess:
    """
    A scenario process in the pair's namespace `a` whose clients run in namespace `b`.

    By default `python -m viam_session_harness.netfault.remote_robot B_NS WINDOW_S` (the fault
    tests);
    `scenario` names another module and its arguments after the client namespace (the fleet
    robot of `bench/stop_latency.py`: `['viam_session_harness.netfault.fleet_robot', '--motors',
    '32']`).
    """

    def __init__(self, *, pair: ImpairedPair, window_s: float, log_path: Path, domain_id: int,
                 deadline_s: float, scenario: Optional[Sequence[str]] = None) -> None:
        self._log = open(log_path, 'w', encoding='utf-8')
        self._deadline_s = deadline_s
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id))
        module, *arguments = scenario or [
            'viam_session_harness.netfault.remote_robot', str(window_s)]
        self.process = pair.run(
            pair.a.ns, [sys.executable, '-m', module, pair.b.ns, *arguments], env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self._lines: 'queue.Queue[dict]' = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for text in self.process.stdout:
            try:
                self._lines.put(json.loads(text))
            except json.JSONDecodeError:
                pass

    def expect(self, event: str, *others: str) -> dict:
        """Return the next line of `event` or of one of `others`; TimeoutError at the deadline."""
        deadline = time.monotonic() + self._deadline_s
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise TimeoutError(f'no {event!r} from the scenario within {self._deadline_s} s '
                                   f'(rc {self.process.poll()})') from None
            if line['event'] == event or line['event'] in others:
                return line

    def send(self, command: str) -> None:
        """Write one command line to the scenario."""
        self.process.stdin.write(command + '\n')
        self.process.stdin.flush()

    def close(self) -> None:
        """Close its stdin (it then ends) and wait; kill it if it does not end in time."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()
