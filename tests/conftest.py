"""Session-wide settings: what the tests build by default is cached under ``build/``, never in
the user's cache folder."""

import os
from contextlib import contextmanager
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


class NativeBackend:
    """The native backend (``sriov_tb.native``, docs/native-backend.md) for tests that drive
    the exported design themselves: ``model(params)`` gives a reset :class:`NativeModel` of
    ``params``'s endpoint (built once per configuration in ``build/cache/native``, the build
    shared by the xdist workers and by later runs), ``complete(coroutine)`` runs a testbench
    coroutine on it."""

    def __init__(self, tools):
        self.tools = tools

    def build(self, params):
        from sriov_tb.native import build_native, default_build_dir
        return build_native(params, build_dir=default_build_dir(), tools=self.tools)

    @contextmanager
    def model(self, params):
        from sriov_tb.native import NativeModel
        with NativeModel(self.build(params), params) as model:
            model.reset()
            yield model

    @staticmethod
    def complete(coroutine):
        """Run ``coroutine`` to its end and return its value (:func:`sriov_tb.native.complete`)."""
        from sriov_tb.native import complete
        return complete(coroutine)


@pytest.fixture(scope="session")
def native_tools():
    """The native backend's toolchain (:func:`sriov_tb.native.find_native_toolchain`); skipped
    (failed in CI) without it."""
    from sriov_tb.native import ToolMissing, find_native_toolchain
    try:
        return find_native_toolchain()
    except ToolMissing as exc:
        unavailable(f"native backend tools not installed: {exc}")


@pytest.fixture(scope="session")
def native(native_tools):
    """A :class:`NativeBackend`; skipped (failed in CI) without its tools."""
    return NativeBackend(native_tools)
