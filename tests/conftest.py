"""Session-wide settings: what the tests build by default is cached under ``build/``, never in
the user's cache folder."""

import os
import re
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


class VerilogBuilds:
    """``sriov_ep.tools.build.write_build`` of named configurations, each written once per
    session (at its own ``clock_mhz``, ``config_name`` the name) into a folder of its own:
    tests/test_build.py and tests/test_wrapper.py both read the builds of igb-82576, many-vfs
    and the MSI-X-free two-PF 82576 (an export takes seconds of Amaranth and Yosys)."""

    def __init__(self, tmp_path_factory):
        self._factory = tmp_path_factory
        self._builds = {}

    def get(self, name, params):
        """The paths (``write_build``'s dict) of ``params`` built under ``name``; a name is
        one configuration."""
        if name not in self._builds:
            from sriov_ep.tools.build import write_build
            folder = self._factory.mktemp(f"build-{name}")
            self._builds[name] = params, write_build(params, folder, config_name=name)
        built, paths = self._builds[name]
        assert built == params, f"{name}: built from other parameters"
        return paths


@pytest.fixture(scope="session")
def verilog_builds(tmp_path_factory):
    """The session's :class:`VerilogBuilds`."""
    return VerilogBuilds(tmp_path_factory)


# -- Order under xdist ------------------------------------------------------------------------
#
# With ``--dist loadgroup`` xdist hands each worker one test (or one group) at a time, in
# collection order, whenever it has two or fewer left. Collected in file order, a 2-minute
# test could start last and keep one worker busy while the other idles; so under loadgroup the
# collection is sorted longest first (by the costs below), and the modules whose
# module-scoped fixtures are expensive run as one group on one worker (else each worker that
# gets one of their tests builds the fixture again). Without ``--dist loadgroup`` (``-n 0``,
# or plain ``--dist load``, which hands out long runs of consecutive tests at the start, so
# that a sorted collection would put every long test on one worker) the order is left alone.

#: Seconds of worker time of the longest tests (and of the grouped modules, setup included) in
#: one CI run (``CI=true ./.ci/run``, fresh clone, Verilator builds included) on the project's
#: 2-core machine, by node ID (``*`` matches anything; the first pattern that matches
#: counts). The figures only order the tests: a test missing here runs after these, in file
#: order.
COSTS = {
    # The random regressions (tests/test_regress.py): the 16-PF device far the longest.
    # A million transactions each: CPU seconds of `sriov-ep regress CONFIG --count 1000000`
    # (docs/regressions.md), builds not included.
    "tests/test_regress.py::test_random_transactions[cpm5-16pf]": 560,
    "tests/test_regress.py::test_random_transactions[quad-pf]": 175,
    "tests/test_regress.py::test_random_transactions[igb-82576-dual]": 160,
    "tests/test_regress.py::test_random_transactions[igb-82576]": 125,     # (a build, often)
    "tests/test_regress.py::test_linux_life_cycle_65535_vfs": 115,
    "tests/test_regress.py::test_random_transactions[*]": 95,
    # The TLP wrapper: cocotbext-pcie's root complex on two Verilator builds of the wrapper,
    # the two-PF Linux run over TLPs, the wrapper's Verilator lints.
    "tests/test_tlp_cocotbext.py::*": 120,
    "tests/test_tlp_host.py::*dual*": 90,
    "tests/test_tlp_gateware.py::test_verilog_lints_clean*": 20,
    # Verilator builds (the first test that needs a model builds it, a test that needs it
    # meanwhile waits for it) and Amaranth simulations. The cocotb bench's model is the one
    # test_cosim's igb-82576 tests build: the bench is put after them (its run alone).
    "tests/test_cosim.py::test_transcripts_match[igb-82576-builtin]": 120,
    "tests/test_examples.py::test_cocotb_bench_passes": 20,
    "tests/test_random_multi.py::test_random_vs_model": 118,
    "tests/test_sriov_cap.py::test_linux_sequence[max-vfs]": 105,
    "tests/test_native.py::test_vcd_has_tracks_and_groups": 93,
    "tests/test_cosim.py::test_msix_pm_and_user_config_transcripts_match": 87,
    "tests/test_native.py::test_two_pfs_match": 86,
    "tests/test_cosim.py::test_two_pfs_transcripts_match": 100,
    "tests/test_cosim.py::test_transcripts_match[many-vfs-builtin]": 70,
    "tests/test_formal.py::test_every_example_proves[many-vfs-bar.l2]": 64,
    "tests/test_formal.py::test_property_passes[tiny-endpoint.ur.concurrent]": 63,
    "tests/test_routing_multi.py::test_routing_ids[mixed-3-ari]": 58,
    "tests/test_routing.py::test_endpoint_sampled_sweep_after_linux_enable[many-vfs-*]": 45,
    "tests/test_native.py::test_cli_sim_on_native": 30,
    "tests/test_native.py::test_lspci_dumps_match": 30,
    "tests/test_formal.py::test_every_example_proves[many-vfs-bar.l1]": 30,
    "tests/test_sriov_cap.py::test_random_vs_model[*]": 25,
    "tests/test_cli.py::test_progress_on_a_real_terminal": 25,
    "tests/test_endpoint.py::test_endpoint_65535_vfs_elaborates_and_simulates": 25,
    "tests/test_resets.py::test_requests_during_the_clear_at_65535_vfs": 23,
    "tests/test_routing_multi.py::test_routing_ids[*]": 20,
    "tests/test_routing.py::test_endpoint_sampled_sweep_after_linux_enable[*]": 18,
    "tests/test_memory.py::test_isolation_256_vfs": 18,
    "tests/test_formal.py::test_every_example_proves[*bar.l2*]": 15,
    "tests/test_formal.py::test_every_example_proves[*bar.l1*]": 8,
    "tests/test_formal.py::test_every_example_proves[*read_only*]": 8,
    "tests/test_cosim.py::test_*": 12,
    "tests/test_native.py::test_*": 5,
    "tests/test_formal.py::test_*": 3,
    # The grouped modules (below): a figure per test, so that the group's sum is about the
    # module's time, their module-scoped fixtures included.
    "tests/test_build.py::*": 2,
    "tests/test_wrapper.py::*": 3,
    "tests/test_lspci.py::*": 2,
    "tests/test_waves.py::test_verilator_dump_has_the_same_tracks": 52,
    "tests/test_waves.py::*": 2,
    "tests/test_user_caps_example.py::*": 4,
}

