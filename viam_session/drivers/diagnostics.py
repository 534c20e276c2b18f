"""
A driver's `/diagnostics` status: lifecycle state, output levels, watchdog (ROS-free).

ROS-free apart from the message types, like `sessions.diagnostics`. Two pieces:

- `LineRecord`, a `Chip` that passes every call on to the real chip and remembers what the
  driver last put on each line it holds (level, PWM duty and frequency, servo pulse, input),
  so the status shows the outputs as the driver set them, for every driver alike;
- `driver_status()`, the one DiagnosticStatus of a driver, named `<node fqn>: <kind> driver`
  (as the session manager's `<node fqn>: sessions`), `hardware_id` the chip. A line whose
  driver has an active level says what its level means: `level 0 (on)` for an active-low
  output, `input, level 1 (active)`, so an e-stop or a relay reads without its wiring.

Levels: OK while the driver works as configured (active, or inactive / unconfigured with the
outputs at their safe level); WARN when the command watchdog tripped (outputs safe because the
command stream died) or configuring failed; ERROR in the lifecycle's error processing.
`status_signature()` leaves out input levels, so a driver publishes "on change" when its
state or outputs change, not on every encoder edge.
"""

from dataclasses import dataclass
import threading
from typing import Dict, Mapping, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from viam_session.chips.base import Chip, EdgeCallback

__all__ = ['LineRecord', 'LineUse', 'WatchdogState', 'driver_status', 'hardware_id',
           'line_roles', 'status_signature']

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


@dataclass(frozen=True)
class LineUse:
    """What a driver last did with one line: `kind` is level, pwm, servo or input."""

    kind: str
    level: int = 0
    duty: float = 0.0
    frequency_hz: float = 0.0
    pulse_width_us: float = 0.0

    def describe(self) -> str:
        """Return the use in words, e.g. 'PWM duty 0.500 at 1000 Hz'."""
        if self.kind == 'pwm':
            return f'PWM duty {self.duty:.3f} at {self.frequency_hz:g} Hz'
        if self.kind == 'servo':
            if self.pulse_width_us == 0:
                return 'servo released (no pulses)'
            return f'servo pulse {self.pulse_width_us:.0f} us at {self.frequency_hz:g} Hz'
        if self.kind == 'input':
            return 'input'
        return f'level {self.level}'


@dataclass(frozen=True)
class WatchdogState:
    """The command watchdog of an actuator: off, armed or tripped (with the reason)."""

    timeout_s: float
    tripped: Optional[str] = None
    # Whose commands are obeyed, and how many others were dropped (CommandSource.describe).
    source: str = 'any publisher'

    def describe(self) -> str:
        """Return 'off', 'armed (0.5 s)' or 'tripped: <reason>'."""
        if self.timeout_s <= 0.0:
            return 'off'
        if self.tripped is not None:
            return f'tripped: {self.tripped}'
        return f'armed ({self.timeout_s:g} s)'


class LineRecord(Chip):
    """A chip that records, per line held, what was last put on it; everything else passes."""

    def __init__(self, chip: Chip) -> None:
        self._chip = chip
        self._lock = threading.Lock()
        self._uses: Dict[int, LineUse] = {}

    @property
    def chip(self) -> Chip:
        return self._chip

    def uses(self) -> Dict[int, LineUse]:
        """Return a copy of the lines held and their last use."""
        with self._lock:
            return dict(self._uses)

    def claim_output(self, line: int, level: int) -> None:
        self._chip.claim_output(line, level)
        self._record(line, LineUse('level', level=level))

    def claim_input(self, line: int, *, on_edge: Optional[EdgeCallback] = None) -> None:
        self._chip.claim_input(line, on_edge=on_edge)
        self._record(line, LineUse('input'))

    def read(self, line: int) -> int:
        return self._chip.read(line)

    def write(self, line: int, level: int) -> None:
        self._chip.write(line, level)
        self._record(line, LineUse('level', level=level))

    def set_pwm(self, line: int, frequency_hz: float, duty: float) -> None:
        self._chip.set_pwm(line, frequency_hz, duty)
        self._record(line, LineUse('pwm', duty=duty, frequency_hz=frequency_hz))

    def set_servo(self, line: int, pulse_width_us: float, frequency_hz: float = 50.0) -> None:
        self._chip.set_servo(line, pulse_width_us, frequency_hz)
        self._record(line, LineUse('servo', pulse_width_us=pulse_width_us,
                                   frequency_hz=frequency_hz))

    def release(self, line: int) -> None:
        self._chip.release(line)
        with self._lock:
            self._uses.pop(line, None)

    def close(self) -> None:
        self._chip.close()
        with self._lock:
            self._uses.clear()

    @property
    def closed(self) -> bool:
        return self._chip.closed

    def _record(self, line: int, use: LineUse) -> None:
        with self._lock:
            self._uses[line] = use


