"""
Lifecycle driver of a board that other drivers run on: its enable (standby) line, if any.

A motor or servo board (for example an H-bridge's STBY pin shared by two motors, or a servo
power relay) is enabled while the node is active and disabled on every way out of active (see
`drivers.base`); nodes that depend on it (`depends_on` in the robot description) start after
it and are deactivated when it dies. `enable_line` -1 claims nothing: the node then only orders
its dependents. State on `~/joint_state` (sensor_msgs/JointState, position 1.0 enabled).
"""

import math
import sys
from typing import Any, Dict, List, Optional, Tuple

from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn

from viam_session.chips import Chip, ChipError
from viam_session.driver_parameters import BOARD
from viam_session.drivers.base import Device, LifecycleDriver, run_driver
from viam_session.drivers.gpio_output_core import GpioOutput
from viam_session.parameters import declare

__all__ = ['BoardDriver', 'main']


class _NoLine:
    """A board without an enable line: nothing to claim or drive."""

    value = False

    def claim(self) -> None:
        """Claim nothing."""

    def set_value(self, value: bool) -> None:
        """Drive nothing."""

    def stop(self) -> None:
        """Stop nothing."""

    def release(self) -> None:
        """Release nothing."""


class BoardDriver(LifecycleDriver):
    """A lifecycle node that holds a board's enable line on while active."""

    def __init__(self, node_name: str = 'board', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._enable_line = declare(self, BOARD['enable_line'])
        self._active_level = declare(self, BOARD['active_level'])

    def create_device(self, chip: Chip) -> Device:
        if self._enable_line < 0:
            return _NoLine()
        return GpioOutput(chip=chip, line=self._enable_line, active_level=self._active_level)

    def active_levels(self) -> Dict[int, int]:
        return {self._enable_line: self._active_level} if self._enable_line >= 0 else {}

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            try:
                if self._device is not None and not self._exiting:   # else refused below
                    self._device.set_value(True)
            except ChipError as error:
                self.get_logger().error(f'cannot enable the board: {error}')
                return TransitionCallbackReturn.ERROR    # on_error releases what it can
        return super().on_activate(state)

    def joint_values(self) -> Tuple[float, float, float]:
        with self._lock:
            value = self._device.value if self._device is not None else False
        return float(value), math.nan, math.nan


def main(args: Optional[List[str]] = None) -> int:
    """Run the driver until SIGINT/SIGTERM; the board is disabled on every way out."""
    return run_driver(BoardDriver, args)


if __name__ == '__main__':
    sys.exit(main())