#: Modules run as one xdist group (on one worker), by group name: their module-scoped fixtures
#: build Verilog (test_build and test_wrapper share conftest's ``verilog_builds`` too) or run
#: simulations that the module's tests share.
GROUPS = {
    "tests/test_build.py": "verilog-builds",
    "tests/test_wrapper.py": "verilog-builds",
    "tests/test_lspci.py": "lspci",
    "tests/test_waves.py": "waves",
    "tests/test_user_caps_example.py": "user-caps-example",
}


_PATTERNS = [(re.compile(".*".join(map(re.escape, pattern.split("*")))), cost)
             for pattern, cost in COSTS.items()]


def _cost(nodeid):
    """The first of :data:`COSTS` whose pattern (``*``: anything) matches ``nodeid`` (the
    specific ones come first), else 0."""
    return next((cost for pattern, cost in _PATTERNS if pattern.fullmatch(nodeid)), 0.0)


@pytest.hookimpl(tryfirst=True)     # before xdist adds the group to the node IDs
def pytest_collection_modifyitems(config, items):
    if not getattr(config.option, "loadgroup", False):
        return
    group_cost = {}
    for item in items:
        group = GROUPS.get(item.nodeid.split("::", 1)[0])
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
            group_cost[group] = group_cost.get(group, 0.0) + _cost(item.nodeid)

    def key(item):
        group = GROUPS.get(item.nodeid.split("::", 1)[0])
        return -(group_cost[group] if group is not None else _cost(item.nodeid))

    items.sort(key=key)     # stable: equal costs (a group's tests) keep their order


# -- What each part costs ------------------------------------------------------------------------

#: Seconds of worker time per test module (set-up, call and teardown: module fixtures such as a
#: Verilator build count where they run), and of the tests marked ``slow``, gathered from the
#: reports (under xdist the controller receives every worker's).
_SECONDS = {"modules": {}, "slow": 0.0}


def pytest_runtest_logreport(report):
    modules = _SECONDS["modules"]
    module = report.nodeid.split("::", 1)[0]
    modules[module] = modules.get(module, 0.0) + report.duration
    if "slow" in report.keywords:
        _SECONDS["slow"] += report.duration


def pytest_terminal_summary(terminalreporter):
    """After the run, the worker time of each test module, largest first: the CI log says what
    each part of the suite costs."""
    modules = _SECONDS["modules"]
    total = sum(modules.values())
    if not modules or total <= 0:
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", "worker time by test module (set-up, call, teardown)")
    for module, seconds in sorted(modules.items(), key=lambda item: -item[1]):
        write(f"{seconds:9.1f} s {100 * seconds / total:5.1f}%  {module}")
    write(f"{total:9.1f} s  all modules; {_SECONDS['slow']:.1f} s of it the tests marked slow")
