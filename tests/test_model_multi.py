"""Unit tests of the reference model of a device with several PFs (``sriov_tb.model``).

Expected values are literal numbers from PCIe Base (Header Type §7.5.1.1.9, ARI §7.8.7, ACS
§7.7.11), ``../shared/reference/sriov-spec.md`` and ``docs/multi-pf.md`` (§2-§4, §9), or Routing
IDs computed here from the offsets and strides written in this file; none comes from the model's
own formulas or from ``sriov_ep.caps``.

Two devices, both on bus 1 with PFs at functions 0..P-1:

* DUAL, 82576-like: PFs 01:00.0 and 01:00.1, 8 VFs each, ARI offset 0x80 / stride 2 (PF 0's VFs
  01:10.0, 10.2 .. 11.6; PF 1's 01:10.1 .. 11.7), non-ARI 0x180 / 2 (02:10.0 .. 02:11.7).
* QUAD: PFs 01:00.0-3, 63 VFs each, stride 1; ARI offset 4 + 62k (PF k's VF 1 at 0x104 + 63k),
  non-ARI 0x100 + 62k (PF k's VF 1 at 0x200 + 63k).
"""

import pytest

from sriov_ep.params import AcsParams, Bar, EndpointParams, MsixParams, PfParams, UserCap
from sriov_tb.model import EndpointModel, MemoryResult

TYPE0, TYPE1 = False, True
K = 1024

SRIOV = 0x140                   # SR-IOV capability (default offset)
CONTROL = SRIOV + 0x08
NUM_VFS = SRIOV + 0x10
OFFSET_STRIDE = SRIOV + 0x14
SYS_PAGE = SRIOV + 0x20
VF_BAR0 = SRIOV + 0x24
ACS = 0x180                     # ACS: right after SR-IOV (0x140 + 0x40)
ARI = 0x100

VFE, MSE, ARI_BIT = 0x01, 0x08, 0x10


def dual_params(acs=None):
    pf0 = PfParams(vendor_id=0x8086, device_id=0x10C9, pf_rid=0x0100,
                   pf_bars=(Bar(0, 128 * K), Bar(3, 16 * K)), total_vfs=8,
                   vf_device_id=0x10CA, first_vf_offset_ari=0x80, vf_stride_ari=2,
                   first_vf_offset_non_ari=0x180, vf_stride_non_ari=2,
                   vf_bars=(Bar(0, 16 * K, True, True),),
                   msix=MsixParams(vectors=10, table_bar=3, table_offset=0, pba_bar=3,
                                   pba_offset=0x2000),
                   **({} if acs is None else {"acs": acs}))
    return EndpointParams(pfs=(pf0, pf0.replace(pf_rid=0x0101)))


def quad_params():
    pfs = tuple(PfParams(pf_rid=0x0100 + k, total_vfs=63, first_vf_offset_ari=4 + 62 * k,
                         vf_stride_ari=1, first_vf_offset_non_ari=0x100 + 62 * k,
                         vf_stride_non_ari=1, vf_bars=(Bar(0, 4 * K),))
                for k in range(4))
    return EndpointParams(pfs=pfs)


# Where PF k's VF n sits, written from the layouts in the docstring.
def dual_vf_rid(k, n, ari):
    return (0x0180 if ari else 0x0280) + k + 2 * (n - 1)


def quad_vf_rid(k, n, ari):
    return (0x0104 if ari else 0x0200) + 63 * k + (n - 1)


# -- Helpers -------------------------------------------------------------------------------------


