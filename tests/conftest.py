"""Session-wide settings: what the tests build by default is cached under ``build/``, never in
the user's cache folder."""

import os
from pathlib import Path

#: The Verilator build cache of the tests (``$SRIOV_EP_CACHE``), shared by every test of a run
#: and by later runs, so that a configuration is built once.
TEST_CACHE = Path(__file__).resolve().parent.parent / "build" / "cache"


def pytest_configure(config):
    # Set before any test runs, so that subprocesses (the console script) inherit it too.
    os.environ["SRIOV_EP_CACHE"] = str(TEST_CACHE)
