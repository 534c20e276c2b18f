"""Open a chip backend by name, as drivers do from their `chip_backend` parameter."""

from viam_session.chips.base import Chip, ChipError

__all__ = ['CHIP_BACKENDS', 'open_chip']

CHIP_BACKENDS = ('sim', 'lgpio')


def open_chip(backend: str, chip: str, *, holder: str) -> Chip:
    """
    Open `chip` with `backend`.

    For 'sim', `chip` is the directory of a simulated chip (created if missing); for 'lgpio',
    the number of /dev/gpiochipN. `holder` names the claimant in line-in-use errors.
    """
    if backend == 'sim':
        from viam_session.chips.sim_chip import SimChip
        return SimChip(chip, holder=holder)
    if backend == 'lgpio':
        from viam_session.chips.lgpio_chip import LgpioChip
        try:
            number = int(chip)
        except ValueError:
            raise ChipError(f"lgpio chip must be a gpiochip number such as '0', got {chip!r}")
        return LgpioChip(number)
    raise ChipError(f'unknown chip backend {backend!r}; expected one of {CHIP_BACKENDS}')
