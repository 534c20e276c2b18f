"""
Lifecycle driver base classes: lines claimed in on_configure, outputs only while active.

`LifecycleDriver` owns a chip and one ROS-free device (a core such as `HBridgeMotor` with
`claim()`, `stop()` and `release()`). It opens the chip and claims the device's lines in
on_configure, and stops the device (outputs at their safe level) on every way out of active:
deactivate, cleanup, shutdown, error transition, and, through `make_safe()`, SIGINT/SIGTERM and
an exception in a callback (`node_runner`) and interpreter exit (`atexit`). State is published
as sensor_msgs/JointState on `~/joint_state`.

Every driver publishes one status on `/diagnostics` (diagnostic_msgs) every second and soon
after each change (lifecycle state, outputs, watchdog): see `drivers.diagnostics`.

For the lifecycle supervisor every driver offers `~/alive` (std_msgs/Empty, never published):
a writer with liveliness AUTOMATIC and lease `liveliness_lease_s`, which DDS asserts for as
long as the process lives, in every lifecycle state. A watcher requesting a lease no shorter
than that learns within its lease that the process died or stalled.

On SIGINT/SIGTERM a driver puts its outputs at their safe level at once (its lifecycle state
stays as it is, commands are ignored). If a supervisor watches `~/alive` (a subscriber on it),
the driver then waits, at most `ordered_exit_timeout_s`, until no one watches any more: `ros2
launch` signals every process at the same moment, and the supervisor takes the tree down in
order (deactivate, cleanup, children first, sessions closed last) before it exits. A SIGTERM
meanwhile (launch's, 5 s after SIGINT) ends the wait; a repeated SIGINT does not (launch sends
one more after Ctrl-C). Then the lines are released and the process exits.

`ActuatorDriver` adds the command topic `~/command` and self-protection (outputs safe when
commands stop), set by one parameter, `command_timeout_s` (0 switches it off, for one-shot
publishers). When it is > 0:

- the subscription requests liveliness AUTOMATIC with lease `command_timeout_s`: publishers
  offering AUTOMATIC or MANUAL_BY_TOPIC liveliness with a lease no longer than that match;
  publishers with the default QoS (infinite lease) do not, and rclpy logs the incompatible QoS;
- when the publishers' liveliness is lost (alive count 0), the outputs go safe at once;
- a watchdog (a steady-clock timer armed for last valid command + `command_timeout_s`, not a
  poll) puts the outputs safe when no valid command arrived in time.

Either way the driver stays `active`, warns (throttled) and publishes its state; the next valid
command drives again. Bad commands (NaN, infinities, out of range) are refused with a throttled
warning, leave the outputs as they are and do not feed the watchdog. With `command_source` set
(the session manager), commands from any other node's writers are dropped before any of that,
counted in diagnostics and logged, throttled (`command_source`).

Measured with Fast DDS: the loss is reported one *requested* lease (`command_timeout_s`) after
the publisher's last assertion, whatever shorter lease it offers. For a publisher that dies,
the liveliness event and the watchdog therefore fire within moments of each other, and the
first stops the outputs; the event fires only once no matching publisher is alive.
"""

import atexit
import re
import threading
import time
from typing import Any, Dict, List, Optional, Protocol, Tuple, Type

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.qos import LivelinessPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, Float64, Header

from viam_session.chips import Chip, ChipError, open_chip
from viam_session.driver_parameters import ACTUATOR, LIFECYCLE_DRIVER
from viam_session.drivers.command_source import resolve_source
from viam_session.drivers.command_watchdog import CommandWatchdog
from viam_session.drivers.diagnostics import (
    driver_status, line_roles, LineRecord, status_signature, WatchdogState)
from viam_session.lifecycle_node import GuardedLifecycleNode
from viam_session.node_runner import run_node
from viam_session.parameters import declare
from viam_session.time_convert import monotonic_to_ros_time

