"""Scripts and the built-in scenario run on the RTL of devices with several PFs, every
completion scoreboarded against the reference model (``sriov_tb.runner.run_ops``).

Configurations: examples/multi-pf/igb-82576-dual.toml and quad-pf.toml, without MSI-X where a
test checks transcript lines literally (MSI-X adds the drivers' table accesses), and the dual
file as it is for the interrupts. Expected Routing IDs are the files'
documented layouts (Routing ID = PF + First VF Offset + (n-1) * VF Stride):

* dual, ARI offset 0x80 / stride 2: PF k's VF n at 0x0180 + k + 2(n-1); non-ARI 0x180 / 2:
  0x0280 + k + 2(n-1). Class 02 00 00, revision 01 (reg 0x08 reads 0x02000001).
* quad, ARI offsets 4 + 62k, stride 1: PF k's VF n at 0x0104 + 63k + (n-1). IDs 1234:4004,
  class 02 00 00, revision 00.

Memory addresses are LinuxHost's (the 32-bit window from 0x8000_0000 in PF order, the
64-bit prefetchable window from 0x1_0000_0000, each VF BAR a TotalVFs block): dual PF 0's VF
BAR0 at 0x1_0000_0000 and VF BAR3 at 0x1_0002_0000 (8 x 16 KiB each), PF 1's at 0x1_0004_0000
and 0x1_0006_0000.
"""

import asyncio
import contextlib
import dataclasses
import io
import re
from pathlib import Path

import pytest

from sriov_ep.params import load_params
from sriov_tb import waves as wv
from sriov_tb.cli import main
from sriov_tb.host import ModelEndpointPort, ModelMemoryPort
from sriov_tb.model import EndpointModel
from sriov_tb.runner import RunResult, builtin_scenario, execute, run_ops, traces_of
from sriov_tb.script import Op, parse_script
from sriov_tb.sim import ENDPOINT_VIEW, endpoint_view

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "multi-pf"
DUAL = EXAMPLES / "igb-82576-dual.toml"
QUAD = EXAMPLES / "quad-pf.toml"


def without_msix(params):
    return params.replace(pfs=tuple(dataclasses.replace(pf, msix=None, vf_msix=None)
                                    for pf in params.pfs))


def msix_free_toml(path, tmp_path):
    """A copy of the TOML file ``path`` without its ``[pf.msix]`` and ``[pf.sriov.vf_msix]``
    tables."""
    text = path.read_text()
    text = re.sub(r"^\[pf\.(sriov\.vf_)?msix\][^\n]*\n(?:[^\[\n][^\n]*\n)*", "", text,
                  flags=re.M)
    assert "msix]" not in text
    out = tmp_path / path.name
    out.write_text(text)
    return out


def dual_vf(k, n, *, ari=True):
    return (0x0180 if ari else 0x0280) + k + 2 * (n - 1)


def quad_vf(k, n):
    return 0x0104 + 63 * k + (n - 1)


def bdf(rid):
    return f"{rid >> 8:02x}:{(rid >> 3) & 0x1f:02x}.{rid & 7}"


def run(params, ops, **options):
    lines = []
    result = run_ops(params, ops, emit=lines.append, waves_on_failure=False, **options)
    return result, lines


def script(text):
    return parse_script(text, "test.script")


def walked(lines):
    """The VFs walked, in order (from the ``[walk BDF]`` steps)."""
    seen = []
    for line in lines:
        m = re.search(r"\[walk (\S+)\]$", line)
        if m and (not seen or seen[-1] != m.group(1)):
            seen.append(m.group(1))
    return seen


# -- The built-in scenario ----------------------------------------------------------------------

