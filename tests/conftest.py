"""Fixtures shared by the test modules."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(scope="session")
def verifier():
    """One TensorFlow verifier process for the whole test session (TensorFlow is imported once)."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed")
    from tapefix.verify import ProbeVerifier

    shared = ProbeVerifier()
    yield shared
    shared.close()