def line_roles(parameters: Mapping[str, object]) -> Dict[int, str]:
    """Return {line: parameter name} for the parameters naming lines ('line', '*_line')."""
    roles: Dict[int, str] = {}
    for name, value in sorted(parameters.items()):
        if (name == 'line' or name.endswith('_line')) and isinstance(value, int) \
                and not isinstance(value, bool) and value >= 0:
            roles.setdefault(value, name)
    return roles


def hardware_id(backend: str, chip: str) -> str:
    """Return the chip as a hardware id: 'gpiochip0' for lgpio, 'sim chip <dir>' for sim."""
    return f'gpiochip{chip}' if backend == 'lgpio' else f'{backend} chip {chip}'


def driver_status(*, node: str, kind: str, state: str, backend: str, chip: str,
                  lines: Mapping[int, LineUse], roles: Mapping[int, str],
                  input_levels: Mapping[int, int],
                  watchdog: Optional[WatchdogState], driving: bool = False,
                  error: str = '',
                  active_levels: Optional[Mapping[int, int]] = None) -> DiagnosticStatus:
    """
    Describe one driver for rqt_robot_monitor (see the module docstring for the levels).

    `node` is the fully qualified node name, `kind` the driver type (dc_motor, servo, ...),
    `state` the lifecycle state label, `lines` what the driver last put on the lines it holds,
    `roles` the parameter naming each line, `input_levels` the levels read from its inputs,
    `watchdog` None for drivers without commands, `error` the last configure failure,
    `active_levels` the level that means on (outputs) or active (inputs) of the lines that
    have one.
    """
    level, message = _summary(state, lines, watchdog, driving, error)
    values = [KeyValue(key='lifecycle state', value=state),
              KeyValue(key='chip', value=f'{backend} {chip}')]
    if watchdog is not None:
        values.append(KeyValue(key='watchdog', value=watchdog.describe()))
        values.append(KeyValue(key='commands from', value=watchdog.source))
        values.append(KeyValue(key='driving', value='yes' if driving else 'no'))
    active_levels = active_levels or {}
    for line, use in sorted(lines.items()):
        text = use.describe()
        if use.kind == 'input' and line in input_levels:
            text = f'input, level {input_levels[line]}'
            if line in active_levels:
                text += ' (active)' if input_levels[line] == active_levels[line] \
                    else ' (inactive)'
        elif use.kind == 'level' and line in active_levels:
            text += ' (on)' if use.level == active_levels[line] else ' (off)'
        values.append(KeyValue(key=_line_key(line, roles), value=text))
    if error:
        values.append(KeyValue(key='last error', value=error))
    return DiagnosticStatus(level=level, name=f'{node}: {kind} driver', message=message,
                            hardware_id=hardware_id(backend, chip), values=values)


def status_signature(status: DiagnosticStatus) -> Tuple[object, ...]:
    """Return what "changed" means for a status: all but the levels read from inputs."""
    return (status.level, status.name, status.message, status.hardware_id,
            tuple((value.key, value.value) for value in status.values
                  if not value.value.startswith('input')))


def _summary(state: str, lines: Mapping[int, LineUse], watchdog: Optional[WatchdogState],
             driving: bool, error: str) -> Tuple[bytes, str]:
    if state == 'errorprocessing':
        return ERROR, 'error processing: outputs being made safe'
    if watchdog is not None and watchdog.tripped is not None and state == 'active':
        return WARN, (f'active; watchdog tripped ({watchdog.tripped}): outputs at their safe '
                      'level until the next command')
    if state == 'active':
        return OK, 'active, driving' if driving else 'active' + (
            ', waiting for commands' if watchdog is not None else '')
    if state == 'inactive':
        return OK, 'inactive: outputs at their safe level'
    if state == 'unconfigured' and error:
        return WARN, f'unconfigured: {error}'
    if state == 'unconfigured':
        return OK, 'unconfigured: lines released' if not lines else 'unconfigured'
    return OK, state


def _line_key(line: int, roles: Mapping[int, str]) -> str:
    role = roles.get(line)
    return f'line {line} ({role})' if role else f'line {line}'
