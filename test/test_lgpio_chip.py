"""Tests of the chip factory and the real lgpio backend on a machine without GPIO chips."""

import os
import re

import lgpio

import pytest

from viam_session.chips import CHIP_BACKENDS, ChipError, open_chip
from viam_session.chips.lgpio_chip import LgpioChip

no_gpiochip0 = pytest.mark.skipif(
    os.path.exists('/dev/gpiochip0'), reason='this machine has a /dev/gpiochip0')


def test_backends_are_sim_and_lgpio():
    """The factory knows the simulated and the lgpio backends."""
    assert CHIP_BACKENDS == ('sim', 'lgpio')


@no_gpiochip0
def test_open_lgpio_without_gpiochip_reports_lgpio_error():
    """A missing /dev/gpiochip0 gives a ChipError carrying lgpio's own text."""
    message = re.escape("cannot open /dev/gpiochip0: lgpio says 'can not open gpiochip'")
    with pytest.raises(ChipError, match=message) as error:
        open_chip('lgpio', '0', holder='x')
    assert isinstance(error.value.__cause__, lgpio.error)


@no_gpiochip0
def test_lgpio_chip_without_gpiochip_raises_chip_error():
    """The LgpioChip constructor turns lgpio's failure into a ChipError."""
    with pytest.raises(ChipError, match='can not open gpiochip'):
        LgpioChip(0)


def test_open_lgpio_with_negative_chip_number_raises_chip_error():
    """A negative chip number is refused by lgpio, reported as a ChipError."""
    with pytest.raises(ChipError, match=r'cannot open /dev/gpiochip-1: lgpio says'):
        open_chip('lgpio', '-1', holder='x')


@pytest.mark.parametrize('chip', ['abc', '', '0.5', 'gpiochip0', '/dev/gpiochip0'])
def test_open_lgpio_with_non_number_chip_raises_clear_error(chip):
    """The lgpio backend wants a gpiochip number and says so."""
    message = re.escape(f"lgpio chip must be a gpiochip number such as '0', got {chip!r}")
    with pytest.raises(ChipError, match=message):
        open_chip('lgpio', chip, holder='x')


@pytest.mark.parametrize('backend', ['nope', '', 'LGPIO', 'Sim'])
def test_open_unknown_backend_raises_clear_error(backend, tmp_path):
    """An unknown backend name is refused, listing the known ones."""
    message = re.escape(
        f"unknown chip backend {backend!r}; expected one of ('sim', 'lgpio')")
    with pytest.raises(ChipError, match=message):
        open_chip(backend, str(tmp_path), holder='x')
    assert list(tmp_path.iterdir()) == []
