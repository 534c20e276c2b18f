"""
Lifecycle driver of one digital input line: a switch, a bumper, a limit switch.

The line is claimed in on_configure and watched for edges from then on; while active, every
change is published at once, stamped with the edge's time, as sensor_msgs/JointState on
`~/joint_state` (position 1.0 active, 0.0 not) and std_msgs/Bool on `~/state` (transient
local: a late subscriber gets the value now). `active_level` is the line level that means
active (0 for a switch to ground with a pull-up).
"""

import math
import sys
from typing import Any, Dict, List, Optional, Tuple

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from viam_session.chips import Chip
from viam_session.driver_parameters import DIGITAL_INPUT
from viam_session.drivers.base import LifecycleDriver, run_driver
from viam_session.drivers.digital_input_core import DigitalInput
from viam_session.parameters import declare

__all__ = ['DigitalInputDriver', 'main']

STATE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)


class DigitalInputDriver(LifecycleDriver):
    """A lifecycle node that owns one input line."""

    def __init__(self, node_name: str = 'digital_input', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._line = declare(self, DIGITAL_INPUT['line'])
        self._active_level = declare(self, DIGITAL_INPUT['active_level'])
        self._bool_publisher = self.create_lifecycle_publisher(Bool, '~/state', STATE_QOS)

    def create_device(self, chip: Chip) -> DigitalInput:
        return DigitalInput(chip=chip, line=self._line, active_level=self._active_level,
                            on_change=self._on_change)

    def active_levels(self) -> Dict[int, int]:
        return {self._line: self._active_level}

    def joint_values(self) -> Tuple[float, float, float]:
        with self._lock:
            value = self._device.value if self._device is not None else False
        return float(value), math.nan, math.nan

    def publish_state(self, t_ns: Optional[int] = None) -> None:
        super().publish_state(t_ns)
        position = self.joint_values()[0]
        self._bool_publisher.publish(Bool(data=position == 1.0))

    def _on_change(self, value: bool, t_ns: int) -> None:
        if self._active:  # a message published just after deactivation is dropped by rclpy
            self.publish_state(t_ns)


def main(args: Optional[List[str]] = None) -> int:
    """Run the driver until SIGINT/SIGTERM; the line is released on every way out."""
    return run_driver(DigitalInputDriver, args)


if __name__ == '__main__':
    sys.exit(main())
