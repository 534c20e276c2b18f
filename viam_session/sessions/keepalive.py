"""
Keep-alives for self-protecting drivers, from a thread of their own.

While a live session drives an actuator, the session manager re-sends its last command every
period, so the driver's command watchdog keeps it running; the commands go out on a publisher
whose liveliness lease is a few periods, so the driver stops by itself when they stop.

Why a thread of its own. On the manager's executor, keep-alives wait behind whatever the
executor does first: when a thousand sessions expire together it runs a thousand posted
liveliness deliveries and publishes a thousand events before its timers are looked at again,
and the drivers' watchdogs stopped a live session's motor for up to 1.7 s (measured with
`bench/mass_expiry.py`). Here a plain thread sends them, as the client library does with its
heartbeats.

Why a lapse ends them. Each actuator has a lapse time: how long its driver may go without a
command before its watchdog may have stopped it (the manager derives it from the liveliness
lease the driver's subscription requests, which is its `command_timeout_s`). If a round comes
later than that after the one before (the manager was frozen or starved), the driver may have
stopped, and sessions may have expired without the manager knowing yet: on SIGCONT after a
SIGSTOP longer than a window, a keep-alive used to reach the driver before the pending
liveliness loss was handled, and the motor of a session that was over ran again for a few
milliseconds. So a lapsed actuator is not sent anything more: it is left to its watchdog
(safe), `on_lapse` is told, and only its owner's next command drives it again, once the
manager has caught up with what happened meanwhile. Nothing else is waited for, so this does
not depend on how soon the pending events arrive.

`KeepAliveRounds` decides (ROS-free, clock injected); `KeepAlives` runs it in a thread.
"""

import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ['KeepAliveRounds', 'KeepAlives', 'Send']

Send = Callable[[float], None]


class KeepAliveRounds:
    """What to re-send each round, and when a round came too late to re-send anything."""

    def __init__(self) -> None:
        self._driven: Dict[str, Tuple[Send, float, float]] = {}
        self._last_round: Optional[float] = None

    def drive(self, name: str, send: Send, value: float, *, now: float,
              lapse_s: float) -> None:
        """
        Keep `name` at `value` (just sent), unless a round comes more than `lapse_s` late.

        The first driven actuator starts the rounds.
        """
        if not self._driven:
            self._last_round = now
        self._driven[name] = (send, value, lapse_s)

    def release(self, name: str) -> bool:
        """Send nothing more for `name`; return whether it was driven."""
        return self._driven.pop(name, None) is not None

    def release_all(self) -> None:
        self._driven.clear()

    @property
    def driven(self) -> List[str]:
        return sorted(self._driven)

    def take_round(self, now: float) -> Tuple[List[Tuple[Send, float]], List[str]]:
        """
        Return (what to send now, what lapsed).

        An actuator whose lapse time is shorter than the time since the previous round
        lapses: it is released and sent nothing.
        """
        gap = 0.0 if self._last_round is None else now - self._last_round
        self._last_round = now
        lapsed = sorted(name for name, (_, _, lapse_s) in self._driven.items() if gap > lapse_s)
        for name in lapsed:
            del self._driven[name]
        return [(send, value) for send, value, _ in self._driven.values()], lapsed


class KeepAlives:
    """
    Run `KeepAliveRounds` every `period_s` in a daemon thread.

    `on_lapse(names, gap_s)` is told which actuators lapsed and how long the gap was.

    `drive`, `release`, `release_all` and `close` may be called from any thread;
    `on_lapse(names, late_s)` is called from the keep-alive thread after a lapse (post it to
    the owner's thread). The thread sleeps while nothing is driven.
    """

    def __init__(self, *, period_s: float, on_lapse: Callable[[List[str], float], None],
                 clock: Callable[[], float] = time.monotonic, name: str = 'keepalives') -> None:
        self.period_s = period_s
        self._rounds = KeepAliveRounds()
        self._on_lapse = on_lapse
        self._clock = clock
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def drive(self, name: str, send: Send, value: float, *, lapse_s: float) -> None:
        """Re-send `value` with `send` every period from now on (it was just sent)."""
        with self._changed:
            if self._closed:
                return
            self._rounds.drive(name, send, value, now=self._clock(), lapse_s=lapse_s)
            self._changed.notify_all()

    def release(self, name: str) -> None:
        """Stop re-sending for `name`; once this returns, nothing more is sent for it."""
        with self._changed:
            self._rounds.release(name)

    def release_all(self) -> None:
        with self._changed:
            self._rounds.release_all()

    def close(self) -> None:
        """Stop the thread; nothing is sent once this returns."""
        with self._changed:
            self._closed = True
            self._rounds.release_all()
            self._changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed and not self._rounds.driven:
                    self._changed.wait()
                if self._closed:
                    return
                due = self._clock() + self.period_s
                while not self._closed and self._clock() < due:
                    self._changed.wait(max(due - self._clock(), 0.0))
                if self._closed:
                    return
                now = self._clock()
                gap_s = now - due + self.period_s
                sends, lapsed = self._rounds.take_round(now)
                # Sent under the lock: a release() that returned has sent its last.
                for send, value in sends:
                    send(value)
            if lapsed:
                self._on_lapse(lapsed, gap_s)
