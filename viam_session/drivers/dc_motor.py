"""
Lifecycle driver of a DC motor behind an H-bridge (PWM line + direction line).

Lines are claimed in on_configure, commands (`~/command`, std_msgs/Float64 power in [-1, 1])
move the motor only while active, and every way out of active (deactivate, cleanup, shutdown,
error, SIGINT/SIGTERM, an exception, interpreter exit) stops the motor before it returns.
State is published as sensor_msgs/JointState on `~/joint_state` (effort = applied power).
"""

import atexit
import math
import sys
from typing import List, Optional

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from viam_session.chips import Chip, CHIP_BACKENDS, ChipError, open_chip
from viam_session.drivers.h_bridge import HBridgeMotor
from viam_session.node_runner import run_node
from viam_session.parameters import declare_float, declare_int, declare_string

__all__ = ['DcMotorDriver', 'main']


class DcMotorDriver(LifecycleNode):
    """A lifecycle node that owns one H-bridge motor."""

    def __init__(self, node_name: str = 'dc_motor', **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._backend = declare_string(
            self, 'chip_backend', 'sim', 'GPIO chip backend.', choices=CHIP_BACKENDS)
        self._chip_name = declare_string(
            self, 'chip', '0', 'For lgpio the gpiochip number; for sim the chip directory.')
        self._pwm_line = declare_int(self, 'pwm_line', 12, 'Line carrying PWM to the H-bridge.',
                                     low=0, high=1023)
        self._direction_line = declare_int(
            self, 'direction_line', 16, 'Line selecting direction (1 = reverse).',
            low=0, high=1023)
        self._frequency_hz = declare_float(
            self, 'pwm_frequency_hz', 1000.0, 'PWM frequency.', low=1.0, high=100000.0)
        self._max_duty = declare_float(
            self, 'max_duty', 1.0, 'Duty cycle at power 1.', low=0.01, high=1.0)
        self._joint_name = declare_string(
            self, 'joint_name', self.get_name(), 'Joint name in the published JointState.')
        self._chip: Optional[Chip] = None
        self._motor: Optional[HBridgeMotor] = None
        self._active = False
        self._command_subscription = self.create_subscription(
            Float64, '~/command', self._on_command, 10)
        self._state_publisher = self.create_lifecycle_publisher(JointState, '~/joint_state', 10)
        atexit.register(self.make_safe)

    def make_safe(self) -> None:
        """Stop the motor and release its lines; safe to call at any time, any number of times."""
        self._active = False
        if self._motor is not None:
            try:
                self._motor.release()
            except ChipError as error:
                self.get_logger().error(f'could not stop the motor: {error}')
            self._motor = None
        if self._chip is not None:
            self._chip.close()
            self._chip = None

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        holder = self.get_fully_qualified_name()
        try:
            self._chip = open_chip(self._backend, self._chip_name, holder=holder)
            self._motor = HBridgeMotor(
                chip=self._chip, pwm_line=self._pwm_line, direction_line=self._direction_line,
                pwm_frequency_hz=self._frequency_hz, max_duty=self._max_duty)
            self._motor.claim()
        except (ChipError, ValueError) as error:
            self.get_logger().error(f'configure failed: {error}')
            self._motor = None
            if self._chip is not None:
                self._chip.close()
                self._chip = None
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f'configured: {self._backend} chip {self._chip_name}, PWM line {self._pwm_line}, '
            f'direction line {self._direction_line}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        result = super().on_activate(state)
        self._publish_state()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._motor.stop()
        self.get_logger().info('deactivated: motor stopped (PWM 0, direction low)')
        self._publish_state()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.make_safe()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.make_safe()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.make_safe()
        return TransitionCallbackReturn.SUCCESS

    def _on_command(self, message: Float64) -> None:
        if not self._active:
            self.get_logger().warning(
                'command ignored: driver is not active', throttle_duration_sec=1.0)
            return
        try:
            self._motor.set_power(message.data)
        except ValueError as error:
            self.get_logger().warning(f'command rejected: {error}', throttle_duration_sec=1.0)
            return
        self._publish_state()

    def _publish_state(self) -> None:
        power = self._motor.power if self._motor is not None else 0.0
        state = JointState(name=[self._joint_name], position=[math.nan], velocity=[math.nan],
                           effort=[power])
        state.header.stamp = self.get_clock().now().to_msg()
        self._state_publisher.publish(state)


def main(args: Optional[List[str]] = None) -> int:
    """Run the driver until SIGINT/SIGTERM; the motor is stopped on every way out."""
    return run_node(DcMotorDriver, args=args, before_shutdown=DcMotorDriver.make_safe)


if __name__ == '__main__':
    sys.exit(main())
