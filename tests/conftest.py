"""Shared test setup.

In CI (`SYMGRAD_REQUIRE_ORACLE=1`, set by .ci/run) torch must be importable: the oracle tests compare
symgrad with torch and must never be skipped there.
"""
import os

import pytest


def pytest_configure(config):
    if os.environ.get("SYMGRAD_REQUIRE_ORACLE") == "1":
        try:
            import torch  # noqa: F401
        except ImportError as error:
            raise pytest.UsageError(f"SYMGRAD_REQUIRE_ORACLE=1 but torch cannot be imported: {error}")
