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
(safe) and `on_lapse` is told; what drives it again is the owner's decision (the session
manager: the owner's next command, or one window of the owner's session later if the session
is still live then; see docs/design.md).

`KeepAliveRounds` decides (ROS-free, clock injected); `KeepAlives` runs it in a thread.
"""

import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ['KeepAliveRounds', 'KeepAlives', 'LapsedActuators', 'Send']

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

    def gap_s(self, now: float) -> float:
        """Return the time from the previous round (or the first drive) to `now`."""
        return 0.0 if self._last_round is None else now - self._last_round

    def take_round(self, now: float) -> Tuple[List[Tuple[Send, float]], Dict[str, float]]:
        """
        Return (what to send now, what lapsed: name -> its last value).

        An actuator whose lapse time is shorter than the time since the previous round
        lapses: it is released and sent nothing.
        """
        gap = self.gap_s(now)
        self._last_round = now
        lapsed = {name: value for name, (_, value, lapse_s) in sorted(self._driven.items())
                  if gap > lapse_s}
        for name in lapsed:
            del self._driven[name]
        return [(send, value) for send, value, _ in self._driven.values()], lapsed


class KeepAlives:
    """
    Run `KeepAliveRounds` every `period_s` in a daemon thread.

    `on_lapse(lapsed, gap_s)` is told which actuators lapsed, with their last values, and how
    long the gap was.

    `drive`, `release`, `release_all` and `close` may be called from any thread;
    `on_lapse` is called from the keep-alive thread (post it to the owner's thread). The
    thread sleeps while nothing is driven.
    """

    def __init__(self, *, period_s: float, on_lapse: Callable[[Dict[str, float], float], None],
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
                # What lapses is judged on this gap: the sleep, and the sends and the waits for
                # the lock and the interpreter since the previous round.
                gap_s = self._rounds.gap_s(now)
                sends, lapsed = self._rounds.take_round(now)
                # Sent under the lock: a release() that returned has sent its last.
                for send, value in sends:
                    send(value)
            if lapsed:
                self._on_lapse(lapsed, gap_s)


class LapsedActuators:
    """
    Actuators whose keep-alives lapsed, and when each may be driven again (ROS-free).

    One window of its owner's session after the lapse was handled, if that session still owns
    it then: by that time every loss of liveliness that was due during the stall has been
    reported. A later lapse (the manager stalled again) restarts every wait.
    """

    def __init__(self) -> None:
        # name -> (owner session id, value to drive, owner's window, when it may resume)
        self._lapsed: Dict[str, Tuple[str, float, float, float]] = {}

    def add(self, name: str, owner: str, value: float, *, window_s: float,
            now: float) -> None:
        for other, (other_owner, other_value, other_window_s, _) in list(self._lapsed.items()):
            self._lapsed[other] = (other_owner, other_value, other_window_s, now + other_window_s)
        self._lapsed[name] = (owner, value, window_s, now + window_s)

    def discard(self, name: str) -> None:
        """Forget `name`: its owner commanded it again, or the manager stopped it."""
        self._lapsed.pop(name, None)

    def next_resume(self) -> Optional[float]:
        return min((entry[3] for entry in self._lapsed.values()), default=None)

    def take_due(self, now: float,
                 owner_of: Callable[[str], Optional[str]]) -> List[Tuple[str, float]]:
        """Remove what is due; return (name, value) of those their owner still owns."""
        due = [name for name, entry in self._lapsed.items() if entry[3] <= now]
        resumed = []
        for name in due:
            owner, value, _, _ = self._lapsed.pop(name)
            if owner_of(name) == owner:
                resumed.append((name, value))
        return resumed
