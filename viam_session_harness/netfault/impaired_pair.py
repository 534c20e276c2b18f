"""
Two network namespaces joined by an impairment link: a TAP device in each and a forwarder.

`ImpairedPair` is a `NetnsPair` whose link is not a veth pair but two persistent TAP devices,
one created inside each namespace, joined by the forwarder process of `impairment.py` (which
runs in the machine's own namespace and holds no address). The ends are addressed in a private
/24 (10.214.0.1 and 10.214.0.2 by default) with MTU 1500. `set_impairment(loss=, delay_s=)`
changes the drop probability and the one-way delay at run time; `set_link()` takes a TAP down
(link down: nothing crosses); `stats()` returns the forwarder's counters, `liveliness()` what
crossed of each MANUAL_BY_TOPIC writer's liveliness assertions.

Cleanup: leaving the `with` block (also on an exception or KeyboardInterrupt) closes the
forwarder's stdin, which ends it, kills whatever still runs in the namespaces and deletes them,
which deletes the TAPs. The forwarder also ends by itself if its owner dies, because its stdin
closes then. Programs that must clean up on SIGTERM turn it into KeyboardInterrupt.
"""

import json
import subprocess
import sys
from typing import Any, Dict, Optional, Sequence

from viam_session_harness.netfault.netns import ip, NetnsError, NetnsPair

__all__ = ['ImpairedPair']

READY_TIMEOUT_S = 30.0


class ImpairedPair(NetnsPair):
    """Namespaces `a` and `b` joined by two TAPs and a forwarder; a context manager."""

    def __init__(self, *, prefix: str = 'vi', network: str = '10.214.0.0/24', seed: int = 1,
                 mtu: int = 1500) -> None:
        super().__init__(prefix=prefix, network=network)
        self.seed = seed
        self.mtu = mtu
        self._forwarder: Optional[subprocess.Popen] = None

    def _create_link(self) -> None:
        for end in self.endpoints:
            ip('tuntap', 'add', 'dev', end.dev, 'mode', 'tap', ns=end.ns)
            ip('link', 'set', 'dev', end.dev, 'mtu', str(self.mtu), ns=end.ns)
        self._forwarder = subprocess.Popen(
            [sys.executable, '-m', 'viam_session_harness.netfault.impairment',
             self.a.ns, self.a.dev, self.b.ns, self.b.dev, '--seed', str(self.seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._reply()
        if line != 'ready':
            raise NetnsError(f'impairment forwarder did not start: {line!r}')

    def _reply(self) -> str:
        assert self._forwarder is not None and self._forwarder.stdout is not None
        line = self._forwarder.stdout.readline()
        if not line:
            raise NetnsError(f'impairment forwarder ended (rc {self._forwarder.wait()})')
        return line.strip()

    def _send(self, command: str) -> str:
        if self._forwarder is None or self._forwarder.stdin is None:
            raise NetnsError('the impairment link is not running')
        self._forwarder.stdin.write(command + '\n')
        self._forwarder.stdin.flush()
        return self._reply()

    def set_impairment(self, *, loss: float = 0.0, delay_s: float = 0.0) -> None:
        """Drop each frame read from now on with probability `loss`; delay the rest `delay_s`."""
        answer = self._send(f'set {loss!r} {delay_s!r}')
        if answer != 'ok':
            raise ValueError(answer)

    def stats(self) -> Dict[str, float]:
        """Return the forwarder's counters: frames forwarded and dropped, loss, delay."""
        return json.loads(self._send('stats'))

    def liveliness(self, writers: Sequence[str] = ()) -> Dict[str, Dict[str, Any]]:
        """Return what crossed of each writer's (or these writers') assertions (`impairment`)."""
        return json.loads(self._send(' '.join(['liveliness', *writers])))

    def close(self) -> None:
        """Stop the forwarder, then remove the namespaces (see NetnsPair.close)."""
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is not None:
            forwarder.stdin.close()
            try:
                forwarder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                forwarder.kill()
                forwarder.wait()
            forwarder.stdout.close()
        super().close()
