"""Fixtures shared by the test modules."""

from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import settings

# The suite's property tests draw the same examples on every run and every machine, and no example
# database carries a failure from one run into the next: a test fails at random nowhere. The
# ``explore`` profile draws new examples from the seed given with ``--hypothesis-seed``
# (benchmarks/explore_properties.py runs it with many seeds); each counterexample it finds is pinned
# in the suite as an ``@example``.
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("TAPEFIX_HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def verifier():
    """One TensorFlow verifier process for the whole test session (TensorFlow is imported once)."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed")
    from tapefix.verify import ProbeVerifier

    shared = ProbeVerifier()
    yield shared
    shared.close()
