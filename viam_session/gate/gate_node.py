"""
The session gate: a lifecycle node that lets a session's commands through to a robot's topic.

    teleop -> /base_gate/input -> [session_gate] -> /cmd_vel -> diff_drive_controller

Input on `~/input` is relayed to `output_topic` (same type, `message_type`) only while the
gate is active and open. The session manager opens it: a client's `SessionCommand` to the
gate's node name is relayed to `~/command` (std_msgs/Float64, != 0 opens, 0 closes) and sent
again every keep-alive period while the session owns the gate; on expiry, end or robot-side
connectivity loss the manager deactivates the gate. Every close of an open gate (command 0,
the command watchdog, the command publisher's liveliness lost) and every way out of active
(deactivate, shutdown, error transition, SIGINT/SIGTERM) publishes a zero command at once and
then zeros at `zero_rate_hz` for `zero_duration_s` from a steady-clock timer, dropping input
meanwhile (see `gate_core` for the zero of each type).

Self-protection as in the drivers (`drivers.base`, `command_timeout_s`): the command
subscription requests liveliness AUTOMATIC with lease `command_timeout_s`, and a watchdog
closes the gate when no valid command came for that long. `~/alive` serves the lifecycle
supervisor, and a status goes to `/diagnostics` every second: state, relayed and zero counts.
"""

import sys
import threading
from typing import Any, List, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidTopicNameException
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile
from std_msgs.msg import Empty, Float64, Header

from viam_session.driver_parameters import SESSION_GATE
from viam_session.drivers.base import alive_qos
from viam_session.drivers.command_source import resolve_source
from viam_session.drivers.command_watchdog import CommandWatchdog
from viam_session.gate.gate_core import GateCore, MESSAGE_TYPES
from viam_session.lifecycle_node import GuardedLifecycleNode
from viam_session.node_runner import run_node
from viam_session.parameters import declare, declare_command_range

__all__ = ['SessionGate', 'main']

DIAGNOSTICS_PERIOD_S = 1.0
# On SIGTERM the burst is awaited this much longer than zero_duration_s at most.
SHUTDOWN_MARGIN_S = 1.0


