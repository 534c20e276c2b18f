"""
The impairment link: a forwarder process joining two TAP devices, dropping and delaying frames.

This kernel has no netem qdisc and no tc actions, so loss and delay are made in user space. Each
namespace of an `ImpairedPair` holds a persistent TAP device; the forwarder opens both and copies
every Ethernet frame from one to the other, both ways. Each frame is dropped with probability
`loss`, drawn from `random.Random(seed)` (one law for both directions, in arrival order), and
the frames that survive are written `delay_s` after they were read, in order: a heap of due
times, and `select.poll` with a timeout until the earliest one (no busy loop).

How a TAP of another namespace is opened: `TUNSETIFF` looks the device name up in the network
namespace of the calling thread. At start-up, before it has any other thread, the forwarder
enters each namespace in turn with `setns(2)` (through ctypes: Python 3.11 has no os.setns),
opens `/dev/net/tun` and attaches it to that namespace's TAP, then returns to its own
namespace. An attached file descriptor stays bound to its device wherever the process runs.

Run as `python -m viam_session_harness.netfault.impairment NS_A TAP_A NS_B TAP_B [--seed N]
[--loss P] [--delay S]`. It prints `ready` once both TAPs are open, then reads commands on
stdin, one per line, and answers each with one line:

    set LOSS DELAY_S   ->  ok            (e.g. `set 0.3 0.1`; applies to frames read from now on)
    stats              ->  {"forwarded": .., "dropped": .., "loss": .., "delay_s": ..}
    liveliness [GUID..] ->  {WRITER_GUID: {"delivered": .., "dropped": .., "last": ..,
                            "max_gap_s": .., "max_gap_end": .., "recent": [..]}, ..}
                            (of the writers named, or of every writer)

`liveliness` is what the far side really received of each MANUAL_BY_TOPIC writer's liveliness
assertions (`rtps_liveliness`): per writer, assertions written out and dropped, the time of the
last one written (CLOCK_MONOTONIC, which every namespace shares), the longest gap between two
written ones and when it ended, and the times of the last RECENT written.

It exits when stdin closes (so it never outlives its owner's pipe), on SIGTERM or SIGINT.
"""

import argparse
from collections import deque
import ctypes
import fcntl
import heapq
import itertools
import json
import os
import random
import select
import signal
import struct
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from viam_session_harness.netfault.rtps_liveliness import liveliness_writers

__all__ = ['Forwarder', 'main', 'open_tap']

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MAX_FRAME = 65536
RECENT = 64


def _enter_namespace(fd: int) -> None:
    """Move the calling thread into the network namespace of `fd` (an open netns file)."""
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f'setns: {os.strerror(error)}')


