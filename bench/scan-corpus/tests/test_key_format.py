"""Parser cases for Keyward API keys: every key here is malformed."""
import pytest

from keyward_client.keys import parse_key, KeyFormatError

MALFORMED = [
    # environment changed after the checksum was computed
    "kw_test_xbCdfyuGGRNXWeLsUVWd6zmPrqNmtRP65xVhROgddx34ALcN6",
    # prefix longer than 12 characters
    "abcdefghijklm_live_7JbtJQCcCE5KUlF5sJv1FW8hSPZLBjKABJGLz6INKmE2PAzEF",
    # unknown environment
    "kw_prod_7JbtJQCcCE5KUlF5sJv1FW8hSPZLBjKABJGLz6INKmE1H9Y0J",
    # upper-case prefix
    "KW_live_7JbtJQCcCE5KUlF5sJv1FW8hSPZLBjKABJGLz6INKmE4eIYtp",
    # body one character short
    "kw_live_7JbtJQCcCE5KUlF5sJv1FW8hSPZLBjKABJGLz6INKm0u1UIi",
]


@pytest.mark.parametrize("key", MALFORMED)
def test_rejects(key):
    with pytest.raises(KeyFormatError):
        parse_key(key)
