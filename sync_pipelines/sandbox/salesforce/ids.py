"""Salesforce record ids (salesforce.md §7): 15-char case-sensitive base-62, 18-char form with a case checksum.

Sandbox ids are the key prefix, the org's pod part and a base-62 sequence number, so ids sort (as bytes) in
creation order, like real ids do within one org, and no two orgs share an id, like real ones.
"""

import string

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase  # ASCII order: sorting is numeric
_CHECKSUM = string.ascii_uppercase + "012345"
FIRST_POD = "5g0"  # the first org's: its account ids read 0015g0...
_SEQUENCE_DIGITS = 9


def _base62(number: int) -> str:
    digits = ""
    while number:
        number, digit = divmod(number, 62)
        digits = BASE62[digit] + digits
    return digits


def pod(org: int = 1) -> str:
    """The three id characters after the key prefix that tell the org-th org's ids from any other org's."""
    return FIRST_POD[0] + _base62(BASE62.index(FIRST_POD[1]) * 62 + org - 1).rjust(2, "0")


def checksum(id15: str) -> str:
    """Per group of 5 chars, bit i set when char i is an upper-case letter; 0-25 -> A-Z, 26-31 -> 0-5."""
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, char in enumerate(id15[start : start + 5]) if char in string.ascii_uppercase)
        suffix += _CHECKSUM[bits]
    return suffix


def make_id(prefix: str, number: int, org_pod: str = FIRST_POD) -> str:
    """The 18-char id of the number-th record with this key prefix in the org of this pod."""
    id15 = prefix + org_pod + _base62(number).rjust(_SEQUENCE_DIGITS, "0")
    return id15 + checksum(id15)


def sequence(record_id: str) -> int:
    """The sequence number make_id encoded."""
    number = 0
    for char in record_id[6:15]:
        number = number * 62 + BASE62.index(char)
    return number


def normalize(value: str) -> str | None:
    """The canonical 18-char id for a 15- or 18-char input, or None when it is not an id.

    The 18-char form is case-insensitive: its checksum restores the case of the first 15 chars.
    """
    if len(value) == 15 and all(char in BASE62 for char in value):
        return value + checksum(value)
    if len(value) != 18 or not all(char in BASE62 for char in value):
        return None
    restored = ""
    for group, check in enumerate(value[15:]):
        position = _CHECKSUM.find(check.upper())
        if position < 0:
            return None
        for i, char in enumerate(value[group * 5 : group * 5 + 5]):
            restored += char.upper() if position >> i & 1 else char.lower()
    return restored + checksum(restored)
