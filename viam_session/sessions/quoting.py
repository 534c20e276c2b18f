"""A client's text quoted in a refusal or a log line, shortened: what it sent, not its size."""

__all__ = ['quoted', 'SHOWN_CHARACTERS']

# Enough to recognise an id, a topic or a name; a request field may be megabytes long.
SHOWN_CHARACTERS = 80


def quoted(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """Return `repr(text)`; past `limit` characters, its start and how long it is."""
    if len(text) <= limit:
        return repr(text)
    return f'{text[:limit]!r}... ({len(text)} characters)'
