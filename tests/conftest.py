"""Session-wide settings: what the tests build by default is cached under ``build/``, never in
the user's cache folder."""

import os
from pathlib import Path

import pytest

#: The Verilator build cache of the tests (``$SRIOV_EP_CACHE``), shared by every test of a run
#: and by later runs, so that a configuration is built once.
TEST_CACHE = Path(__file__).resolve().parent.parent / "build" / "cache"


def pytest_configure(config):
    # Set before any test runs, so that subprocesses (the console script) inherit it too.
    os.environ["SRIOV_EP_CACHE"] = str(TEST_CACHE)


def unavailable(reason):
    """A tool a test needs is missing: skip locally; in CI (``$CI`` set) every test must run,
    so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def verilator():
    """The Verilator command and environment (``sriov_ep.tools.external.verilator_command``)."""
    from sriov_ep.tools.external import ToolMissing, verilator_command
    try:
        return verilator_command()
    except ToolMissing as exc:
        unavailable(f"Verilator not installed: {exc}")


@pytest.fixture(scope="session")
def cosim_toolchain():
    """The co-simulation tools (``sriov_tb.cosim.find_toolchain``)."""
    from sriov_tb.cosim import ToolMissing, find_toolchain
    try:
        return find_toolchain()
    except ToolMissing as exc:
        unavailable(f"co-simulation tools not installed: {exc}")
