"""A client's text quoted in a refusal or a log line, shortened: what it sent, not its size."""

__all__ = ['quoted', 'SHOWN_CHARACTERS']

# Enough to recognise an id, a topic or a name; a request field may be megabytes long.
SHOWN_CHARACTERS = 80


def quoted(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """
    Return `repr(text)` if that is at most `limit` characters, else its start and length.

    The limit is on the quote, not on the text: one character may take ten to escape.
    """
    prefix = text[:limit]
    if prefix == text and len(repr(text)) <= limit:
        return repr(text)
    while len(repr(prefix)) > limit:
        prefix = prefix[:-1]
    return f'{prefix!r}... ({len(text)} characters)'
