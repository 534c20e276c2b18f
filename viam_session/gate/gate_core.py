"""
What a session gate decides: relay or drop, open or closed, and how many zeros to send (no ROS).

ROS-free apart from the message types. The gate relays a command message only while it is
active (lifecycle) and open (its command stream says so). Every close of an open gate, and
every way out of active, starts a *zero burst*: a zero command at once, then one per period
of `zero_rate_hz` until `zero_duration_s` has passed, during which input is dropped; so a
downstream controller with a timeout of its own (diff_drive_controller's `cmd_vel_timeout`)
sees a clean stop instead of silence. Opening the gate again ends the burst.

Zero of each message type: Twist all zero; TwistStamped all zero with the `frame_id` of the
last relayed message; Float64 0.0; Float64MultiArray as many zeros as the last relayed
message had, with its layout. Before anything was relayed, a Float64MultiArray has no known
length and no zero is sent: nothing went through the gate that would need stopping.
"""

import math
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Optional

from geometry_msgs.msg import Twist, TwistStamped
from std_msgs.msg import Float64, Float64MultiArray

__all__ = ['GateCore', 'MESSAGE_TYPES', 'message_values', 'zero_like']

MESSAGE_TYPES: Mapping[str, type] = MappingProxyType({
    'twist': Twist, 'twist_stamped': TwistStamped, 'float64': Float64,
    'float64_multi_array': Float64MultiArray})


def message_values(message: Any) -> Iterable[float]:
    """Return the numbers a command message carries."""
    if isinstance(message, TwistStamped):
        message = message.twist
    if isinstance(message, Twist):
        return (message.linear.x, message.linear.y, message.linear.z,
                message.angular.x, message.angular.y, message.angular.z)
    if isinstance(message, Float64):
        return (message.data,)
    return tuple(message.data)


def zero_like(kind: str, last: Optional[Any]) -> Optional[Any]:
    """Return the zero command of `kind`, shaped like `last`; None if its shape is unknown."""
    if kind == 'twist_stamped':
        zero = TwistStamped()
        if last is not None:
            zero.header.frame_id = last.header.frame_id
        return zero
    if kind == 'float64_multi_array':
        if last is None:
            return None
        return Float64MultiArray(layout=last.layout, data=[0.0] * len(last.data))
    return MESSAGE_TYPES[kind]()


class GateCore:
    """The gate's state; the node wraps it, stamps zeros and runs the burst timer."""

    def __init__(self, *, kind: str, zero_rate_hz: float, zero_duration_s: float) -> None:
        """Check the settings; raise ValueError naming a bad one."""
        if kind not in MESSAGE_TYPES:
            raise ValueError(f'message_type must be one of {", ".join(MESSAGE_TYPES)}, '
                             f'got {kind!r}')
        if not (math.isfinite(zero_rate_hz) and zero_rate_hz > 0):
            raise ValueError(f'zero_rate_hz must be > 0, got {zero_rate_hz}')
        if not (math.isfinite(zero_duration_s) and zero_duration_s >= 0):
            raise ValueError(f'zero_duration_s must be >= 0, got {zero_duration_s}')
        self.kind = kind
        self.zero_period_s = 1.0 / zero_rate_hz
        # A zero at once, then one each period up to zero_duration_s.
        self.zeros_per_burst = int(math.floor(zero_duration_s * zero_rate_hz + 1e-9)) + 1
        self.active = False
        self.open = False
        self.zeros_left = 0
        self.relayed = 0
        self.zeros_sent = 0
        self.last_relayed: Optional[Any] = None
        self.closed_because = 'not opened yet'

    @property
    def relaying(self) -> bool:
        """Return whether input goes through now."""
        return self.active and self.open and self.zeros_left == 0

    def set_active(self, active: bool, reason: str) -> bool:
        """Enter or leave active (closed either way); True if a zero burst starts."""
        self.active = active
        self.open = False
        if active:
            return False
        return self._start_burst(reason)

    def command(self, value: float) -> bool:
        """Open (value != 0) or close (0); raise ValueError if not finite; True if zeros start."""
        if not math.isfinite(value):
            raise ValueError(f'gate command must be finite, got {value}')
        if value != 0.0:
            if self.active:
                self.open = True
                self.zeros_left = 0
            return False
        return self.close('closed by its command stream')

    def close(self, reason: str) -> bool:
        """Close an open gate; True if a zero burst starts (the gate was open)."""
        if not self.open:
            return False
        self.open = False
        return self._start_burst(reason)

    def accept(self, message: Any) -> bool:
        """Return whether to relay `message`; raise ValueError for non-finite values."""
        bad = [value for value in message_values(message) if not math.isfinite(value)]
        if bad:
            raise ValueError(f'input has non-finite values {bad}')
        if not self.relaying:
            return False
        self.relayed += 1
        self.last_relayed = message
        return True

    def next_zero(self) -> Optional[Any]:
        """Return the burst's next zero command, or None once the burst is over."""
        if self.zeros_left == 0:
            return None
        self.zeros_left -= 1
        zero = zero_like(self.kind, self.last_relayed)
        if zero is None:
            self.zeros_left = 0
            return None
        self.zeros_sent += 1
        return zero

    def _start_burst(self, reason: str) -> bool:
        self.closed_because = reason
        self.zeros_left = self.zeros_per_burst
        return True