def write(model, rid, offset, value, size=4):
    lane = offset % 4
    be = ((1 << size) - 1) << lane
    return model.config(TYPE0, rid, offset // 4, be, True, value << (8 * lane))


def read(model, rid, offset, type1=TYPE0):
    status, data = model.config(type1, rid, offset // 4, 0xF, False, 0)
    assert status == "SC", (hex(rid), hex(offset))
    return data


def pf_rid(k):
    return 0x0100 + k


def enable(model, k, num_vfs, control=VFE | MSE):
    write(model, pf_rid(k), NUM_VFS, num_vfs, size=2)
    write(model, pf_rid(k), CONTROL, control, size=2)


def capture_bus(model):
    write(model, 0x0100, 0x0C, 0, size=1)           # a Type 0 write to PF 0: bus 1
    assert model.captured_bus == 0x01


def expected_route(type1, rid, functions):
    """Where a request goes, from ``functions`` (Routing ID -> (kind, k, n)) and bus 1."""
    if type1:
        target = None if rid >> 8 == 0x01 else rid
    else:
        target = 0x0100 | (rid & 0xFF)
    return functions.get(target, (None, 0, 0))


def sweep(model, functions, buses=(0x00, 0x01, 0x02, 0x03, 0xFF)):
    """Every Routing ID on ``buses``, Type 0 and Type 1, against ``functions`` (every function
    lives on bus 1 or 2); returns the number of hits."""
    hits = 0
    for bus in buses:
        for rid in range(bus << 8, (bus + 1) << 8):
            for type1 in (TYPE0, TYPE1):
                expected = expected_route(type1, rid, functions)
                assert model.route(type1, rid) == expected, (type1, hex(rid))
                hits += expected[0] is not None
    return hits


# -- Header Type, ARI Next Function Number -------------------------------------------------------


def test_header_type_and_next_function_dual():
    model = EndpointModel(dual_params())
    assert read(model, 0x0100, 0x0C) == 0x0080_0000    # Header Type 0x80 in both PFs
    assert read(model, 0x0101, 0x0C) == 0x0080_0000
    write(model, 0x0101, 0x0C, 0x10, size=1)            # Cache Line Size: the type stays
    assert read(model, 0x0101, 0x0C) == 0x0080_0010
    assert read(model, 0x0100, 0x0C) == 0x0080_0000
    assert read(model, 0x0100, ARI) == 0x1401_000E      # ARI header, next 0x140
    assert read(model, 0x0100, ARI + 4) == 0x0000_0100  # Next Function Number 1
    assert read(model, 0x0101, ARI + 4) == 0x0000_0000  # the last PF: 0
    # VFs (non-ARI: bus 2, Type 1): Header Type 0, ARI Next Function Number 0.
    enable(model, 1, 2)
    assert read(model, 0x0281, 0x0C, TYPE1) == 0x0000_0000
    assert read(model, 0x0281, 0x104, TYPE1) == 0x0000_0000
    assert read(model, 0x0283, 0x100, TYPE1) & 0xFFFF == 0x000E


def test_next_function_chain_quad():
    model = EndpointModel(quad_params())
    chain, fn = [], 0
    while True:
        chain.append(fn)
        nfn = read(model, 0x0100 | fn, ARI + 4) >> 8 & 0xFF
        if nfn == 0:
            break
        fn = nfn
    assert chain == [0, 1, 2, 3]
    assert [read(model, 0x0100 + k, 0x0C) for k in range(4)] == [0x0080_0000] * 4


def test_single_pf_header_type_0():
    model = EndpointModel(EndpointParams(total_vfs=4))
    assert read(model, 0x0100, 0x0C) == 0x0000_0000
    assert read(model, 0x0100, ARI + 4) == 0x0000_0000


# -- ARI Capable Hierarchy: the device's bit -----------------------------------------------------


def test_ari_bit_rw_in_pf0_only():
    model = EndpointModel(dual_params())
    assert read(model, 0x0101, OFFSET_STRIDE) == 0x0002_0180
    write(model, 0x0101, CONTROL, ARI_BIT, size=2)      # RsvdP in PF 1: ignored
    assert read(model, 0x0101, CONTROL) == 0x0000_0000
    assert model.ari_capable_hierarchy is False
    assert read(model, 0x0101, OFFSET_STRIDE) == 0x0002_0180
    write(model, 0x0100, CONTROL, ARI_BIT, size=2)      # PF 0 owns it
    assert read(model, 0x0100, CONTROL) == 0x0000_0010
    assert read(model, 0x0101, CONTROL) == 0x0000_0000  # PF 1 reads 0 ...
    assert read(model, 0x0101, OFFSET_STRIDE) == 0x0002_0080   # ... and follows it
    assert read(model, 0x0100, OFFSET_STRIDE) == 0x0002_0080
    # PF 1 writing 0 there does not clear it either.
    write(model, 0x0101, CONTROL, 0x0000, size=2)
    assert model.ari_capable_hierarchy is True
    write(model, 0x0100, CONTROL, 0x0000, size=2)
    assert read(model, 0x0101, OFFSET_STRIDE) == 0x0002_0180


def test_ari_bit_held_while_any_pf_has_vf_enable():
    model = EndpointModel(quad_params())
    enable(model, 3, 1)                                 # PF 3: VF Enable
    write(model, 0x0100, CONTROL, ARI_BIT, size=2)
    assert read(model, 0x0100, CONTROL) == 0x0000_0000  # ignored
    assert read(model, 0x0103, OFFSET_STRIDE) == 0x0001_0100 + 62 * 3
    write(model, 0x0103, CONTROL, 0x0000, size=2)       # PF 3's VF Enable cleared
    write(model, 0x0100, CONTROL, ARI_BIT, size=2)
    assert read(model, 0x0100, CONTROL) == 0x0000_0010
    assert read(model, 0x0103, OFFSET_STRIDE) == 0x0001_0004 + 62 * 3
    # PF 0's own VF Enable holds it too; clearing VFE and ARI in one write keeps ARI.
    enable(model, 0, 2, VFE | ARI_BIT)
    write(model, 0x0100, CONTROL, 0x0000, size=2)
    assert read(model, 0x0100, CONTROL) == 0x0000_0010
    enable(model, 2, 5)                                 # PF 2 enabled: PF 0 cannot clear it
    write(model, 0x0100, CONTROL, 0x0000, size=2)
    assert model.ari_capable_hierarchy is True
    write(model, 0x0102, CONTROL, 0x0000, size=2)
    write(model, 0x0100, CONTROL, 0x0000, size=2)
    assert model.ari_capable_hierarchy is False


def test_ari_bit_kept_by_pf_resets_cleared_by_conventional_reset():
    model = EndpointModel(dual_params())
    write(model, 0x0100, CONTROL, ARI_BIT, size=2)
    write(model, 0x0100, 0x48, 0x8000, size=2)          # PF 0 FLR
    assert read(model, 0x0100, CONTROL) == 0x0000_0010
    write(model, 0x0101, 0x48, 0x8000, size=2)          # PF 1 FLR
    write(model, 0x0101, 0x80, 3, size=2)               # PF 1 D3hot, then D0: reset
    write(model, 0x0101, 0x80, 0, size=2)
    write(model, 0x0100, 0x80, 3, size=2)               # PF 0 D3hot -> D0
    write(model, 0x0100, 0x80, 0, size=2)
    assert model.events == [("vfs_reset", 0), ("vfs_reset", 1), ("pm_reset", 0, 1),
                            ("vfs_reset", 1), ("pm_reset", 0, 0), ("vfs_reset", 0)]
    assert read(model, 0x0100, CONTROL) == 0x0000_0010
    assert read(model, 0x0101, OFFSET_STRIDE) == 0x0002_0080
    model.reset()
    assert read(model, 0x0100, CONTROL) == 0x0000_0000
    assert read(model, 0x0101, OFFSET_STRIDE) == 0x0002_0180


def test_ari_bit_link_scope_single_pf():
    """docs/multi-pf.md §4: the reset-scope change holds for one PF too."""
    model = EndpointModel(EndpointParams(total_vfs=4))
    write(model, 0x0100, CONTROL, ARI_BIT | VFE, size=2)
    write(model, 0x0100, 0x48, 0x8000, size=2)          # PF FLR: VF Enable 0, ARI kept
    assert read(model, 0x0100, CONTROL) == 0x0000_0010
    assert read(model, 0x0100, OFFSET_STRIDE) == 0x0001_0001
    write(model, 0x0100, 0x80, 3, size=2)               # PM at 0x7C: PMCSR at 0x80: D3hot
    write(model, 0x0100, 0x80, 0, size=2)               # D3hot -> D0
    assert model.events == [("vfs_reset", 0), ("pm_reset", 0, 0), ("vfs_reset", 0)]
    assert read(model, 0x0100, CONTROL) == 0x0000_0010
    model.reset()
    assert read(model, 0x0100, CONTROL) == 0x0000_0000
    assert read(model, 0x0100, OFFSET_STRIDE) == 0x0001_0100


# -- Routing over the PFs ------------------------------------------------------------------------


@pytest.mark.parametrize("ari", [False, True], ids=["non_ari", "ari"])
@pytest.mark.parametrize("num_vfs", [(8, 8), (8, 3), (0, 5), (1, 0)])
def test_route_dual(ari, num_vfs):
    model = EndpointModel(dual_params())
    capture_bus(model)
    if ari:
        write(model, 0x0100, CONTROL, ARI_BIT, size=2)
    functions = {pf_rid(k): ("PF", k, 0) for k in range(2)}
    for k, nr in enumerate(num_vfs):
        if nr:
            enable(model, k, nr, VFE | MSE | (ARI_BIT if ari else 0))
        for n in range(1, nr + 1):
            functions[dual_vf_rid(k, n, ari)] = ("VF", k, n)
    # Type 0: each PF and (ARI) each VF once per bus swept; Type 1: (non-ARI) each VF once.
    assert sweep(model, functions) == 2 * 5 + sum(num_vfs) * (5 if ari else 1)
    # Literal spot checks of the interleaved layout.
    if ari and num_vfs == (8, 3):
        assert model.route(TYPE0, 0x0180) == ("VF", 0, 1)
        assert model.route(TYPE0, 0x0181) == ("VF", 1, 1)
        assert model.route(TYPE0, 0x018E) == ("VF", 0, 8)
        assert model.route(TYPE0, 0x0185) == ("VF", 1, 3)
        assert model.route(TYPE0, 0x0187) == (None, 0, 0)     # PF 1's VF 4: NumVFs 3
        assert model.route(TYPE1, 0x0281) == (None, 0, 0)     # bus 2: nothing in ARI
    if not ari and num_vfs == (8, 3):
        assert model.route(TYPE1, 0x0280) == ("VF", 0, 1)
        assert model.route(TYPE1, 0x0285) == ("VF", 1, 3)
        assert model.route(TYPE1, 0x028F) == (None, 0, 0)     # PF 1's VF 8: NumVFs 3
        assert model.route(TYPE0, 0x0001) == ("PF", 1, 0)     # bus field not compared


@pytest.mark.parametrize("ari", [False, True], ids=["non_ari", "ari"])
@pytest.mark.parametrize("num_vfs", [(63, 63, 63, 63), (63, 31, 1, 0), (0, 2, 0, 63)])
def test_route_quad(ari, num_vfs):
    model = EndpointModel(quad_params())
    capture_bus(model)
    if ari:
        write(model, 0x0100, CONTROL, ARI_BIT, size=2)
    functions = {pf_rid(k): ("PF", k, 0) for k in range(4)}
    for k, nr in enumerate(num_vfs):
        if nr:
            enable(model, k, nr, VFE | MSE | (ARI_BIT if ari else 0))
        for n in range(1, nr + 1):
            functions[quad_vf_rid(k, n, ari)] = ("VF", k, n)
    # One configuration over all 65536 Routing IDs; the others over buses 0-3 and 0xFF.
    full = not ari and num_vfs == (63, 31, 1, 0)
    hits = sweep(model, functions, range(0x100) if full else (0x00, 0x01, 0x02, 0x03, 0xFF))
    # Type 0: each PF once per bus swept (the bus field is not compared), each VF too in ARI;
    # Type 1: each VF once (bus 2) without ARI.
    assert hits == 4 * (256 if full else 5) + sum(num_vfs) * (5 if ari else 1)
    if ari and num_vfs[0] == 63:
        assert model.route(TYPE0, 0x0104) == ("VF", 0, 1)
        assert model.route(TYPE0, 0x0142) == ("VF", 0, 63)
        assert model.route(TYPE0, 0x0143) == ("VF", 1, 1)
    if ari and num_vfs == (63, 63, 63, 63):
        assert model.route(TYPE0, 0x01FF) == ("VF", 3, 63)  # the bus full
    if not ari and num_vfs == (63, 31, 1, 0):
        assert model.route(TYPE1, 0x0200) == ("VF", 0, 1)
        assert model.route(TYPE1, 0x025D) == ("VF", 1, 31)
        assert model.route(TYPE1, 0x025E) == (None, 0, 0)
        assert model.route(TYPE1, 0x027E) == ("VF", 2, 1)
        assert model.route(TYPE1, 0x02BD) == (None, 0, 0)   # PF 3: VF Enable 0


def test_route_refuses_two_claims():
    """route() checks independently that no two functions share a Routing ID."""
    model = EndpointModel(dual_params())
    capture_bus(model)
    model.pfs[1].pf_fn = 0x00                           # as if PF 1 sat on PF 0's function
    with pytest.raises(AssertionError, match="0x0100"):
        model.route(TYPE0, 0x0100)
    model = EndpointModel(dual_params())
    capture_bus(model)
    enable(model, 0, 8, VFE | ARI_BIT)
    enable(model, 1, 8)
    model.pfs[1].pf_fn = 0x00                           # PF 1's VFs now on PF 0's
    with pytest.raises(AssertionError, match="0x0182"):
        model.route(TYPE0, 0x0182)


def test_single_pf_forms_refused_with_several_pfs():
    model = EndpointModel(dual_params())
    for call in (lambda: model.decode(TYPE0, 0x0100), lambda: model.decode_memory(0),
                 lambda: model.pf_rid, lambda: model.sriov, lambda: model.command):
        with pytest.raises(AttributeError, match="2 PFs"):
            call()
    assert model.pfs[1].pf_rid == 0x0001                # bus not captured yet
    capture_bus(model)
    assert model.pfs[1].pf_rid == 0x0101
    enable(model, 1, 3)
    assert model.vf_rid(3, pf=1) == 0x0285
    assert model.vf_rid(3) == 0x0284


# -- Per-PF resets: FLR isolation ----------------------------------------------------------------


def program_dual(model):
    """Both PFs: PF BAR0, MSE + BME, VF BAR0, VF Enable + VF MSE with NumVFs 8 / 4 (ARI)."""
    write(model, 0x0100, CONTROL, ARI_BIT, size=2)
    for k, nr in ((0, 8), (1, 4)):
        write(model, pf_rid(k), 0x10, 0xF000_0000 + k * 0x2_0000)
        write(model, pf_rid(k), 0x04, 0x0006, size=2)
        write(model, pf_rid(k), VF_BAR0, 0x0000_000C)
        write(model, pf_rid(k), VF_BAR0 + 4, 0x1 + k)   # 0x1_0000_0000, 0x2_0000_0000
        enable(model, k, nr, VFE | MSE | ARI_BIT)
    write(model, dual_vf_rid(1, 2, True), 0x04, 0x0004, size=2)     # PF 1 VF 2: BME
    write(model, dual_vf_rid(0, 2, True), 0x04, 0x0004, size=2)     # PF 0 VF 2: BME


def pf1_snapshot(model):
    return ([read(model, 0x0101, reg) for reg in (0x04, 0x10, CONTROL, NUM_VFS, VF_BAR0,
                                                  VF_BAR0 + 4)],
            [model.vf_state(n, pf=1) for n in range(1, 9)],
            [model.route(TYPE0, dual_vf_rid(1, n, True)) for n in range(1, 9)],
            model.route_memory(0x2_0000_4000))


@pytest.mark.parametrize("how", ["flr", "d3hot", "vf_enable_clear"])
def test_pf0_reset_leaves_pf1_intact(how):
    model = EndpointModel(dual_params())
    capture_bus(model)
    program_dual(model)
    before = pf1_snapshot(model)
    assert before[0] == [0x0010_0006, 0xF002_0000, 0x0000_0009, 0x0001_0004, 0x0000_000C,
                         0x0000_0002]
    assert before[1][1]["bus_master_enable"] is True
    assert before[2][:5] == [("VF", 1, 1), ("VF", 1, 2), ("VF", 1, 3), ("VF", 1, 4),
                             (None, 0, 0)]
    assert before[3] == (True, 1, 2, 0, 0)
    events = len(model.events)
    if how == "flr":
        write(model, 0x0100, 0x48, 0x8000, size=2)
        assert model.events[events:] == [("vfs_reset", 0)]
    elif how == "d3hot":
        write(model, 0x0100, 0x80, 3, size=2)
        write(model, 0x0100, 0x80, 0, size=2)
        assert model.events[events:] == [("pm_reset", 0, 0), ("vfs_reset", 0)]
    else:
        write(model, 0x0100, CONTROL, ARI_BIT, size=2)
        assert model.events[events:] == [("vfs_reset", 0)]
    # PF 0 and its VFs: reset (VF Enable 0: its VFs are gone).
    assert model.route(TYPE0, 0x0182) == (None, 0, 0)
    assert model.vf_state(2, pf=0)["bus_master_enable"] is False
    assert read(model, 0x0100, CONTROL) == 0x0000_0010   # ARI bit stays (LINK scope)
    # PF 1 and its VFs: untouched.
    assert pf1_snapshot(model) == before
    assert model.captured_bus == 0x01


def test_pf1_vf_flr_names_pf():
    model = EndpointModel(dual_params())
    capture_bus(model)
    program_dual(model)
    write(model, dual_vf_rid(1, 2, True), 0x48, 0x8000, size=2)
    assert model.events[-1] == ("vf_flr", 2, 1)
    assert model.vf_state(2, pf=1)["bus_master_enable"] is False
    assert model.vf_state(2, pf=0)["bus_master_enable"] is True


# -- Memory decode across PFs --------------------------------------------------------------------


def test_memory_isolation_adjacent_vf_bars():
    """PF 1's VF BAR0 starts where PF 0's eight 16 KiB VF apertures end."""
    model = EndpointModel(dual_params())
    capture_bus(model)
    write(model, 0x0100, CONTROL, ARI_BIT, size=2)
    for k, low in ((0, 0x0000_0000), (1, 0x0002_0000)):
        write(model, pf_rid(k), VF_BAR0, low)
        write(model, pf_rid(k), VF_BAR0 + 4, 0x0000_0001)
    enable(model, 0, 8, VFE | MSE | ARI_BIT)
    enable(model, 1, 8, VFE | MSE | ARI_BIT)
    assert model.route_memory(0x1_0000_0000) == (True, 0, 1, 0, 0)
    assert model.route_memory(0x1_0001_FFFF) == (True, 0, 8, 0, 0x3FFF)    # last byte of PF 0
    assert model.route_memory(0x1_0002_0000) == (True, 1, 1, 0, 0)         # first of PF 1
    assert model.route_memory(0x1_0003_FFFF) == (True, 1, 8, 0, 0x3FFF)
    assert model.route_memory(0x1_0004_0000) == (False, 0, 0, 0, 0)
    assert model.route_memory(0x0_FFFF_FFFF) == (False, 0, 0, 0, 0)
    result = model.memory(0x1_0002_0010, True, 0x55, 0x01)
    assert result == MemoryResult(True, False, True, 1, 0, 0x10, 0, 1)
    # PF 0 NumVFs 5 (re-enabled): its VFs 6..8 claim nothing, PF 1 is unchanged.
    write(model, 0x0100, CONTROL, ARI_BIT, size=2)
    enable(model, 0, 5, VFE | MSE | ARI_BIT)
    assert model.route_memory(0x1_0001_3FFF) == (True, 0, 5, 0, 0x3FFF)
    assert model.route_memory(0x1_0001_4000) == (False, 0, 0, 0, 0)
    assert model.route_memory(0x1_0002_0000) == (True, 1, 1, 0, 0)
    # PF 1's VF MSE off: only PF 1's range goes.
    write(model, 0x0101, CONTROL, VFE, size=2)
    assert model.route_memory(0x1_0002_0000) == (False, 0, 0, 0, 0)
    assert model.route_memory(0x1_0000_0000) == (True, 0, 1, 0, 0)
    # PF 0 FLR: PF 0's range goes; PF 1 (MSE back on) decodes.
    write(model, 0x0101, CONTROL, VFE | MSE, size=2)
    write(model, 0x0100, 0x48, 0x8000, size=2)
    assert model.route_memory(0x1_0000_0000) == (False, 0, 0, 0, 0)
    assert model.route_memory(0x1_0003_FFFF) == (True, 1, 8, 0, 0x3FFF)


def test_memory_lowest_pf_first_on_overlap():
    model = EndpointModel(dual_params())
    for k in range(2):                                  # both PF BAR0s at one address
        write(model, pf_rid(k), 0x10, 0xE000_0000)
        write(model, pf_rid(k), 0x04, 0x0002, size=2)
    assert model.route_memory(0xE000_0100) == (True, 0, 0, 0, 0x100)
    write(model, 0x0100, 0x04, 0x0000, size=2)          # PF 0 MSE off: PF 1 claims
    assert model.route_memory(0xE000_0100) == (True, 1, 0, 0, 0x100)


def test_msix_per_pf_messages_name_pf():
    model = EndpointModel(dual_params())
    for k in range(2):
        write(model, pf_rid(k), 0x1C, 0xE010_0000 + k * 0x1_0000)  # BAR3
        write(model, pf_rid(k), 0x04, 0x0006, size=2)
    base = 0xE010_0000 + 0x1_0000                       # PF 1's table, vector 0
    assert model.memory(base, True, 0xFEE0_1000, 0xFF).pf == 1
    assert model.memory(base + 8, True, 0x42, 0xFF).internal    # data 0x42, unmasked
    # PM at 0x7C (8 bytes), MSI-X at 0x84: MSI-X Enable is bit 31 of that dword.
    assert read(model, 0x0101, 0x84) & 0xFF == 0x11
    write(model, 0x0101, 0x84, 0x8000_0000)
    assert model.interrupt(0, 0, pf=1) == "sent"
    assert model.messages == [(0, 0xFEE0_1000, 0x42, 1)]
    assert model.interrupt(0, 0) == "pending"           # PF 0: MSI-X Enable 0
    assert model.function_state(0, pf=0)["pending"] == 1
    assert model.function_state(0, pf=1)["pending"] == 0


# -- ACS -----------------------------------------------------------------------------------------


def test_acs_default_capability_0():
    model = EndpointModel(dual_params())
    for rid in (0x0100, 0x0101):
        assert read(model, rid, SRIOV) == 0x1801_0010   # SR-IOV -> ACS at 0x180
        assert read(model, rid, ACS) == 0x0001_000D     # ID 0x000D, version 1, last
        assert read(model, rid, ACS + 4) == 0x0000_0000
        write(model, rid, ACS + 4, 0xFFFF_FFFF)
        assert read(model, rid, ACS + 4) == 0x0000_0000
    single = EndpointModel(EndpointParams(total_vfs=4))
    assert read(single, 0x0100, SRIOV) == 0x0001_0010   # one PF: no ACS
    assert read(single, 0x0100, ACS) == 0x0000_0000


def test_acs_control_rw_where_capable_and_reset_by_flr():
    model = EndpointModel(dual_params(AcsParams(capability=0x004C)))
    assert read(model, 0x0100, ACS + 4) == 0x0000_004C
    write(model, 0x0100, ACS + 4, 0xFFFF_FFFF)
    assert read(model, 0x0100, ACS + 4) == 0x004C_004C
    write(model, 0x0101, ACS + 6, 0x0008, size=2)
    assert read(model, 0x0101, ACS + 4) == 0x0008_004C
    write(model, 0x0100, ACS + 6, 0x0044, size=1)       # byte 2 only: bits 7:0
    assert read(model, 0x0100, ACS + 4) == 0x0044_004C
    write(model, 0x0100, ACS, 0xFFFF_FFFF)              # header read-only
    assert read(model, 0x0100, ACS) == 0x0001_000D
    write(model, 0x0100, 0x48, 0x8000, size=2)          # PF 0 FLR: PF 0's ACS Control only
    assert read(model, 0x0100, ACS + 4) == 0x0000_004C
    assert read(model, 0x0101, ACS + 4) == 0x0008_004C
    model.reset()
    assert read(model, 0x0101, ACS + 4) == 0x0000_004C


def test_acs_fixed_offset():
    model = EndpointModel(dual_params(AcsParams(offset=0x200)))
    assert read(model, 0x0100, SRIOV) == 0x2001_0010
    assert read(model, 0x0100, 0x200) == 0x0001_000D
    assert read(model, 0x0100, ACS) == 0x0000_0000


# -- User windows ------------------------------------------------------------------------------


def test_user_handler_gets_pf_with_several_pfs():
    calls = []

    class Handler:
        def read(self, function, window, dword, pf):
            calls.append(("read", function, window, dword, pf))
            return 0x1234_0000

        def write(self, function, window, dword, be, data, pf):
            calls.append(("write", function, window, dword, be, data, pf))

    pfs = tuple(PfParams(pf_rid=0x0100 + k, total_vfs=2, first_vf_offset_ari=2 + k * 2,
                         first_vf_offset_non_ari=0x100 + k * 2,
                         user_caps=(UserCap(name="r", kind="range", offset=0x200, size=8),))
                for k in range(2))
    model = EndpointModel(EndpointParams(pfs=pfs), user=Handler())
    assert read(model, 0x0101, 0x204) == 0x1234_0000
    write(model, 0x0100, 0x200, 0xAB, size=1)
    assert calls == [("read", 0, 0, 1, 1), ("write", 0, 0, 0, 0b0001, 0xAB, 0)]
