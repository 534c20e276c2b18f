"""
Which ROS domains the tests, the demo and the benchmarks may use on this machine.

The machine may be shared: when ROS_DOMAIN_ID is set, everything this repository starts stays
in the range it implies, ROS_DOMAIN_ID up to ROS_DOMAIN_ID + DOMAIN_SPAN - 1 (never above 232,
the highest domain Fast DDS accepts with its default ports). Only when it is unset does a
caller pick from its own default range.
"""

import os
from typing import Mapping, Optional

__all__ = ['DOMAIN_SPAN', 'MAX_DOMAIN_ID', 'domain_range']

DOMAIN_SPAN = 10
MAX_DOMAIN_ID = 232


def domain_range(default: range, environ: Optional[Mapping[str, str]] = None) -> range:
    """Return the domains to use: those ROS_DOMAIN_ID implies when it is set, else `default`."""
    value = (os.environ if environ is None else environ).get('ROS_DOMAIN_ID', '').strip()
    if not value:
        return default
    try:
        first = int(value)
    except ValueError:
        raise ValueError(f'ROS_DOMAIN_ID {value!r} is not a whole number') from None
    if not 0 <= first <= MAX_DOMAIN_ID:
        raise ValueError(f'ROS_DOMAIN_ID {first} is outside 0-{MAX_DOMAIN_ID}')
    return range(first, min(first + DOMAIN_SPAN, MAX_DOMAIN_ID + 1))