@pytest.mark.parametrize("ari", [True, False], ids=["ari", "non-ari"])
def test_dual_builtin_scenario(ari):
    """Enumerate both PFs, enable InitialVFs (8) on each, walk all 16 VFs: PF 0's, then PF 1's;
    the ARI Capable Hierarchy bit is set in PF 0's SR-IOV Control only."""
    params = without_msix(load_params(DUAL))
    result, lines = run(params, builtin_scenario(params), ari=ari)
    assert result.compared == len(result.transactions) == len(lines)
    assert walked(lines) == [bdf(dual_vf(k, n, ari=ari)) for k in (0, 1) for n in range(1, 9)]
    ctrl0 = "0x0019" if ari else "0x0009"       # VF Enable | VF MSE (| ARI Capable Hierarchy)
    expected = [
        "cfgrd 01:00.0 0x00e 1 SC 0x80 8 cycles  [enumerate]",      # multi-function
        "cfgrd 01:00.1 0x000 4 SC 0x10c98086 8 cycles  [enumerate]",
        "cfgrd 01:00.1 0x00e 1 SC 0x80 8 cycles  [enumerate]",
        f"cfgwr 01:00.0 0x168 2 SC {ctrl0} 8 cycles  [enable 8 01:00.0]",
        "cfgwr 01:00.1 0x168 2 SC 0x0009 8 cycles  [enable 8 01:00.1]",
        f"cfgrd {bdf(dual_vf(1, 1, ari=ari))} 0x008 4 SC 0x02000001 8 cycles  "
        f"[walk {bdf(dual_vf(1, 1, ari=ari))}]",
    ]
    for line in expected:
        assert line in lines
    probes = [f"cfgrd 01:00.{f} 0x000 4 UR 0xffffffff 8 cycles  [enumerate]" for f in range(2, 8)]
    # Without ARI, Linux probes functions 1..7 of a multi-function device; with ARI it follows
    # the Next Function Number chain (0 -> 1 -> end).
    assert all((p in lines) != ari for p in probes)


def small_quad():
    """quad-pf.toml with TotalVFs = InitialVFs = 2 per PF (Linux enables SR-IOV only with
    InitialVFs = TotalVFs), its VFs still in contiguous blocks: ARI offset (4 - k) + 2k, non-ARI
    0x100 + k, stride 1."""
    params = without_msix(load_params(QUAD))
    return params.replace(pfs=tuple(
        dataclasses.replace(pf, total_vfs=2, initial_vfs=2, first_vf_offset_ari=4 + k,
                            first_vf_offset_non_ari=0x100 + k)
        for k, pf in enumerate(params.pfs)))


@pytest.mark.parametrize("ari", [True, False], ids=["ari", "non-ari"])
def test_quad_builtin_scenario(ari):
    """Four PFs, each enabled with its 2 VFs (01:00.4 .. 01:00.7, 01:01.0 .. 01:01.3 with ARI;
    02:00.0 .. 02:00.7 without), walked in PF order."""
    params = small_quad()
    result, lines = run(params, builtin_scenario(params), ari=ari)
    assert result.compared == len(result.transactions)
    first = 0x0104 if ari else 0x0200
    assert walked(lines) == [bdf(first + i) for i in range(8)]
    for k in range(4):
        assert f"cfgrd 01:00.{k} 0x000 4 SC 0x40041234 8 cycles  [enumerate]" in lines
        assert f"cfgwr 01:00.{k} 0x150 2 SC 0x0002 8 cycles  [enable 2 01:00.{k}]" in lines
    ctrl0 = "0x0019" if ari else "0x0009"
    assert f"cfgwr 01:00.0 0x148 2 SC {ctrl0} 8 cycles  [enable 2 01:00.0]" in lines
    assert "cfgwr 01:00.3 0x148 2 SC 0x0009 8 cycles  [enable 2 01:00.3]" in lines
    last = bdf(first + 7)
    assert f"cfgrd {last} 0x008 4 SC 0x02000000 8 cycles  [walk {last}]" in lines


