"""
Lifecycle driver of a quadrature encoder on two input lines.

Edges are counted (x4) from on_configure on; while active, the position (radians, from
`counts_per_revolution`) and the velocity (radians per second over the last period) are
published `publish_rate_hz` times a second as sensor_msgs/JointState on `~/joint_state`.
"""

import math
import sys
import time
from typing import Any, List, Optional, Tuple

from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn

from viam_session.chips import Chip
from viam_session.driver_parameters import ENCODER
from viam_session.drivers.base import LifecycleDriver, run_driver
from viam_session.drivers.quadrature import QuadratureEncoder
from viam_session.parameters import declare

__all__ = ['EncoderDriver', 'main']


class EncoderDriver(LifecycleDriver):
    """A lifecycle node that owns one quadrature encoder."""

    def __init__(self, node_name: str = 'encoder', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._a_line = declare(self, ENCODER['a_line'])
        self._b_line = declare(self, ENCODER['b_line'])
        self._counts_per_revolution = declare(self, ENCODER['counts_per_revolution'])
        rate_hz = declare(self, ENCODER['publish_rate_hz'])
        self._position_velocity = (0.0, 0.0)
        self._timer = self.create_timer(1.0 / rate_hz, self._on_timer,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._timer.cancel()

    def create_device(self, chip: Chip) -> QuadratureEncoder:
        return QuadratureEncoder(chip=chip, a_line=self._a_line, b_line=self._b_line,
                                 counts_per_revolution=self._counts_per_revolution)

    def joint_values(self) -> Tuple[float, float, float]:
        position, velocity = self._position_velocity
        return position, velocity, math.nan

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._sample()
        result = super().on_activate(state)
        self._timer.reset()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._timer.cancel()
        return super().on_deactivate(state)

    def _on_timer(self) -> None:
        with self._lock:
            if not self._active:
                return
            self._sample()
        self.publish_state()

    def _sample(self) -> None:
        with self._lock:
            if self._device is not None:
                self._position_velocity = self._device.sample(time.monotonic_ns())


def main(args: Optional[List[str]] = None) -> int:
    """Run the driver until SIGINT/SIGTERM; the lines are released on every way out."""
    return run_driver(EncoderDriver, args)


if __name__ == '__main__':
    sys.exit(main())
