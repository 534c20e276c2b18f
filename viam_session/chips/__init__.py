"""GPIO chip backends: one small interface, a real lgpio backend and a simulated chip."""

from viam_session.chips.base import Chip, ChipError, LineInUseError
from viam_session.chips.factory import CHIP_BACKENDS, open_chip

__all__ = ['CHIP_BACKENDS', 'Chip', 'ChipError', 'LineInUseError', 'open_chip']
