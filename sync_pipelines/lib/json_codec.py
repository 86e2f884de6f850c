"""JSON read and written at orjson's speed wherever orjson gives exactly what the standard library gives.

Pages and landed records are parsed and serialised once per record, so JSON is a large part of a big sync's CPU.
orjson is several times faster, but not the same everywhere: it reads an integer beyond 64 bits as a float, and
refuses NaN, Infinity and lone surrogates that vendors do send (and that must land, to be quarantined with a
reason). Those texts and values go through the standard library, so what lands is what came.
"""

import json
from collections.abc import Iterator, Sequence

import orjson
import requests

# Digits in a row beyond what a 64-bit integer holds, orjson would read as a float. Found by mapping every digit
# to "0" and searching for a run: a regular expression takes longer than the parse.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
# Texts read together by `loads_each`: one check of their joined text in place of one check each.
_CHECKED_TOGETHER = 1_000


def loads(text: bytes | str) -> object:
    """The value of a JSON text, as `json.loads` reads it."""
    try:
        data = text.encode() if isinstance(text, str) else text
    except UnicodeEncodeError:  # a lone surrogate in the text itself
        return json.loads(text)
    return json.loads(text) if _LONG_RUN in data.translate(_DIGITS_AS_ZERO) else _without_long_integers(text)


def loads_each(texts: Sequence[str]) -> Iterator[object]:
    """Each text's value, as `loads` reads it, one at a time. Made for many small texts (landed records): the
    check for long integers, which costs a third of a record's parse when made alone, is made for a thousand at
    once."""
    for start in range(0, len(texts), _CHECKED_TOGETHER):
        batch = texts[start : start + _CHECKED_TOGETHER]
        try:
            # Joined by a line break, so that no run of digits goes on from one text into the next.
            checked = _LONG_RUN not in "\n".join(batch).encode().translate(_DIGITS_AS_ZERO)
        except UnicodeEncodeError:  # a lone surrogate in a text itself
            checked = False
        yield from map(_without_long_integers if checked else loads, batch)


def _without_long_integers(text: bytes | str) -> object:
    """The value of a text known to hold no integer beyond 64 bits: orjson's reading, or the standard library's
    where orjson refuses the text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN, Infinity, an escaped lone surrogate, or not JSON at all
        return json.loads(text)


def sorted_text(value: object) -> str | None:
    """`value` as compact JSON with sorted keys, or None when only the standard library can write it (NaN or an
    infinity, which orjson would write as null; an integer beyond 64 bits; a lone surrogate)."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    # orjson writes a non-finite float as null: a null in the text may be one, so the caller writes it instead.
    return None if b"null" in text else text.decode()


def response_json(response: requests.Response) -> object:
    """A response's JSON body as `Response.json()` gives it with the standard library, raising its error too:
    requests parses with simplejson whenever that is installed, and simplejson 3.19+ refuses the NaN that vendors
    send (and `loads` lands)."""
    try:
        return loads(response.content)
    except ValueError as error:
        raise requests.JSONDecodeError(str(error), getattr(error, "doc", ""), getattr(error, "pos", 0)) from error
