"""WriterPresence: a topic counts as gone only when its writer is missing on two checks."""

from typing import Dict

from viam_session.sessions.writer_presence import WriterPresence


def test_a_writer_missing_on_two_checks_in_a_row_is_gone() -> None:
    writers: Dict[str, int] = {'/a': 1, '/b': 1}
    presence = WriterPresence(lambda topic: writers.get(topic, 0))
    assert presence.gone(['/a', '/b']) == []
    writers['/a'] = 0
    assert presence.gone(['/a', '/b']) == []      # one check could catch the graph mid-update
    assert presence.gone(['/a', '/b']) == ['/a']


def test_a_writer_back_between_checks_starts_the_count_again() -> None:
    writers = {'/a': 0}
    presence = WriterPresence(lambda topic: writers[topic])
    assert presence.gone(['/a']) == []
    writers['/a'] = 1
    assert presence.gone(['/a']) == []
    writers['/a'] = 0
    assert presence.gone(['/a']) == []
    assert presence.gone(['/a']) == ['/a']


def test_only_the_topics_checked_now_count() -> None:
    presence = WriterPresence(lambda topic: 0)
    assert presence.gone(['/a']) == []
    assert presence.gone(['/b']) == []     # /a no longer held: its earlier miss is forgotten
    assert presence.gone(['/a', '/b']) == ['/b']