class SessionGate(GuardedLifecycleNode):
    """Relay `~/input` to the output topic while active and open; zeros on every close."""

    def __init__(self, node_name: str = 'session_gate', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        kind = declare(self, SESSION_GATE['message_type'])
        self._output_topic = declare(self, SESSION_GATE['output_topic'])
        zero_rate_hz = declare(self, SESSION_GATE['zero_rate_hz'])
        self._zero_duration_s = declare(self, SESSION_GATE['zero_duration_s'])
        self._command_timeout_s = declare(self, SESSION_GATE['command_timeout_s'])
        lease_s = declare(self, SESSION_GATE['liveliness_lease_s'])
        declare_command_range(self, 'session_gate')
        self._core = GateCore(kind=kind, zero_rate_hz=zero_rate_hz,
                              zero_duration_s=self._zero_duration_s)
        message_type = MESSAGE_TYPES[kind]
        # Held for every use of the core: callbacks run on the executor, SIGTERM on main.
        self._lock = threading.Lock()
        self._burst_over = threading.Event()
        self._burst_over.set()
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        try:
            # Not a lifecycle publisher: zeros must go out in every state.
            self._output = self.create_publisher(message_type, self._output_topic,
                                                 QoSProfile(depth=10))
        except InvalidTopicNameException as error:
            raise ValueError(f'output_topic {self._output_topic!r} is not a valid topic name: '
                             f'{error}') from None
        self._alive = self.create_publisher(Empty, '~/alive', alive_qos(lease_s))
        self.create_subscription(message_type, '~/input', self._on_input, QoSProfile(depth=10))
        source = resolve_source(declare(self, SESSION_GATE['command_source']),
                                self.get_namespace())
        self._watchdog = CommandWatchdog(self, Float64, self._on_command,
                                         timeout_s=self._command_timeout_s, on_trip=self._close,
                                         source=source)
        self._zero_timer = self.create_timer(self._core.zero_period_s, self._on_zero_timer,
                                             clock=steady, autostart=False)
        # SIGTERM arrives on the main thread; the burst starts on the executor, woken by this.
        self._shutting_down = self.create_guard_condition(
            lambda: self._leave_active('the gate is shutting down'))
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.get_logger().info(
            f'{kind} gate to {self._output.topic_name}: {self._core.zeros_per_burst} zero(s) '
            f'at {zero_rate_hz:g} Hz on close; command timeout {self._command_timeout_s:g} s')

    def close_safely(self) -> None:
        """Close the gate and send its zeros (SIGINT/SIGTERM); wait, bounded, for the burst."""
        self._burst_over.clear()
        self._shutting_down.trigger()
        self._burst_over.wait(self._zero_duration_s + SHUTDOWN_MARGIN_S)

    # --- lifecycle -----------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._core.set_active(True, '')
        self.get_logger().info('active: closed until its command stream opens it')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._leave_active('deactivated')
        return super().on_deactivate(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._leave_active('shut down')
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._leave_active('error transition')
        return TransitionCallbackReturn.SUCCESS

    # --- callbacks -----------------------------------------------------------------------------

    def _on_input(self, message: Any) -> None:
        with self._lock:
            try:
                relay = self._core.accept(message)
            except ValueError as error:
                self.get_logger().warning(f'input dropped: {error}', throttle_duration_sec=1.0)
                return
            if relay:
                self._output.publish(message)

    def _on_command(self, message: Float64) -> None:
        with self._lock:
            if not self._core.active:
                self.get_logger().warning('command ignored: the gate is not active',
                                          throttle_duration_sec=1.0)
                return
            try:
                zeros = self._core.command(message.data)
            except ValueError as error:
                self.get_logger().warning(f'command rejected: {error}', throttle_duration_sec=1.0)
                return
            if self._core.open:
                self._watchdog.feed()
            else:
                self._watchdog.cancel()
            if zeros:
                self._begin_burst()
            elif self._core.open:
                self._zero_timer.cancel()

    def _on_zero_timer(self) -> None:
        with self._lock:
            self._send_zero()

    # --- closing -------------------------------------------------------------------------------

    def _close(self, reason: str) -> None:
        with self._lock:
            self._watchdog.cancel()
            if self._core.close(reason):
                self.get_logger().warning(f'{reason}: gate closed, sending zeros')
                self._begin_burst()

    def _leave_active(self, reason: str) -> None:
        with self._lock:
            self._watchdog.cancel()
            self._core.set_active(False, reason)
            self._begin_burst()
        self.get_logger().info(f'{reason}: gate closed, sending zeros')

    def _begin_burst(self) -> None:
        """Send the first zero now and the rest from the timer (lock held)."""
        self._zero_timer.cancel()
        self._burst_over.clear()
        if self._send_zero():
            self._zero_timer.reset()

    def _send_zero(self) -> bool:
        """Publish the burst's next zero (lock held); False once the burst is over."""
        zero = self._core.next_zero()
        if zero is not None:
            if hasattr(zero, 'header'):
                zero.header.stamp = self.get_clock().now().to_msg()
            self._output.publish(zero)
        if self._core.zeros_left == 0:
            self._zero_timer.cancel()
            self._burst_over.set()
            return False
        return True

    # --- diagnostics ---------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        with self._lock:
            core = self._core
            if core.relaying:
                message = 'relaying'
            elif core.zeros_left:
                message = f'sending zeros: {core.closed_because}'
            else:
                message = f'closed: {core.closed_because}' if core.active else 'inactive'
            values = [KeyValue(key='output', value=self._output.topic_name),
                      KeyValue(key='message type', value=core.kind),
                      KeyValue(key='relayed', value=str(core.relayed)),
                      KeyValue(key='zeros sent', value=str(core.zeros_sent)),
                      KeyValue(key='commands from', value=self._watchdog.source.describe()),
                      KeyValue(key='lifecycle state',
                               value=self._state_machine.current_state[1])]
        status = DiagnosticStatus(level=DiagnosticStatus.OK,
                                  name=f'{self.get_fully_qualified_name()}: session gate',
                                  message=message, hardware_id='', values=values)
        self._diagnostics.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))


def main(args: Optional[List[str]] = None) -> int:
    """Run the gate until SIGINT/SIGTERM; it closes and sends its zeros on the way out."""
    return run_node(SessionGate, args=args, before_shutdown=SessionGate.close_safely)


if __name__ == '__main__':
    sys.exit(main())
