"""JSON at orjson's speed, exactly as the standard library reads and writes it, on what vendors really send."""

import json

import pytest
import requests

from sync_pipelines.lib import json_codec

TEXTS = [
    '{"Total": 12.5, "Name": "Café", "Lines": [{"Qty": 2}], "Gone": null}',
    '{"Total": NaN, "Tax": Infinity}',  # sent by the sandbox's poison records, accepted by json.loads
    '{"Id": 123456789012345678901234567890}',  # beyond 64 bits: orjson would make it a float
    '{"Id": -9223372036854775809}',
    '{"Name": "\\ud800 alone"}',  # an escaped lone surrogate
    '{"Amount": 1e400}',
    "[1, 2]",
]


@pytest.mark.parametrize("text", TEXTS)
def test_loads_reads_what_the_standard_library_reads(text):
    for given in (text, text.encode()):
        value = json_codec.loads(given)
        assert repr(value) == repr(json.loads(text))


def test_loads_each_reads_each_text_as_the_standard_library_does_in_and_across_batches_checked_together():
    plain = '{"Total": 12.5, "Lines": [{"Qty": 2}]}'
    suspect = '{"Id": 1234567890123456789}'  # 19 digits: orjson reads these right, but they are checked apart
    texts = [plain] * 1_000 + [suspect] * 1_500 + TEXTS + [plain] * 10 + ["1234567890", "1234567890"]
    values = list(json_codec.loads_each(texts))
    assert len(values) == len(texts)
    assert [repr(value) for value in values] == [repr(json.loads(text)) for text in texts]


def test_sorted_text_leaves_to_the_standard_library_what_orjson_would_change():
    assert json_codec.sorted_text({"b": 1, "a": "Café"}) == '{"a":"Café","b":1}'
    for value in ({"a": float("nan")}, {"a": 2**70}, {"a": "\ud800"}, {"a": None}):
        assert json_codec.sorted_text(value) is None


def test_response_json_reads_nan_and_raises_requests_error_on_what_is_no_json():
    def response(body: bytes) -> requests.Response:
        answer = requests.Response()
        answer._content, answer.status_code = body, 200
        return answer

    assert repr(json_codec.response_json(response(b'{"Total": NaN}'))) == repr({"Total": float("nan")})
    with pytest.raises(requests.JSONDecodeError):
        json_codec.response_json(response(b"<html>Bad gateway</html>"))