# -- Scripts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ari", [True, False], ids=["ari", "non-ari"])
def test_enable_both_disable_pf0_and_memory(ari):
    """Enable 8 on PF 0 and 3 on PF 1, write and read both PFs' VF BARs, disable PF 0: its VFs
    and their BAR apertures are gone, PF 1's VFs still answer and keep their memory."""
    params = without_msix(load_params(DUAL))
    pf0_vf1, pf0_vf8 = bdf(dual_vf(0, 1, ari=ari)), bdf(dual_vf(0, 8, ari=ari))
    pf1 = [bdf(dual_vf(1, n, ari=ari)) for n in (1, 2, 3, 4)]
    text = f"""
enable 01:00.0 8
enable 01:00.1 3
cfgrd {pf1[2]} 0x008 4 == 0x02000001
memwr 0x100000000 4 0x11223344        # PF 0 VF 1 BAR0
memwr 0x100044000 4 0x55667788        # PF 1 VF 2 BAR0
memwr 0x10003fff8 8 0x0102030405060708    # the last QWORD of PF 0's VF BAR3 block (VF 8)
memwr 0x100040000 8 0x1112131415161718    # the first of PF 1's VF BAR0 block (VF 1)
memrd 0x100000000 4 == 0x11223344
memrd 0x100044000 4 == 0x55667788
memrd 0x10003fff8 8 == 0x0102030405060708
memrd 0x100040000 8 == 0x1112131415161718
memrd 0x10004c000 4 == 0xffffffff     # PF 1 VF 4: beyond NumVFs
memrd 0x80060000 4                    # PF 1 BAR0
disable 01:00.0
cfgrd {pf0_vf1} 0x000 4 == 0xffffffff
cfgrd {pf0_vf8} 0x008 4 == 0xffffffff
cfgrd {pf1[0]} 0x008 4 == 0x02000001
cfgrd {pf1[2]} 0x008 4 == 0x02000001
cfgrd {pf1[3]} 0x008 4 == 0xffffffff
memrd 0x100000000 4 == 0xffffffff     # PF 0's VFs are gone
memrd 0x100044000 4 == 0x55667788
"""
    result, lines = run(params, script(text), ari=ari, filename="test.script")
    compared = sum(1 for t in result.transactions)
    assert result.compared == compared
    ours = [line for line in lines if re.search(r"\[line \d+\]$", line)]
    assert ours == [
        f"cfgrd {pf1[2]} 0x008 4 SC 0x02000001 8 cycles  [line 4]",
        "memwr 0x0000000100000000 4 SC 0x11223344 VF1 of 01:00.0 BAR0+0x0 3 cycles  [line 5]",
        "memwr 0x0000000100044000 4 SC 0x55667788 VF2 of 01:00.1 BAR0+0x0 3 cycles  [line 6]",
        "memwr 0x000000010003fff8 8 SC 0x0102030405060708 VF8 of 01:00.0 BAR3+0x3ff8 3 cycles"
        "  [line 7]",
        "memwr 0x0000000100040000 8 SC 0x1112131415161718 VF1 of 01:00.1 BAR0+0x0 3 cycles"
        "  [line 8]",
        "memrd 0x0000000100000000 4 SC 0x11223344 VF1 of 01:00.0 BAR0+0x0 3 cycles  [line 9]",
        "memrd 0x0000000100044000 4 SC 0x55667788 VF2 of 01:00.1 BAR0+0x0 3 cycles  [line 10]",
        "memrd 0x000000010003fff8 8 SC 0x0102030405060708 VF8 of 01:00.0 BAR3+0x3ff8 3 cycles"
        "  [line 11]",
        "memrd 0x0000000100040000 8 SC 0x1112131415161718 VF1 of 01:00.1 BAR0+0x0 3 cycles"
        "  [line 12]",
        "memrd 0x000000010004c000 4 UR 0xffffffff - 3 cycles  [line 13]",
        "memrd 0x0000000080060000 4 SC 0x00000000 PF 01:00.1 BAR0+0x0 3 cycles  [line 14]",
        f"cfgrd {pf0_vf1} 0x000 4 UR 0xffffffff 8 cycles  [line 16]",
        f"cfgrd {pf0_vf8} 0x008 4 UR 0xffffffff 8 cycles  [line 17]",
        f"cfgrd {pf1[0]} 0x008 4 SC 0x02000001 8 cycles  [line 18]",
        f"cfgrd {pf1[2]} 0x008 4 SC 0x02000001 8 cycles  [line 19]",
        f"cfgrd {pf1[3]} 0x008 4 UR 0xffffffff 8 cycles  [line 20]",
        "memrd 0x0000000100000000 4 UR 0xffffffff - 3 cycles  [line 21]",
        "memrd 0x0000000100044000 4 SC 0x55667788 VF2 of 01:00.1 BAR0+0x0 3 cycles  [line 22]",
    ]
    # The disable: VF Enable and VF MSE cleared in PF 0 only, then NumVFs 0.
    assert "cfgwr 01:00.0 0x168 2 SC 0x0010 8 cycles  [disable 01:00.0]" in lines \
        if ari else "cfgwr 01:00.0 0x168 2 SC 0x0000 8 cycles  [disable 01:00.0]" in lines
    assert not any("[disable" in line and "01:00.1" in line for line in lines)


