"""Names and text from requests, as refusals show them: checked in one line, quoted short."""

import ast

from hypothesis import given
from hypothesis import strategies as st
import pytest

from viam_session.sessions.names import check_node_name, check_topic_name, MAX_TOPIC_LENGTH
from viam_session.sessions.quoting import quoted, SHOWN_CHARACTERS


@given(st.text())
def test_a_quote_is_short_and_says_how_long_the_text_was(text):
    shown = quoted(text)
    if len(repr(text)) <= SHOWN_CHARACTERS:
        assert shown == repr(text)
    else:
        quote, _, length = shown.rpartition('... (')
        assert len(quote) <= SHOWN_CHARACTERS
        assert length == f'{len(text)} characters)'
        assert text.startswith(ast.literal_eval(quote))


@pytest.mark.parametrize('topic, reason', [
    ('', 'topic name must not be empty'),
    ('hb', "bad heartbeat topic 'hb': topic name must be absolute, it must lead with a '/'"),
    ('/a b', "bad heartbeat topic '/a b': topic name must not contain characters other than"),
    ('/a/{node}', 'must not contain characters other than'),
    ('/a//b', "topic name must not contain repeated '/'"),
    ('/a/1b', 'topic name must not have a token that starts with a number'),
    ('/a/', "topic name must not end with a '/'"),
    ('/' + 'a' * MAX_TOPIC_LENGTH, f'(248 characters): longer than {MAX_TOPIC_LENGTH} characters'),
])
def test_a_bad_topic_name_is_refused_in_one_line(topic, reason):
    with pytest.raises(ValueError) as refused:
        check_topic_name(topic, 'heartbeat topic')
    assert reason in str(refused.value)
    assert '\n' not in str(refused.value)


@pytest.mark.parametrize('topic', ['/a', '/session_manager/heartbeat/c_0f', '/' + 'a' * 246])
def test_a_full_topic_name_passes(topic):
    check_topic_name(topic, 'heartbeat topic')


@pytest.mark.parametrize('node, reason', [
    ('relative', "bad client_node 'relative': it must be fully qualified (start with /)"),
    ('/', "bad client_node '/': node name must not be empty"),
    ('/ns/', 'node name must not be empty'),
    ('/bad name', 'node name must not contain characters other than alphanumerics'),
    ('/1node', 'node name must not start with a number'),
    ('/ns//node', "namespace must not end with a '/'"),
    ('/n s/node', 'namespace must not contain characters other than'),
])
def test_a_bad_node_name_is_refused_in_one_line(node, reason):
    with pytest.raises(ValueError) as refused:
        check_node_name(node, 'client_node')
    assert reason in str(refused.value)
    assert '\n' not in str(refused.value)


@pytest.mark.parametrize('node', ['/node', '/robot/arm/node', '/session_client_0fa1'])
def test_a_fully_qualified_node_name_passes(node):
    check_node_name(node, 'client_node')