def open_tap(ns: str, dev: str) -> int:
    """Return a non-blocking fd attached to TAP `dev` of namespace `ns` (see module doc)."""
    home = os.open('/proc/thread-self/ns/net', os.O_RDONLY)
    target = os.open(f'/var/run/netns/{ns}', os.O_RDONLY)
    try:
        _enter_namespace(target)
        fd = os.open('/dev/net/tun', os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', dev.encode(), IFF_TAP | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
        return fd
    finally:
        _enter_namespace(home)
        os.close(target)
        os.close(home)


class Forwarder:
    """Copies frames between two fds, each dropped with probability `loss`, delayed `delay_s`."""

    def __init__(self, fd_a: int, fd_b: int, *, seed: int, loss: float = 0.0,
                 delay_s: float = 0.0) -> None:
        self._peer = {fd_a: fd_b, fd_b: fd_a}
        self._random = random.Random(seed)
        self._queue: List[Tuple[float, int, int, bytes]] = []
        self._serial = itertools.count()
        self.loss = 0.0
        self.delay_s = 0.0
        self.configure(loss, delay_s)
        self.forwarded = 0
        self.dropped = 0
        self._liveliness: Dict[str, Dict[str, Any]] = {}

    def configure(self, loss: float, delay_s: float) -> None:
        """Change the drop probability and the delay for frames read from now on."""
        if not 0.0 <= loss <= 1.0 or delay_s < 0.0:
            raise ValueError(f'need 0 <= loss <= 1 and delay >= 0, got {loss}, {delay_s}')
        self.loss, self.delay_s = loss, delay_s

    def stats(self) -> Dict[str, float]:
        return {'forwarded': self.forwarded, 'dropped': self.dropped, 'loss': self.loss,
                'delay_s': self.delay_s}

    def liveliness(self, writers: Optional[List[str]] = None) -> Dict[str, Dict[str, Any]]:
        """Return, per writer (those named, or all), the assertions written and dropped."""
        return {writer: dict(record, recent=list(record['recent']))
                for writer, record in self._liveliness.items()
                if writers is None or writer in writers}

    def _record(self, frame: bytes, now: float, *, delivered: bool) -> None:
        for writer in liveliness_writers(frame):
            record = self._liveliness.setdefault(writer, {
                'delivered': 0, 'dropped': 0, 'last': None, 'max_gap_s': 0.0,
                'max_gap_end': None, 'recent': deque(maxlen=RECENT)})
            if not delivered:
                record['dropped'] += 1
                continue
            if record['last'] is not None and now - record['last'] > record['max_gap_s']:
                record['max_gap_s'], record['max_gap_end'] = now - record['last'], now
            record['delivered'] += 1
            record['last'] = now
            record['recent'].append(now)

    def timeout_ms(self) -> Optional[int]:
        """Return how long poll may sleep: until the earliest queued frame is due, or forever."""
        if not self._queue:
            return None
        return max(0, int((self._queue[0][0] - time.monotonic()) * 1000.0 + 0.999))

    def read(self, fd: int) -> None:
        """Read every frame waiting on `fd`; drop or queue each one."""
        while True:
            try:
                frame = os.read(fd, MAX_FRAME)
            except BlockingIOError:
                return
            except OSError:
                return  # the device went away or down: nothing to read
            if self._random.random() < self.loss:
                self.dropped += 1
                self._record(frame, time.monotonic(), delivered=False)
                continue
            due = time.monotonic() + self.delay_s
            heapq.heappush(self._queue, (due, next(self._serial), self._peer[fd], frame))

    def flush(self) -> None:
        """Write every frame whose due time has come."""
        now = time.monotonic()
        while self._queue and self._queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(self._queue)
            try:
                os.write(out, frame)
                self.forwarded += 1
                self._record(frame, now, delivered=True)
            except OSError:
                self.dropped += 1  # the other TAP is down: the frame is lost, as on a wire
                self._record(frame, now, delivered=False)


def _command(forwarder: Forwarder, line: str) -> str:
    words = line.split()
    try:
        if words[:1] == ['set'] and len(words) == 3:
            forwarder.configure(float(words[1]), float(words[2]))
            return 'ok'
        if words == ['stats']:
            return json.dumps(forwarder.stats())
        if words[:1] == ['liveliness']:
            return json.dumps(forwarder.liveliness(words[1:] or None))
    except ValueError as error:
        return f'error {error}'
    return f'error unknown command {line.strip()!r}'


def serve(forwarder: Forwarder, taps: Tuple[int, int]) -> None:
    """Forward until stdin closes; answer the commands read from stdin."""
    poller = select.poll()
    for fd in taps:
        poller.register(fd, select.POLLIN)
    control = sys.stdin.fileno()
    poller.register(control, select.POLLIN)
    pending = b''
    while True:
        for fd, _ in poller.poll(forwarder.timeout_ms()):
            if fd != control:
                forwarder.read(fd)
                continue
            data = os.read(control, 4096)
            if not data:
                return
            pending += data
            while b'\n' in pending:
                line, pending = pending.split(b'\n', 1)
                print(_command(forwarder, line.decode()), flush=True)
        forwarder.flush()


def _stop(*_: object) -> None:
    raise SystemExit(0)


def main(argv: Optional[List[str]] = None) -> int:
    """Open the two TAPs, print `ready`, forward until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('ns_a')
    parser.add_argument('tap_a')
    parser.add_argument('ns_b')
    parser.add_argument('tap_b')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--loss', type=float, default=0.0)
    parser.add_argument('--delay', type=float, default=0.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    taps = (open_tap(args.ns_a, args.tap_a), open_tap(args.ns_b, args.tap_b))
    forwarder = Forwarder(*taps, seed=args.seed, loss=args.loss, delay_s=args.delay)
    print('ready', flush=True)
    serve(forwarder, taps)
    return 0


if __name__ == '__main__':
    sys.exit(main())