def test_quad_flr_of_pf0_while_pf1_vfs_are_accessed():
    """PF 0's FLR: through Linux (``flr``: the state is restored, both PFs' VFs are walked
    after it), then by a raw Initiate FLR write followed at once by reads of PF 1's VFs. PF 0
    clears its VF state for a while (its reads complete with Request Retry Status and are
    reissued); PF 1's VFs answer at once all along."""
    params = without_msix(load_params(QUAD))
    pf1 = [bdf(quad_vf(1, n)) for n in (1, 2, 3)]
    ops = script(f"""\
enable 01:00.0 2
enable 01:00.1 3
flr 01:00.0
cfgrd 01:00.0 0x048 2 == 0x2810
cfgwr 01:00.0 0x048 2 0xa810          # Initiate FLR
cfgrd {pf1[0]} 0x008 4 == 0x02000000
cfgrd {pf1[1]} 0x008 4 == 0x02000000
cfgrd {pf1[2]} 0x008 4 == 0x02000000
cfgrd 01:00.0 0x000 4 == 0x40041234   # still clearing: Request Retry Status, reissued
cfgrd {bdf(quad_vf(0, 1))} 0x000 4 == 0xffffffff   # VF Enable was cleared
cfgrd {pf1[0]} 0x000 4 == 0xffffffff   # (a VF's Vendor ID)
""")
    ops.insert(3, Op("walk", 0, "walk every VF", rid=0x0100))     # after the flr
    result, lines = run(params, ops)
    assert result.compared == len(result.transactions)
    assert walked(lines) == ["01:00.4", "01:00.5", *pf1]
    # Linux restored PF 0's VF Enable after its FLR (sriov_restore_state).
    assert "cfgwr 01:00.0 0x148 2 SC 0x0019 8 cycles  [restore 01:00.0]" in lines
    assert result.rrs_by_rid.get(0x0100, 0) > 0
    assert set(result.rrs_by_rid) == {0x0100}
    assert f"cfgrd {pf1[2]} 0x008 4 SC 0x02000000 8 cycles  [line 8]" in lines
    assert f"cfgrd {bdf(quad_vf(0, 1))} 0x000 4 UR 0xffffffff 8 cycles  [line 10]" in lines


# -- Labels, waves, traces ----------------------------------------------------------------------

def test_wave_labels_and_view_name_the_pf(tmp_path):
    """Transaction tracks say ``VF 2 of 01:00.1`` and ``PF 01:00.1`` (memory); the port track
    ``VF 2 of PF 1``; the save file shows each PF's VF Enable and NumVFs and the decoder's PF."""
    params = without_msix(load_params(DUAL))
    ops = script("""
enable 01:00.1 2
cfgrd 01:10.3 0x008 4
memwr 0x100044000 4 0x55667788
memrd 0x80060000 4
""")
    vcd = tmp_path / "dual.vcd"
    run_ops(params, ops, vcd=vcd)
    text = vcd.read_text()
    for expected in [
        "CfgRd 01:00.1 PF @0x000 4B -> SC 0x10c98086",
        "CfgRd 01:10.3 VF 2 of 01:00.1 @0x008 4B -> SC 0x02000001",
        "MWr 0x100044000 4B 0x55667788 -> VF 2 of 01:00.1 BAR0+0x0 SC",
        "MRd 0x80060000 4B -> PF 01:00.1 BAR0+0x0 SC 0x00000000",
        "-> VF 2 of PF 1 BAR0 +0x0",
    ]:
        assert wv.escape(expected) in text, expected
    gtkw = vcd.with_suffix(".gtkw").read_text()
    for label in ["PF 0 VF Enable", "PF 1 VF Enable", "PF 0 NumVFs", "PF 1 NumVFs",
                  "pf (PF index)", "PF 1 reset", "VF reset: pf"]:
        assert "{" + label + "}" in gtkw, label
    assert re.search(r"\{PF 1 NumVFs\} \S*pfs\[1\]\.num_vfs", gtkw)


def test_views_and_traces():
    """One PF: the view and traces are what they always were; several: per PF, with ``pf``."""
    from amaranth.hdl import Fragment

    from sriov_ep.endpoint import SriovEndpoint
    from sriov_ep.params import EndpointParams

    def built(params):
        dut = SriovEndpoint(params)
        Fragment.get(dut, None)         # (elaborated: no UnusedElaboratable warning)
        return dut

    single = built(EndpointParams(total_vfs=4))
    assert endpoint_view(single) is ENDPOINT_VIEW
    traces = traces_of(single)
    assert len(traces["decoder"]) == 6 and len(traces["sriov_state"]) == 7
    dut = built(without_msix(load_params(DUAL)))
    view = dict(endpoint_view(dut))
    paths = [path for path, _, _ in view["sriov_state"]]
    assert paths[:3] == ["ari_capable_hierarchy", "pfs[0].vf_enable", "pfs[0].num_vfs"]
    assert "pfs[1].num_vfs" in paths
    assert "decoder.pf" in [path for path, _, _ in view["decoder"]]
    traces = traces_of(dut)
    assert any(signal is dut.decoder.pf for signal in traces["decoder"])
    assert len(traces["sriov_state"]) == 1 + 2 * 6


