"""
Park a dead driver's output lines at their safe level until it is back (no ROS).

When a driver process dies the kernel (and the simulated chip) frees its lines and leaves them
at their last level: a motor may keep running. On the driver's host the supervisor then claims
the same lines of the same chip, through the driver's own ROS-free core built from the node's
parameters, so they are held exactly as the driver holds them when it is inactive:

- dc_motor: PWM 0, direction low (or its PWM 0), enable low;
- gpio_output: the line at its safe value's level;
- servo: no pulses;
- board: the enable line low.

Inputs (digital_input, encoder) and external nodes have nothing to park. `ParkedLines.release()`
gives the lines back (they keep the safe level) before the driver is started again.
"""

from typing import Any, Callable, Dict, Mapping, Optional

from viam_session.chips import Chip, open_chip
from viam_session.drivers.gpio_output_core import GpioOutput
from viam_session.drivers.h_bridge import HBridgeMotor
from viam_session.drivers.servo_core import HobbyServo
from viam_session.supervisor.tree import ManagedNode

__all__ = ['PARKED_DRIVERS', 'ParkedLines', 'park_lines']


class _EnableLine:
    """A board's enable line, held low."""

    def __init__(self, *, chip: Chip, line: int) -> None:
        self._chip = chip
        self._line = line
        self._claimed = False

    def claim(self) -> None:
        self._chip.claim_output(self._line, 0)
        self._claimed = True

    def stop(self) -> None:
        if self._claimed:
            self._chip.write(self._line, 0)

    def release(self) -> None:
        if self._claimed:
            self.stop()
            self._chip.release(self._line)
            self._claimed = False


def _dc_motor(chip: Chip, p: Mapping[str, Any]) -> Any:
    enable = int(p.get('enable_line', -1))
    return HBridgeMotor(chip=chip, pwm_line=int(p['pwm_line']),
                        direction_line=int(p['direction_line']),
                        pwm_frequency_hz=float(p.get('pwm_frequency_hz', 1000.0)),
                        max_duty=1.0, mode=str(p.get('mode', 'pwm_direction')),
                        enable_line=None if enable < 0 else enable)


def _gpio_output(chip: Chip, p: Mapping[str, Any]) -> Any:
    return GpioOutput(chip=chip, line=int(p['line']), active_level=int(p.get('active_level', 1)),
                      safe_value=bool(p.get('safe_value', False)))


def _servo(chip: Chip, p: Mapping[str, Any]) -> Any:
    return HobbyServo(chip=chip, line=int(p['pwm_line']),
                      frequency_hz=float(p.get('pwm_frequency_hz', 50.0)))


def _board(chip: Chip, p: Mapping[str, Any]) -> Any:
    return _EnableLine(chip=chip, line=int(p['enable_line']))


PARKED_DRIVERS: Dict[str, Callable[[Chip, Mapping[str, Any]], Any]] = {
    'dc_motor': _dc_motor, 'gpio_output': _gpio_output, 'servo': _servo, 'board': _board}


class ParkedLines:
    """Lines of one node held at their safe level; `release()` gives them back."""

    def __init__(self, chip: Chip, device: Any) -> None:
        self._chip: Optional[Chip] = chip
        self._device = device

    def release(self) -> None:
        """Give the lines back at their safe level; safe to call twice."""
        chip, self._chip = self._chip, None
        if chip is None:
            return
        try:
            self._device.release()
        finally:
            chip.close()


def park_lines(node: ManagedNode, *, holder: str) -> Optional[ParkedLines]:
    """
    Claim `node`'s output lines at their safe level; None if its driver has none.

    Raises ChipError (LineInUseError while the driver still holds them) or ValueError.
    """
    make = PARKED_DRIVERS.get(node.driver)
    if make is None or node.driver == 'board' and 'enable_line' not in node.parameters:
        return None
    parameters = node.parameters
    chip = open_chip(str(parameters.get('chip_backend', 'sim')), str(parameters.get('chip', '0')),
                     holder=holder)
    try:
        device = make(chip, parameters)
        device.claim()
        device.stop()
    except BaseException:
        chip.close()
        raise
    return ParkedLines(chip, device)
