"""
The ROS parameters of each driver type: name, type, default, range, choices (no ROS).

One table per driver type, read twice: each driver declares its parameters from it (with
`viam_session.parameters.declare`, which turns a spec into a descriptor), and the robot
description's validation (`supervisor.tree`) checks a description's parameters against it
before any process starts. A value of the wrong type would otherwise end the driver at
start-up (rclpy: "expecting type 'DOUBLE'"), and a respawning launch would restart it again
and again.

Types follow rclpy's static typing: a bool is not an integer, a string is not a number. An
integer is accepted for a double parameter and converted (`1000` for 1000.0): YAML writers do
not see the difference, and the description hands the node the float it declares.
"""

from dataclasses import dataclass
import math
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple

from viam_session.chips.base import SERVO_FREQUENCY_RANGE_HZ, SERVO_PULSE_RANGE_US
from viam_session.chips.factory import CHIP_BACKENDS
from viam_session.drivers.h_bridge import H_BRIDGE_MODES

__all__ = ['ACTUATOR', 'BOARD', 'DC_MOTOR', 'DIGITAL_INPUT', 'DRIVER_PARAMETERS', 'ENCODER',
           'GPIO_OUTPUT', 'LIFECYCLE_DRIVER', 'ParameterSpec', 'ROS_NODE', 'SERVO',
           'SESSION_GATE', 'with_command_source']

MAX_LINE = 1023
_TYPE_NAMES = {bool: 'a bool', int: 'an integer', float: 'a double', str: 'a string'}


@dataclass(frozen=True, kw_only=True)
class ParameterSpec:
    """
    One parameter: its type is the default's (bool, int, float, str).

    `low`/`high` bound numbers, `choices` strings; `dynamic_typing` accepts any scalar (the
    node converts it). A `default` of None means the node computes it (e.g. its own name).
    `read_only` parameters are computed by the node from the others and cannot be set.
    """

    name: str
    default: Any
    description: str
    kind: type = float
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None
    dynamic_typing: bool = False
    read_only: bool = False

    def checked(self, value: Any) -> Tuple[Any, Optional[str]]:
        """Return (the value as the node will take it, None) or (value, what is wrong)."""
        if self.read_only:
            return value, 'is read-only: the node computes it from its other parameters'
        if self.dynamic_typing:
            if isinstance(value, (bool, int, float, str)):
                return value, None
            return value, f'must be a number or a string, got {_describe(value)}'
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.kind:
            return value, f'must be {_TYPE_NAMES[self.kind]}, got {_describe(value)}'
        if self.kind is float and not math.isfinite(value):
            return value, f'must be finite, got {value!r}'
        if self.low is not None and self.high is not None and not (
                self.low <= value <= self.high):
            return value, f'must be in [{self.low}, {self.high}], got {value!r}'
        if self.choices is not None and value not in self.choices:
            return value, f'must be one of {", ".join(self.choices)}, got {value!r}'
        return value, None


def _describe(value: Any) -> str:
    if isinstance(value, (bool, int, float, str)):
        return f'{value!r} ({_TYPE_NAMES[type(value)]})'
    return f'a {type(value).__name__}'


