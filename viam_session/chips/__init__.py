"""GPIO chip backends: one small interface, a real lgpio backend and a simulated chip."""

from viam_session.chips.base import (
    Chip, ChipError, EdgeCallback, LineInUseError, SERVO_FREQUENCY_RANGE_HZ,
    SERVO_PULSE_RANGE_US)
from viam_session.chips.factory import CHIP_BACKENDS, open_chip

__all__ = ['CHIP_BACKENDS', 'Chip', 'ChipError', 'EdgeCallback', 'LineInUseError',
           'SERVO_FREQUENCY_RANGE_HZ', 'SERVO_PULSE_RANGE_US', 'open_chip']
