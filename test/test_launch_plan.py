"""What robot.launch.py decides from its arguments: namespace, respawn options, overrides."""

import pytest

from viam_session.launch_plan import (
    flag, given_overrides, log_level, respawn_options, robot_namespace)
from viam_session.supervisor.tree import Respawn

POLICIES = ('stop', 'shutdown')


class ExecuteLocal:
    """Where launch 3.x takes the respawn options (`launch.actions.ExecuteLocal`)."""

    def __init__(self, *, process_description=None, respawn=False, respawn_delay=None,
                 respawn_max_retries=-1, **kwargs):
        """Take the options, as launch does."""


class ExecuteProcess(ExecuteLocal):
    """launch 3.x's ExecuteProcess: the options pass through **kwargs."""

    def __init__(self, *, cmd, **kwargs):
        """Pass everything on."""
        super().__init__(**kwargs)


class LifecycleNode(ExecuteProcess):
    """launch_ros' action, two levels further down (Node in between, here folded in)."""

    def __init__(self, *, name, namespace, **kwargs):
        """Pass everything on."""
        super().__init__(cmd=[], **kwargs)


class OldExecuteProcess:
    """A launch whose process action has no respawn limit at all."""

    def __init__(self, *, cmd, respawn=False, respawn_delay=None, **kwargs):
        """Take what it knows."""


class OldLifecycleNode(OldExecuteProcess):
    """launch_ros' action on such a launch."""

    def __init__(self, **kwargs):
        """Pass everything on."""
        super().__init__(cmd=[], **kwargs)


@pytest.mark.parametrize('pushed, argument, expected', [
    (None, '', '/'),
    (None, 'r1', '/r1'),
    (None, '/r1', '/r1'),
    ('/r1', '', '/r1'),
    ('/r1', 'left', '/r1/left'),
    ('/r1', '/left', '/left'),            # absolute: not under the pushed namespace
    ('/fleet/r1', 'arm/', '/fleet/r1/arm'),
    ('/', 'r1', '/r1'),
])
def test_the_robot_namespace_follows_ros_rules(pushed, argument, expected):
    """A relative namespace goes under the one launch pushed; an absolute one stands alone."""
    assert robot_namespace(pushed, argument) == expected


@pytest.mark.parametrize('argument', ['r-1', '1r', 'r1//arm', 'r 1'])
def test_a_bad_namespace_argument_is_refused_by_name(argument):
    """The message names the argument and the value."""
    with pytest.raises(ValueError, match=f'launch argument namespace .* got {argument!r}'):
        robot_namespace(None, argument)


def test_respawn_limit_is_found_on_the_class_that_takes_it():
    """In launch 3.7 respawn_max_retries is on ExecuteLocal, two classes up from the action."""
    options, note = respawn_options(Respawn(max_attempts=3, backoff_s=0.5), LifecycleNode)
    assert options == {'respawn': True, 'respawn_delay': 0.5, 'respawn_max_retries': 3}
    assert note == ''


def test_without_a_respawn_limit_launch_does_not_respawn_and_says_why():
    """An unbounded respawn of a crashing driver is worse than none."""
    options, note = respawn_options(Respawn(max_attempts=3), OldLifecycleNode)
    assert options == {}
    assert 'no respawn_max_retries' in note and 'OldLifecycleNode' in note


def test_no_respawn_without_respawn_in_the_description():
    """max_attempts 0 (the default): launch does not respawn the node."""
    assert respawn_options(Respawn(), LifecycleNode) == ({}, '')


def test_arguments_not_given_set_nothing():
    """The parameter file or the node's default stands."""
    assert given_overrides(window='', automatic_stop='', policy='', policies=POLICIES) == (
        {}, {})


def test_arguments_given_set_their_parameters():
    """window, automatic_stop to the manager; policy to the supervisor."""
    assert given_overrides(window='1.5', automatic_stop='False', policy='shutdown',
                           policies=POLICIES) == (
        {'default_window_s': 1.5, 'automatic_stop': False},
        {'connectivity_loss_policy': 'shutdown'})


@pytest.mark.parametrize('arguments, message', [
    ({'window': 'two'}, "launch argument window must be seconds > 0, got 'two'"),
    ({'window': 'nan'}, "launch argument window must be seconds > 0, got 'nan'"),
    ({'window': '-1'}, "launch argument window must be seconds > 0, got '-1'"),
    ({'automatic_stop': 'yes'},
     "launch argument automatic_stop must be true or false, got 'yes'"),
    ({'policy': 'halt'}, "launch argument policy must be one of stop, shutdown, got 'halt'"),
])
def test_bad_arguments_are_refused_by_name(arguments, message):
    """Each bad value names its argument."""
    given = {'window': '', 'automatic_stop': '', 'policy': '', **arguments}
    with pytest.raises(ValueError) as raised:
        given_overrides(**given, policies=POLICIES)
    assert str(raised.value) == message


def test_flags_and_log_levels():
    """true/false in any case; the five rcutils levels."""
    assert (flag('x', 'TRUE'), flag('x', 'false')) == (True, False)
    assert log_level('WARN') == 'warn'
    with pytest.raises(ValueError, match='log_level must be one of debug, info, warn'):
        log_level('verbose')
