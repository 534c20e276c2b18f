"""The domains tests and benchmarks use: those ROS_DOMAIN_ID implies, or their own."""

import pytest

from viam_session_harness.ros_domains import domain_range, DOMAIN_SPAN


def test_unset_or_empty_keeps_the_callers_range():
    assert domain_range(range(1, 101), environ={}) == range(1, 101)
    assert domain_range(range(1, 101), environ={'ROS_DOMAIN_ID': ' '}) == range(1, 101)


def test_set_domain_starts_a_range_of_its_own():
    assert domain_range(range(1, 101), environ={'ROS_DOMAIN_ID': '40'}) == \
        range(40, 40 + DOMAIN_SPAN)


def test_range_stops_at_the_highest_domain_fast_dds_accepts():
    assert domain_range(range(1, 101), environ={'ROS_DOMAIN_ID': '230'}) == range(230, 233)


@pytest.mark.parametrize('value', ['abc', '-1', '233', '1.5'])
def test_bad_domain_ids_are_refused_with_the_value(value):
    with pytest.raises(ValueError, match=value.replace('.', r'\.')):
        domain_range(range(1, 101), environ={'ROS_DOMAIN_ID': value})