def test_labels_with_model_drivers():
    """The wave labels and memory texts through :func:`execute` with model drivers (a memory
    driver with ``decode`` only, as a backend without MSI-X table access has)."""

    class DecodeOnly:
        def __init__(self, model):
            self._port = ModelMemoryPort(model)

        async def decode(self, addr, write):
            return await self._port.decode(addr, write)

    params = load_params(DUAL)
    model = EndpointModel(params)
    tracer = wv.Tracer()
    result = RunResult()
    lines = []

    async def idle(_cycles):
        pass

    ops = script("""\
enable 01:00.0 1
enable 01:00.1 2
cfgrd 01:10.3 0x000 2
memwr 0x100044000 4 0x55667788
memrd 0x80000000 4
""")
    asyncio.run(execute(params, ops, cfg_driver=ModelEndpointPort(model),
                        mem_driver=DecodeOnly(model), idle=idle, result=result,
                        emit=lines.append, tracer=tracer))
    texts = list(tracer.texts.values())
    assert "CfgRd 01:10.3 VF 2 of 01:00.1 @0x000 2B -> SC 0xffff" in texts
    assert "CfgRd 01:10.0 VF 1 of 01:00.0 @0x000 4B -> SC 0xffffffff" in texts
    assert "MWr 0x100044000 4B 0x55667788 -> VF 2 of 01:00.1 BAR0+0x0 SC" in texts
    assert "memwr 0x0000000100044000 4 SC 0x55667788 VF2 of 01:00.1 BAR0+0x0  [line 4]" \
        in lines
    assert "memrd 0x0000000080000000 4 SC 0x00000000 PF 01:00.0 BAR0+0x0  [line 5]" in lines


# -- Command line ---------------------------------------------------------------------------------

def test_cli_sim_runs_a_multi_pf_script(tmp_path):
    config = msix_free_toml(DUAL, tmp_path)
    path = tmp_path / "both.script"
    path.write_text("enable 01:00.0 1\nenable 01:00.1 1\ncfgrd 01:10.1 0x008 4 == 0x02000001\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sim", str(config), str(path)]) == 0
    lines = out.getvalue().splitlines()
    assert "cfgrd 01:10.1 0x008 4 SC 0x02000001 8 cycles  [line 3]" in lines
    assert re.fullmatch(r"# (\d+) transactions, \1 completions checked against the reference "
                        r"model: all match", lines[-1])


#: Interrupts on both PFs of the dual 82576 with MSI-X (ARI layout: PF k's VF n is
#: 01:10.0 + k + 2(n-1) as a Routing ID, 0x0180 + k + 2(n-1)).
DUAL_MSIX_SCRIPT = """\
enable 01:00.0 4
enable 01:00.1 4
msix 01:10.3 0 == pending        # VF 2 of PF 1: no driver yet, MSI-X off
msix_enable 01:00.1 10
msix_enable 01:10.3 3            # its pending vector 0 goes out now
msix 01:00.1 9 == sent
msix 01:10.3 2 == sent
msix 01:10.3 3 == dropped        # beyond its Table Size of 3
msix 01:10.2 0 == pending        # VF 2 of PF 0 has no driver
msix_enable 01:10.2 3
msix 01:10.2 1 == sent
flr 01:00.0
msix 01:10.3 1 == sent           # PF 0's FLR leaves PF 1's VFs and their MSI-X alone
"""


def test_dual_with_msix():
    """The dual 82576 as its file describes it, MSI-X included: the built-in scenario, then
    interrupts from both PFs' VFs, every completion, table access and message checked against
    the model; the messages name the right function."""
    params = load_params(DUAL)
    ops = parse_script(DUAL_MSIX_SCRIPT, "dual-msix.script")
    lines = []
    result = run_ops(params, ops, emit=lines.append, waves_on_failure=False)
    assert result.compared > 100
    # Each interrupt: who raised it, and what came of it (a message names its Requester ID).
    outcomes = []
    for line in lines:
        if line.startswith("msix "):
            who, what = line.split("  [")[0].split(": ", 1)
            outcomes.append((who, what.split()[-1] if what.startswith("MWr") else what))
    assert outcomes == [
        ("msix 01:10.3 (VF 2 of 01:00.1) vector 0", "pending"),
        ("msix 01:00.1 (PF) vector 9", "01:00.1"),
        ("msix 01:10.3 (VF 2 of 01:00.1) vector 2", "01:10.3"),
        ("msix 01:10.3 (VF 2 of 01:00.1) vector 3", "dropped"),
        ("msix 01:10.2 (VF 2 of 01:00.0) vector 0", "pending"),
        ("msix 01:10.2 (VF 2 of 01:00.0) vector 1", "01:10.2"),
        ("msix 01:10.3 (VF 2 of 01:00.1) vector 1", "01:10.3"),
    ]