__all__ = ['ActuatorDriver', 'DIAGNOSTICS_PERIOD_S', 'Device', 'LifecycleDriver', 'alive_qos',
           'run_driver']

DIAGNOSTICS_PERIOD_S = 1.0
# How often a driver waiting to exit looks whether its supervisor still watches it.
WATCHER_POLL_S = 0.05


class Device(Protocol):
    """What a driver owns: a ROS-free core that claims its lines and knows its safe state."""

    def claim(self) -> None:
        """Claim the lines, outputs at their safe level."""

    def stop(self) -> None:
        """Put every output at its safe level; the lines stay claimed."""

    def release(self) -> None:
        """Stop, then give every line back."""


def alive_qos(lease_s: float) -> QoSProfile:
    """Return the QoS of `~/alive` (liveliness AUTOMATIC, lease `lease_s`) for both ends."""
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      liveliness=LivelinessPolicy.AUTOMATIC,
                      liveliness_lease_duration=Duration(seconds=lease_s))


class LifecycleDriver(GuardedLifecycleNode):
    """
    A lifecycle node that owns one device on one chip.

    Subclasses declare their parameters in `__init__` and implement `create_device()` and
    `joint_values()`; the base class does the rest.
    """

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._chip_backend = declare(self, LIFECYCLE_DRIVER['chip_backend'])
        # Dynamically typed: `-p chip:=0` on a command line is an integer.
        self._chip_name = str(declare(self, LIFECYCLE_DRIVER['chip']))
        self._joint_name = declare(self, LIFECYCLE_DRIVER['joint_name'], default=self.get_name())
        # Held for every use of the device: callbacks run on the executor, edges on the chip's
        # thread, make_safe() on the main thread or at exit.
        self._lock = threading.RLock()
        self._chip: Optional[Chip] = None
        self._device: Optional[Device] = None
        self._active = False
        self._state_publisher = self.create_lifecycle_publisher(JointState, '~/joint_state', 10)
        self._liveliness_lease_s = declare(self, LIFECYCLE_DRIVER['liveliness_lease_s'])
        self._alive = self.create_publisher(Empty, '~/alive', alive_qos(self._liveliness_lease_s))
        self._ordered_exit_timeout_s = declare(
            self, LIFECYCLE_DRIVER['ordered_exit_timeout_s'])
        self._exiting = False
        self._exit_hurried = threading.Event()
        self._configure_error = ''
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_signature: Optional[Tuple[object, ...]] = None
        # Triggered from any thread; publishes from the executor once the transition is over.
        self._diagnostics_changed = self.create_guard_condition(self._publish_if_changed)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics)
        atexit.register(self.make_safe)

    # --- for subclasses ------------------------------------------------------------------------

    def create_device(self, chip: Chip) -> Device:
        """Return the device on `chip` (not claimed yet); raise ValueError if impossible."""
        raise NotImplementedError

    def joint_values(self) -> Tuple[float, float, float]:
        """Return the (position, velocity, effort) to publish; NaN for what does not apply."""
        raise NotImplementedError

    # --- safe on every way out -----------------------------------------------------------------

    def make_safe(self) -> None:
        """Put outputs at their safe level and release the lines; safe any time, any number."""
        with self._lock:
            self._active = False
            device, self._device = self._device, None
            chip, self._chip = self._chip, None
            try:
                if device is not None:
                    device.release()
            except ChipError as error:
                self.get_logger().error(f'could not put the outputs at their safe level: {error}')
        # Outside the lock: closing joins the chip's edge thread, which may be waiting for it.
        if chip is not None:
            chip.close()

    def exit_safely(self) -> None:
        """
        SIGINT/SIGTERM: outputs safe now; a watched driver waits for its supervisor; release.

        The wait is bounded by `ordered_exit_timeout_s` and ended by a SIGTERM
        (`hurry_exit`). Meanwhile the executor spins, so the supervisor's transitions run.
        """
        self._park_for_exit()
        deadline = time.monotonic() + self._ordered_exit_timeout_s
        watched = self.count_subscribers(self._alive.topic_name) > 0
        if watched:
            self.get_logger().info('signalled: outputs at their safe level; waiting for the '
                                   'supervisor to take this node down')
        while watched and not self._exit_hurried.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.get_logger().warning(
                    f'the supervisor still watches after {self._ordered_exit_timeout_s:g} s: '
                    f'exiting {self._state_machine.current_state[1]}, outputs safe')
                break
            self._exit_hurried.wait(min(WATCHER_POLL_S, remaining))
            watched = self.count_subscribers(self._alive.topic_name) > 0
        self.make_safe()

    def hurry_exit(self) -> None:
        """Stop waiting for the supervisor: SIGTERM came (safe in a signal handler)."""
        self._exit_hurried.set()

    def _park_for_exit(self) -> None:
        with self._lock:
            self._exiting = True
            self._active = False
            try:
                if self._device is not None:
                    self._device.stop()
                    return
            except ChipError as error:
                self.get_logger().error(f'could not put the outputs at their safe level: {error}')
        self.make_safe()    # nothing claimed, or a failed stop: release what can be released

    # --- lifecycle -----------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._diagnostics_changed.trigger()
        try:
            with self._lock:
                self._chip = LineRecord(open_chip(self._chip_backend, self._chip_name,
                                                  holder=self.get_fully_qualified_name()))
                device = self.create_device(self._chip)
                device.claim()
                self._device = device
        except (ChipError, ValueError) as error:
            self.get_logger().error(f'configure failed: {error}')
            self._configure_error = f'configure failed: {error}'
            self.make_safe()
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ''
        self.get_logger().info(f'configured on {self._chip_backend} chip {self._chip_name}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            if self._exiting:
                self.get_logger().warning('cannot activate: the process is exiting')
                return TransitionCallbackReturn.FAILURE
            if self._device is None:
                self.get_logger().error('cannot activate: the lines were released')
                return TransitionCallbackReturn.FAILURE
            self._active = True
        result = super().on_activate(state)
        self.publish_state()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            try:
                if self._device is not None:
                    self._device.stop()
            except ChipError as error:
                self.get_logger().error(f'deactivate failed: {error}')
                return TransitionCallbackReturn.ERROR  # on_error releases what it can
        self.get_logger().info('deactivated: outputs at their safe level')
        self.publish_state()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.make_safe()
        self._diagnostics_changed.trigger()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.make_safe()
        self._diagnostics_changed.trigger()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.make_safe()
        self._diagnostics_changed.trigger()
        return TransitionCallbackReturn.SUCCESS

    # --- state ---------------------------------------------------------------------------------

    def publish_state(self, t_ns: Optional[int] = None) -> None:
        """Publish the joint state, stamped now or at CLOCK_MONOTONIC instant `t_ns`."""
        position, velocity, effort = self.joint_values()
        message = JointState(name=[self._joint_name], position=[position], velocity=[velocity],
                             effort=[effort])
        message.header.stamp = (self.get_clock().now().to_msg() if t_ns is None
                                else monotonic_to_ros_time(t_ns * 1e-9))
        self._state_publisher.publish(message)
        self._diagnostics_changed.trigger()

    # --- diagnostics ---------------------------------------------------------------------------

    def watchdog_state(self) -> Optional[WatchdogState]:
        """Return the command watchdog's state; None for drivers without commands."""
        return None

    def driving(self) -> bool:
        """Return whether a command drives the outputs now."""
        return False

    def active_levels(self) -> Dict[int, int]:
        """Return {line: level meaning on or active} for the lines whose level has a meaning."""
        return {}

    def diagnostic_status(self, *, read_inputs: bool = True) -> DiagnosticStatus:
        """Return this driver's status: lifecycle state, lines (inputs read), watchdog."""
        parameters = {name: parameter.value
                      for name, parameter in self.get_parameters_by_prefix('').items()}
        with self._lock:
            chip = self._chip
            lines = chip.uses() if isinstance(chip, LineRecord) else {}
            levels = {}
            inputs = [line for line, use in lines.items() if use.kind == 'input']
            for line in inputs if read_inputs else ():
                try:
                    levels[line] = chip.read(line)
                except ChipError:
                    pass
            watchdog, driving = self.watchdog_state(), self.driving()
        kind = re.sub(r'(?<!^)(?=[A-Z])', '_', type(self).__name__.removesuffix('Driver')).lower()
        return driver_status(
            node=self.get_fully_qualified_name(), kind=kind,
            state=self._state_machine.current_state[1], backend=self._chip_backend,
            chip=self._chip_name, lines=lines, roles=line_roles(parameters),
            input_levels=levels, watchdog=watchdog, driving=driving,
            error=self._configure_error, active_levels=self.active_levels())

    def publish_diagnostics(self) -> None:
        """Publish the status on /diagnostics."""
        status = self.diagnostic_status()
        self._diagnostics_signature = status_signature(status)
        self._diagnostics.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    def _publish_if_changed(self) -> None:
        # Input levels are not part of the signature: no need to read them (encoders at 50 Hz).
        status = self.diagnostic_status(read_inputs=False)
        if status_signature(status) != self._diagnostics_signature:
            self.publish_diagnostics()


class ActuatorDriver(LifecycleDriver):
    """
    A driver commanded on `~/command`, with self-protection (see the module docstring).

    Subclasses set `command_type` and implement `apply()`.
    """

    command_type: type = Float64

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._command_timeout_s = declare(self, ACTUATOR['command_timeout_s'])
        self._driving = False
        self._tripped: Optional[str] = None
        source = resolve_source(declare(self, ACTUATOR['command_source']),
                                self.get_namespace())
        self._watchdog = CommandWatchdog(self, self.command_type, self._on_command,
                                         timeout_s=self._command_timeout_s,
                                         on_trip=self._stop_driving, source=source)

    def apply(self, device: Any, value: Any) -> None:
        """Drive `device` as the command `value` says; raise ValueError for a bad value."""
        raise NotImplementedError

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._driving = False
        self._tripped = None
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._driving = False
            self._tripped = None
            self._watchdog.cancel()
        return super().on_deactivate(state)

    def _park_for_exit(self) -> None:
        with self._lock:
            self._driving = False
            self._watchdog.cancel()
        super()._park_for_exit()

    def _on_command(self, message: Any) -> None:
        with self._lock:
            if not self._active:
                self.get_logger().warning(
                    'command ignored: ' + ('the process is exiting' if self._exiting
                                           else 'driver is not active'),
                    throttle_duration_sec=1.0)
                return
            try:
                self.apply(self._device, message.data)
            except ValueError as error:
                self.get_logger().warning(
                    f'command rejected: {error}', throttle_duration_sec=1.0)
                return
            self._driving = True
            self._tripped = None
            self._watchdog.feed()
        self.publish_state()

    def _stop_driving(self, reason: str) -> None:
        with self._lock:
            if not (self._active and self._driving):
                return
            self._driving = False
            self._tripped = reason
            self._watchdog.cancel()
            self._device.stop()
        self.get_logger().warning(f'{reason}: outputs at their safe level until the next '
                                  'command', throttle_duration_sec=1.0)
        self.publish_state()

    def watchdog_state(self) -> WatchdogState:
        return WatchdogState(timeout_s=self._command_timeout_s, tripped=self._tripped,
                             source=self._watchdog.source.describe())

    def driving(self) -> bool:
        return self._driving


def run_driver(driver: Type[LifecycleDriver], args: Optional[List[str]] = None) -> int:
    """Run `driver` until SIGINT/SIGTERM; outputs safe on every way out (`exit_safely`)."""
    return run_node(driver, args=args, before_shutdown=driver.exit_safely,
                    on_signal_again=driver.hurry_exit)