def _table(*specs: ParameterSpec) -> Mapping[str, ParameterSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


def _line(name: str, default: int, description: str) -> ParameterSpec:
    return ParameterSpec(name=name, default=default, description=description, kind=int,
                         low=0, high=MAX_LINE)


def _optional_line(name: str, description: str) -> ParameterSpec:
    return ParameterSpec(name=name, default=-1, description=description, kind=int,
                         low=-1, high=MAX_LINE)


def _level(description: str) -> ParameterSpec:
    return ParameterSpec(name='active_level', default=1, description=description, kind=int,
                         low=0, high=1)


def _lease() -> ParameterSpec:
    return ParameterSpec(
        name='liveliness_lease_s', default=1.0, low=0.01, high=3600.0,
        description='Lease of the liveliness the `~/alive` writer offers (AUTOMATIC); a '
        'supervisor must request a lease at least this long.')


def _command_bounds() -> Tuple[ParameterSpec, ParameterSpec]:
    return (
        ParameterSpec(name='command_min', default=None, read_only=True,
                      description='Read-only: the smallest command value the node accepts '
                      '(viam_session.command_ranges); the session manager refuses others.'),
        ParameterSpec(name='command_max', default=None, read_only=True,
                      description='Read-only: the largest command value the node accepts '
                      '(viam_session.command_ranges); the session manager refuses others.'))


# rclpy declares these on every node.
ROS_NODE = _table(
    ParameterSpec(name='use_sim_time', default=False, kind=bool,
                  description='Use /clock (declared by rclpy).'),
    ParameterSpec(name='start_type_description_service', default=True, kind=bool,
                  description='Offer ~/get_type_description (declared by rclpy).'),
)

# Every GPIO driver (drivers.base.LifecycleDriver).
LIFECYCLE_DRIVER = _table(
    ParameterSpec(name='chip_backend', default='sim', kind=str, choices=CHIP_BACKENDS,
                  description='GPIO chip backend.'),
    # Dynamically typed: `-p chip:=0` on a command line is an integer.
    ParameterSpec(name='chip', default='0', kind=str, dynamic_typing=True,
                  description='For lgpio the gpiochip number; for sim the chip directory.'),
    ParameterSpec(name='joint_name', default=None, kind=str,
                  description='Joint name in the published JointState.'),
    _lease(),
    ParameterSpec(name='ordered_exit_timeout_s', default=4.0, low=0.0, high=60.0,
                  description='On SIGINT/SIGTERM, outputs safe at once, how long to wait for a '
                  'supervisor watching ~/alive to take this node down and leave before exiting '
                  '(launch sends SIGTERM 5 s after SIGINT); 0: exit at once.'),
)


def _command_source() -> ParameterSpec:
    return ParameterSpec(
        name='command_source', default='', kind=str,
        description='The only node whose commands are obeyed (the session manager, e.g. '
        "/session_manager; a relative name is in the driver's namespace); commands from "
        'other publishers are dropped, counted in diagnostics and logged. Empty: any '
        'publisher.')


# Drivers commanded on ~/command (drivers.base.ActuatorDriver).
ACTUATOR = _table(ParameterSpec(
    name='command_timeout_s', default=0.5, low=0.0, high=60.0,
    description='Self-protection: outputs go safe when no valid command arrived for this long '
    'or the command publisher lost liveliness (lease = this); 0 switches it off.'),
    _command_source(),
    *_command_bounds())

BOARD = _table(
    _optional_line('enable_line', 'Line enabling the board (on while active); -1: none.'),
    _level('Line level that enables the board (0: active low).'),
)

DC_MOTOR = _table(
    ParameterSpec(name='mode', default='pwm_direction', kind=str, choices=H_BRIDGE_MODES,
                  description='H-bridge wiring: PWM + direction line, or two PWM lines '
                  '(pwm_line forward, direction_line reverse).'),
    _line('pwm_line', 12, 'Line carrying PWM to the H-bridge.'),
    _line('direction_line', 16, 'Line selecting direction (1 = reverse); in two_pwm mode the '
          'reverse PWM line.'),
    _optional_line('enable_line', 'Line enabling the H-bridge (high while driven); -1: none.'),
    ParameterSpec(name='pwm_frequency_hz', default=1000.0, low=1.0, high=100000.0,
                  description='PWM frequency.'),
    ParameterSpec(name='max_duty', default=1.0, low=0.01, high=1.0,
                  description='Duty cycle at power 1.'),
)

DIGITAL_INPUT = _table(
    _line('line', 22, 'Input line.'),
    _level('Line level that means active.'),
)

ENCODER = _table(
    _line('a_line', 17, 'Channel A line.'),
    _line('b_line', 27, 'Channel B line.'),
    ParameterSpec(name='counts_per_revolution', default=2048.0, low=1.0, high=1e9,
                  description='Counts per turn, counting both edges of both channels '
                  '(4 x lines per turn).'),
    ParameterSpec(name='publish_rate_hz', default=50.0, low=0.1, high=1000.0,
                  description='JointState messages per second.'),
)

GPIO_OUTPUT = _table(
    _line('line', 23, 'Output line.'),
    _level('Line level that means on (0 for active-low relays).'),
    ParameterSpec(name='safe_value', default=False, kind=bool,
                  description='Value held outside active and when commands stop.'),
)

SERVO = _table(
    _line('pwm_line', 18, 'Line carrying the servo pulses.'),
    ParameterSpec(name='pwm_frequency_hz', default=50.0, low=SERVO_FREQUENCY_RANGE_HZ[0],
                  high=SERVO_FREQUENCY_RANGE_HZ[1], description='Servo pulses per second.'),
    ParameterSpec(name='min_pulse_us', default=500.0, low=SERVO_PULSE_RANGE_US[0],
                  high=SERVO_PULSE_RANGE_US[1], description='Pulse width at angle 0.'),
    ParameterSpec(name='max_pulse_us', default=2500.0, low=SERVO_PULSE_RANGE_US[0],
                  high=SERVO_PULSE_RANGE_US[1], description='Pulse width at angle travel_deg.'),
    ParameterSpec(name='travel_deg', default=180.0, low=1.0, high=360.0,
                  description="The servo's full travel, degrees."),
    ParameterSpec(name='min_angle_deg', default=0.0, low=0.0, high=360.0,
                  description='Smallest angle a command may ask for.'),
    ParameterSpec(name='max_angle_deg', default=180.0, low=0.0, high=360.0,
                  description='Largest angle a command may ask for.'),
)

SESSION_GATE = _table(
    ParameterSpec(name='message_type', default='twist', kind=str,
                  choices=('twist', 'twist_stamped', 'float64', 'float64_multi_array'),
                  description='Type of input and output.'),
    ParameterSpec(name='output_topic', default='/cmd_vel', kind=str,
                  description="The robot's own command topic to relay to."),
    ParameterSpec(name='zero_rate_hz', default=20.0, low=0.1, high=1000.0,
                  description='Rate of the zero commands after a close.'),
    ParameterSpec(name='zero_duration_s', default=1.0, low=0.0, high=60.0,
                  description='How long zeros are sent after a close; longer than the '
                  "downstream controller's own command timeout (diff_drive_controller: 0.5 s)."),
    ParameterSpec(name='command_timeout_s', default=0.5, low=0.0, high=60.0,
                  description='Self-protection: the gate closes when no valid command came '
                  'for this long or the command publisher lost liveliness (lease = this); 0 '
                  'switches it off.'),
    _command_source(),
    _lease(),
    *_command_bounds(),
)


def _driver(*tables: Mapping[str, ParameterSpec]) -> Mapping[str, ParameterSpec]:
    return MappingProxyType({name: spec for table in (ROS_NODE, *tables)
                             for name, spec in table.items()})


# Driver type (as in a robot description) -> every parameter its node declares. 'external'
# nodes are someone else's: their parameters are not checked.
DRIVER_PARAMETERS: Mapping[str, Mapping[str, ParameterSpec]] = MappingProxyType({
    'board': _driver(LIFECYCLE_DRIVER, BOARD),
    'dc_motor': _driver(LIFECYCLE_DRIVER, ACTUATOR, DC_MOTOR),
    'digital_input': _driver(LIFECYCLE_DRIVER, DIGITAL_INPUT),
    'encoder': _driver(LIFECYCLE_DRIVER, ENCODER),
    'gpio_output': _driver(LIFECYCLE_DRIVER, ACTUATOR, GPIO_OUTPUT),
    'servo': _driver(LIFECYCLE_DRIVER, ACTUATOR, SERVO),
    'session_gate': _driver(SESSION_GATE),
})


def with_command_source(driver: str, parameters: Mapping[str, Any],
                        source: str) -> Dict[str, Any]:
    """
    Return a driver's parameters with `command_source` set to `source` (the session manager).

    Only for driver types that take commands, and only where the description does not set it
    (an empty value there keeps a driver open to any publisher on purpose).
    """
    if source and 'command_source' in DRIVER_PARAMETERS.get(driver, {}) \
            and 'command_source' not in parameters:
        return {**parameters, 'command_source': source}
    return dict(parameters)
