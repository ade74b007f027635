"""Helpers for tests that hold symgrad side by side with torch (the oracle)."""
import pytest


def raised(fn):
    """The exception `fn()` raises (the test fails if it raises none)."""
    with pytest.raises(Exception) as caught:
        fn()
    return caught.value


def assert_raises_like_torch(ours, theirs, whole_message=False):
    """`ours()` raises torch's exception type with torch's first line (or whole message)."""
    want, got = raised(theirs), raised(ours)
    assert type(got) is type(want)
    if whole_message:
        assert str(got) == str(want)
    else:
        assert str(got).split("\n")[0] == str(want).split("\n")[0]
