"""Command tags and the table's check of them: forged, replayed and stale commands (no ROS)."""

import math

import pytest

from viam_session.sessions.command_auth import (
    command_tag, CommandSigner, TAG_BYTES, tag_matches)
from viam_session.sessions.table import NotAuthenticated, SessionError, SessionTable


@pytest.fixture
def table():
    return SessionTable(clock=lambda: 100.0)


def test_a_tag_covers_every_field_and_the_key():
    """Changing the key, handle, resource, value or sequence changes the tag."""
    tag = command_tag('s' * 32, 'h' * 16, '/motor', 0.5, 7)
    assert len(tag) == TAG_BYTES
    assert tag_matches('s' * 32, 'h' * 16, '/motor', 0.5, 7, tag)
    for changed in (('t' * 32, 'h' * 16, '/motor', 0.5, 7),
                    ('s' * 32, 'g' * 16, '/motor', 0.5, 7),
                    ('s' * 32, 'h' * 16, '/motos', 0.5, 7),
                    ('s' * 32, 'h' * 16, '/motor', 0.50001, 7),
                    ('s' * 32, 'h' * 16, '/motor', 0.5, 8)):
        assert not tag_matches(*changed, tag)
    # Length prefixes: moving a character from the handle into the resource is another tag.
    assert command_tag('k', 'ab', 'c', 1.0, 1) != command_tag('k', 'a', 'bc', 1.0, 1)
    assert not tag_matches('s' * 32, 'h' * 16, '/motor', 0.5, 7, b'')
    assert not tag_matches('s' * 32, 'h' * 16, '/motor', 0.5, 7, tag[:-1])


def test_the_signer_numbers_commands_from_where_the_robot_left_off():
    """A resumed client goes on above the last sequence the robot accepted."""
    signer = CommandSigner('s' * 32, 'h' * 16, last_sequence=41)
    sequence, tag = signer.sign('/motor', 0.25)
    assert sequence == 42
    assert tag == command_tag('s' * 32, 'h' * 16, '/motor', 0.25, 42)
    assert signer.sign('/motor', 0.25)[0] == 43


def test_authentic_commands_pass_in_order_and_replays_are_refused(table):
    """The owner's commands pass; a replayed or overtaken one is refused, claiming nothing."""
    session = table.start('owner')
    signer = CommandSigner(session.secret, session.handle)
    first = signer.sign('/motor', 0.5)
    second = signer.sign('/motor', -0.5)
    table.authenticate(session.handle, '/motor', 0.5, *first)
    table.authenticate(session.handle, '/motor', -0.5, *second)
    assert session.command_sequence == second[0]
    for sequence, tag, value in ((*first, 0.5), (*second, -0.5)):
        with pytest.raises(NotAuthenticated, match='replayed'):
            table.authenticate(session.handle, '/motor', value, sequence, tag)
    assert session.command_sequence == second[0]


def test_forged_commands_are_refused_without_the_secret(table):
    """The handle alone, another session's key or a wrong value: not authenticated."""
    victim = table.start('victim')
    thief = table.start('thief')
    attempts = [
        (victim.handle, 1.0, 1, b''),
        (victim.handle, 1.0, 1, command_tag(thief.secret, victim.handle, '/motor', 1.0, 1)),
        (victim.handle, 1.0, 1, command_tag(victim.handle, victim.handle, '/motor', 1.0, 1)),
        (victim.handle, -1.0, 1, command_tag(victim.secret, victim.handle, '/motor', 1.0, 1)),
        ('0' * 16, 1.0, 1, command_tag(victim.secret, '0' * 16, '/motor', 1.0, 1)),
    ]
    for handle, value, sequence, tag in attempts:
        with pytest.raises(NotAuthenticated):
            table.authenticate(handle, '/motor', value, sequence, tag)
    assert victim.command_sequence == 0   # nothing forged moved the sequence on


def test_an_authentic_command_of_a_session_that_is_over_is_refused_with_the_reason(table):
    """Authenticated but over: the claim says why, for the client (not a forgery)."""
    session = table.start('late')
    table.end(session.secret)
    sequence, tag = CommandSigner(session.secret, session.handle).sign('/motor', 0.5)
    table.authenticate(session.handle, '/motor', 0.5, sequence, tag)
    with pytest.raises(SessionError, match='is over, ended by its client') as refused:
        table.claim(session.handle, '/motor')
    assert not isinstance(refused.value, NotAuthenticated)


def test_nan_values_have_a_tag_too(table):
    """A NaN command is authenticated like any other: refusing NaN is the manager's job."""
    session = table.start('careless')
    sequence, tag = CommandSigner(session.secret, session.handle).sign('/motor', math.nan)
    table.authenticate(session.handle, '/motor', math.nan, sequence, tag)
