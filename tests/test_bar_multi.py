# amaranth: UnusedElaboratable=no
"""Tests of ``DeviceBarDecoder``: memory decode across the BARs and VF BARs of several PFs
(``docs/multi-pf.md`` §7).

Every result is compared with an expectation written here from the spec's formula, per PF
(VF n's BAR i at ``[base_i + (n-1)*A_i, base_i + n*A_i)``, ``A_i = max(size_i, System Page
Size)``, VFs 1..NumVFs while VF Enable and VF MSE are set, 32-bit BARs below 4 GiB; PF BARs while
the PF's Memory Space Enable is set and before its VF BARs), then across PFs: the lowest PF index
that claims wins. The MSI-X flags come from each function's own MSI-X parameters: the table is
``16 * max_vectors`` bytes at ``table_offset`` of BAR ``table_bar``, the PBA one QWORD per 64
vectors at ``pba_offset``.

The decoder's state inputs are driven directly with values the SR-IOV capability can produce
(bases aligned to their aperture). Requests go back to back; one run of each latency also holds
``res.ready`` low at random.
"""

import random
from dataclasses import dataclass

import pytest
from amaranth.hdl import Shape

from sriov_ep.decode.bar import DeviceBarDecoder, MemDecode, VfBarDecoder
from sriov_ep.params import Bar, EndpointParams, MsixParams, PfParams
from sriov_tb.sim import simulate

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
TOP32, TOP64 = 1 << 32, 1 << 64
LATENCIES = (1, 2)
#: Cycles after a change of the state inputs before requests see it (NumVFs and the apertures
#: take the longest: from the fourth edge).
STATE_SETTLE = 4


def two_pfs():
    """PF 0: BAR0 16 KiB 64-bit and BAR2 4 KiB; VF BAR0 16 KiB 64-bit and VF BAR2 4 KiB
    (32-bit); 8 VFs; MSI-X for the PF (BAR0) and the VFs (table in VF BAR0, PBA in VF BAR2).
    PF 1: BAR0 4 KiB; VF BAR0 8 KiB 64-bit; 4 VFs; VF MSI-X at 0x1000 / 0x1800 of VF BAR0."""
    pf0 = PfParams(
        pf_rid=0x0100, total_vfs=8, first_vf_offset_ari=2, vf_stride_ari=2,
        first_vf_offset_non_ari=0x100, vf_stride_non_ari=2,
        pf_bars=(Bar(0, 16 * KiB, is_64bit=True), Bar(2, 4 * KiB)),
        vf_bars=(Bar(0, 16 * KiB, is_64bit=True), Bar(2, 4 * KiB)),
        msix=MsixParams(vectors=8, table_bar=0, table_offset=0x2000, pba_bar=0,
                        pba_offset=0x3000),
        vf_msix=MsixParams(vectors=3, table_bar=0, table_offset=0x0, pba_bar=2,
                           pba_offset=0x800))
    pf1 = PfParams(
        pf_rid=0x0101, total_vfs=4, first_vf_offset_ari=2, vf_stride_ari=2,
        first_vf_offset_non_ari=0x100, vf_stride_non_ari=2,
        pf_bars=(Bar(0, 4 * KiB),), vf_bars=(Bar(0, 8 * KiB, is_64bit=True),),
        vf_msix=MsixParams(vectors=2, table_bar=0, table_offset=0x1000, pba_bar=0,
                           pba_offset=0x1800))
    return EndpointParams(pfs=(pf0, pf1))


def three_pfs():
    """Three PFs, each BAR0 8 KiB and VF BAR0 4 KiB (32-bit), 5 VFs, no MSI-X."""
    return EndpointParams(pfs=tuple(
        PfParams(pf_rid=0x0100 | k, total_vfs=5, first_vf_offset_ari=3, vf_stride_ari=3,
                 first_vf_offset_non_ari=0x100, vf_stride_non_ari=3,
                 pf_bars=(Bar(0, 8 * KiB),), vf_bars=(Bar(0, 4 * KiB),))
        for k in range(3)))


@dataclass(frozen=True)
class PfState:
    """One PF's decoder inputs: System Page Size 2**(12 + page_bit), NumVFs, the bases (in
    the order of the PF's ``vf_bars`` / ``pf_bars``) and the enables."""
    num_vfs:   int
    vf_bases:  tuple
    pf_bases:  tuple
    page_bit:  int = 0
    vf_enable: bool = True
    vf_mse:    bool = True
    pf_mse:    bool = True


def aperture(bar, page_bit):
    return max(bar.size, 1 << (12 + page_bit))


# Two PFs: PF 0's VF BAR0 (8 x 16 KiB) ends where PF 1's VF BAR0 (4 x 8 KiB) starts; PF 0's VF
# BAR2 (8 x 4 KiB) ends where PF 1's BAR0 starts; PF 0's BAR0 ends where PF 1's VF BAR0 ends.
V0 = 0x1_0000_0000
ADJACENT = (PfState(8, (V0, 0x9000_0000), (V0 + 160 * KiB, 0x8000_0000)),
            PfState(4, (V0 + 128 * KiB,), (0x9000_8000,)))
# Overlaps (only software can make them): PF 1's BAR0 on PF 0's VF 3 of VF BAR2; PF 1's VF BAR0
# (8 KiB x 4 from 0x2_0000_0000) under PF 0's BAR0 (16 KiB at 0x2_0000_4000: PF 1's VFs 3, 4).
OVERLAP = (PfState(8, (V0, 0x9000_0000), (0x2_0000_4000, 0x8000_0000)),
           PfState(4, (0x2_0000_0000,), (0x9000_2000,)))

STATES = {
    "two": [
        ("adjacent", ADJACENT),
        # 64 KiB pages in PF 1 only: its VF apertures grow to 64 KiB, PF 0's stay.
        ("adjacent-pf1-64k", (ADJACENT[0],
                              PfState(3, (V0 + 128 * KiB,), (0x9000_8000,), page_bit=4))),
        ("overlap", OVERLAP),
        # PF 0 decodes nothing of its own BARs: PF 1 gets the overlapping addresses.
        ("overlap-pf0-mse-off", (PfState(8, OVERLAP[0].vf_bases, OVERLAP[0].pf_bases,
                                         pf_mse=False), OVERLAP[1])),
        ("overlap-pf0-vf-mse-off", (PfState(8, OVERLAP[0].vf_bases, OVERLAP[0].pf_bases,
                                            vf_mse=False), OVERLAP[1])),
        ("pf1-vf-enable-off", (ADJACENT[0], PfState(4, (V0 + 128 * KiB,), (0x9000_8000,),
                                                     vf_enable=False))),
        ("pf0-all-off", (PfState(8, ADJACENT[0].vf_bases, ADJACENT[0].pf_bases, vf_mse=False,
                                 pf_mse=False), ADJACENT[1])),
        ("numvfs-0-and-2", (PfState(0, ADJACENT[0].vf_bases, ADJACENT[0].pf_bases),
                            PfState(2, (V0 + 128 * KiB,), (0x9000_8000,)))),
    ],
    "three": [
        # The three VF BAR0 blocks back to back below 4 GiB, the last one running past it.
        ("chain-past-4g", tuple(PfState(5, (TOP32 - (3 - k) * 20 * KiB + (4 * KiB if k == 2
                                                                            else 0),),
                                        (0x1000_0000 + k * 8 * KiB,)) for k in range(3))),
        # Everything at one place: PF 0's BAR0 wins over all.
        ("all-at-once", tuple(PfState(5, (0x4000_0000,), (0x4000_0000,)) for _ in range(3))),
        ("pf0-pf-mse-off", (PfState(5, (0x4000_0000,), (0x4000_0000,), pf_mse=False),
                            *(PfState(5, (0x4000_0000,), (0x4000_0000,)) for _ in range(2)))),
    ],
}

CONFIGS = {"two": two_pfs, "three": three_pfs}


def check_state(params, states):
    """The state must be one the endpoint can produce (else the test is wrong)."""
    for pf, st in zip(params.pfs, states, strict=True):
        assert pf.supported_page_sizes >> st.page_bit & 1
        assert 0 <= st.num_vfs <= pf.total_vfs
        for bar, base in zip(pf.vf_bars, st.vf_bases, strict=True):
            assert 0 <= base < (TOP64 if bar.is_64bit else TOP32)
            assert base % aperture(bar, st.page_bit) == 0
        for bar, base in zip(pf.pf_bars, st.pf_bases, strict=True):
            assert 0 <= base < (TOP64 if bar.is_64bit else TOP32) and base % bar.size == 0


# -- The expectation ---------------------------------------------------------------------------


def expect_pf(pf, st, addr):
    """``(vf, bar, offset)`` if PF ``pf`` (vf 0) or one of its VFs claims ``addr``, else None."""
    if st.pf_mse:
        for bar, base in zip(pf.pf_bars, st.pf_bases, strict=True):
            if base <= addr < base + bar.size:
                return 0, bar.index, addr - base
    if st.vf_enable and st.vf_mse:
        for bar, base in zip(pf.vf_bars, st.vf_bases, strict=True):
            if not bar.is_64bit and addr >= TOP32:
                continue
            a = aperture(bar, st.page_bit)
            if base <= addr < base + st.num_vfs * a:
                return (addr - base) // a + 1, bar.index, (addr - base) % a
    return None


def expect(params, states, addr):
    """``(claimed, pf, vf, bar, offset, msix)``: the lowest PF that claims; ``msix`` is
    ``(table, pba, offset in it)`` (offset None unless one of them)."""
    for k, (pf, st) in enumerate(zip(params.pfs, states, strict=True)):
        hit = expect_pf(pf, st, addr)
        if hit is None:
            continue
        vf, bar, offset = hit
        mx = pf.vf_msix if vf else pf.msix
        msix = (False, False, None)
        if mx is not None:
            if bar == mx.table_bar and 0 <= offset - mx.table_offset < 16 * mx.max_vectors:
                msix = (True, False, offset - mx.table_offset)
            pba_bytes = 8 * ((mx.max_vectors + 63) // 64)
            if bar == mx.pba_bar and 0 <= offset - mx.pba_offset < pba_bytes:
                msix = (False, True, offset - mx.pba_offset)
        return True, k, vf, bar, offset, msix
    return False, 0, 0, 0, 0, (False, False, None)


def addresses(params, states, rng):
    """Every BAR's edges (base - 1, base, each aperture edge up to TotalVFs + 1, the bytes
    around), the MSI-X table and PBA edges of some apertures, and random addresses."""
    out = {0, TOP32 - 1, TOP32, TOP64 - 1}
    for pf, st in zip(params.pfs, states, strict=True):
        mxs = [(pf.msix, False), (pf.vf_msix, True)]
        for bar, base in zip(pf.pf_bars, st.pf_bases, strict=True):
            out |= {base - 1, base, base + 1, base + bar.size - 1, base + bar.size}
            out |= {base + rng.randrange(bar.size) for _ in range(3)}
            for mx, is_vf in mxs:
                if mx is not None and not is_vf:
                    out |= msix_edges(mx, bar.index, base)
        for bar, base in zip(pf.vf_bars, st.vf_bases, strict=True):
            a = aperture(bar, st.page_bit)
            for n in range(pf.total_vfs + 2):
                start = base + n * a
                out |= {start - 1, start, start + 1, start + rng.randrange(a)}
                if not bar.is_64bit:
                    out.add(start + TOP32)
                mx = pf.vf_msix
                if mx is not None and n in (0, st.num_vfs - 1, pf.total_vfs - 1):
                    out |= msix_edges(mx, bar.index, start)
                    # An aperture above the BAR's size: the structures' places one and
                    # several BAR sizes further on are in the VF's aperture, not in them.
                    if a > bar.size:
                        for alias in (bar.size, a // 2, a - bar.size):
                            out |= msix_edges(mx, bar.index, start + alias)
    out |= {rng.randrange(TOP64) for _ in range(20)} | {rng.randrange(TOP32) for _ in range(20)}
    return sorted(a for a in out if 0 <= a < TOP64)


def msix_edges(mx, bar_index, start):
    out = set()
    if mx.table_bar == bar_index:
        t = start + mx.table_offset
        out |= {t - 1, t, t + 16 * mx.max_vectors - 1, t + 16 * mx.max_vectors}
    if mx.pba_bar == bar_index:
        b = start + mx.pba_offset
        pba = 8 * ((mx.max_vectors + 63) // 64)
        out |= {b - 1, b, b + pba - 1, b + pba}
    return out


# -- Driving the decoder -------------------------------------------------------------------------


def apply_state(ctx, dut, params, states):
    bits = {"vf_enable": 0, "vf_mse": 0, "pf_mse": 0}
    for k, (pf, st) in enumerate(zip(params.pfs, states, strict=True)):
        for name in bits:
            bits[name] |= int(getattr(st, name)) << k
        ctx.set(dut.num_vfs[k], st.num_vfs)
        for n, (bar, base) in enumerate(zip(pf.vf_bars, st.vf_bases, strict=True)):
            ctx.set(dut.vf_bars[k][n].base, base)
            ctx.set(dut.vf_bars[k][n].aperture_log2,
                    aperture(bar, st.page_bit).bit_length() - 1)
        for n, base in enumerate(st.pf_bases):
            ctx.set(dut.pf_bars[k][n].base, base)
    for name, value in bits.items():
        ctx.set(getattr(dut, name), value)


def run(params, latency, runs, *, ready_prob=1.0, seed=0):
    """Decode each ``(label, states, addrs)`` of ``runs`` with requests back to back; returns
    ``{label: [(request, result, msix, cycles from acceptance to result)]}`` and the decoder."""
    dut = DeviceBarDecoder(params, latency=latency)
    out = {}

    async def testbench(ctx):
        rng = random.Random(seed)
        for label, states, addrs in runs:
            apply_state(ctx, dut, params, states)
            ctx.set(dut.req.valid, 0)
            await ctx.tick().repeat(STATE_SETTLE)
            reqs = [(addr, rng.random() < 0.5, i & 0xFF, rng.getrandbits(64),
                     rng.getrandbits(8)) for i, addr in enumerate(addrs)]
            got, accepted, cycle, sent = [], [], 0, 0
            while len(got) < len(reqs):
                if sent < len(reqs):
                    addr, write, tag, data, be = reqs[sent]
                    ctx.set(dut.req.valid, 1)
                    ctx.set(dut.req.payload, {"addr": addr, "write": write, "tag": tag,
                                              "data": data, "be": be})
                else:
                    ctx.set(dut.req.valid, 0)
                ready = rng.random() < ready_prob
                ctx.set(dut.res.ready, ready)
                if ctx.get(dut.res.valid) and ready:
                    got.append((ctx.get(dut.res.payload), ctx.get(dut.msix), cycle))
                if sent < len(reqs) and ctx.get(dut.req.ready):
                    accepted.append(cycle)
                    sent += 1
                await ctx.tick()
                cycle += 1
            ctx.set(dut.req.valid, 0)
            out[label] = [(req, res, msix, at - acc)
                          for req, (res, msix, at), acc in zip(reqs, got, accepted, strict=True)]

    simulate(dut, lambda: testbench, name=f"bar-multi-{latency}", waves_on_failure=False)
    return dut, out


def check(params, dut, results, states_of):
    for label, rows in results.items():
        states = states_of[label]
        for (addr, write, tag, data, be), res, msix, _delay in rows:
            claimed, k, vf, bar, offset, (table, pba, mx_offset) = expect(params, states, addr)
            got = (res.claimed, res.pf, res.vf, res.bar, res.offset)
            want = (int(claimed), k, vf, bar, offset)
            assert got == want, f"{label} {addr:#x}: design {got}, expected {want}"
            assert res.is_vf == (vf != 0) and res.internal == 0, f"{label} {addr:#x}"
            assert (res.addr, res.write, res.tag, res.data, res.be) == \
                (addr, write, tag, data, be), f"{label} {addr:#x}: request fields"
            assert (msix.table, msix.pba) == (table, pba), \
                f"{label} {addr:#x}: MSI-X flags {msix.table, msix.pba}, expected {table, pba}"
            if table or pba:
                assert msix.offset == mx_offset, f"{label} {addr:#x}: MSI-X offset"


@pytest.mark.parametrize("latency", LATENCIES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_decode_matches_formula(name, latency):
    params = CONFIGS[name]()
    rng = random.Random(f"{name}-{latency}")
    runs = []
    for label, states in STATES[name]:
        check_state(params, states)
        runs.append((label, states, addresses(params, states, rng)))
    dut, results = run(params, latency, runs)
    assert dut.latency == latency + 1
    check(params, dut, results, {label: states for label, states, _ in runs})
    # Back to back with res.ready high: every result exactly latency + 1 cycles after its
    # request was accepted.
    delays = {delay for rows in results.values() for *_, delay in rows}
    assert delays == {latency + 1}


@pytest.mark.parametrize("latency", LATENCIES)
def test_backpressure(latency):
    """``res.ready`` low at random: results still in order, none lost or repeated."""
    params = two_pfs()
    rng = random.Random(latency)
    runs = [(label, states, addresses(params, states, rng)[::3])
            for label, states in STATES["two"][:3]]
    dut, results = run(params, latency, runs, ready_prob=0.4, seed=latency)
    check(params, dut, results, {label: states for label, states, _ in runs})


def test_literal_facts():
    """Hand-computed decodes of the two-PF states (a check of the checker)."""
    p = two_pfs()
    # Adjacent: the last byte of PF 0's VF 8 (VF BAR0), then PF 1's VF 1.
    assert expect(p, ADJACENT, V0 + 128 * KiB - 1)[:5] == (True, 0, 8, 0, 16 * KiB - 1)
    assert expect(p, ADJACENT, V0 + 128 * KiB)[:5] == (True, 1, 1, 0, 0)
    assert expect(p, ADJACENT, V0 + 160 * KiB - 1)[:5] == (True, 1, 4, 0, 8 * KiB - 1)
    assert expect(p, ADJACENT, V0 + 160 * KiB)[:5] == (True, 0, 0, 0, 0)       # PF 0 BAR0
    # PF 0's VF BAR2 (4 KiB x 8 from 0x9000_0000), then PF 1's BAR0.
    assert expect(p, ADJACENT, 0x9000_7FFF)[:5] == (True, 0, 8, 2, 0xFFF)
    assert expect(p, ADJACENT, 0x9000_8000)[:5] == (True, 1, 0, 0, 0)
    # VF MSI-X: PF 0's VFs at offset 0 of VF BAR0 (3 vectors, 48 bytes), PF 1's at 0x1000.
    assert expect(p, ADJACENT, V0 + 16 * KiB + 0x2F)[5] == (True, False, 0x2F)
    assert expect(p, ADJACENT, V0 + 16 * KiB + 0x30)[5] == (False, False, None)
    assert expect(p, ADJACENT, V0 + 128 * KiB + 0x1800)[5] == (False, True, 0)
    # Overlap: PF 1's BAR0 on PF 0's VF 3 (VF BAR2): PF 0 wins; PF 0's BAR0 over PF 1's VF 3.
    assert expect(p, OVERLAP, 0x9000_2000)[:4] == (True, 0, 3, 2)
    assert expect(p, OVERLAP, 0x2_0000_3FFF)[:4] == (True, 1, 2, 0)
    assert expect(p, OVERLAP, 0x2_0000_4000)[:4] == (True, 0, 0, 0)
    mse_off = (PfState(8, OVERLAP[0].vf_bases, OVERLAP[0].pf_bases, pf_mse=False), OVERLAP[1])
    assert expect(p, mse_off, 0x2_0000_4000)[:4] == (True, 1, 3, 0)


def test_single_pf_unchanged():
    """The single-PF decoder keeps its ports; the result layout gains ``pf`` only with
    several PFs."""
    p = two_pfs()
    single = VfBarDecoder(p.pfs[0])
    assert set(single.signature.members) == {
        "req", "res", "vf_enable", "vf_mse", "num_vfs", "vf_bars", "pf_mse", "pf_bars"}
    assert "pf" not in MemDecode(p.pfs[0]).members
    layout = MemDecode(p)
    assert list(layout.members)[:5] == ["claimed", "internal", "pf", "is_vf", "vf"]
    assert Shape.cast(layout.members["vf"]) == Shape.cast(range(9))  # largest TotalVFs: 8
    assert len(DeviceBarDecoder(three_pfs()).res.payload.pf) == 2
    with pytest.raises(TypeError, match="EndpointParams"):
        DeviceBarDecoder(p.pfs[0])
    with pytest.raises(ValueError, match="VfBarDecoder"):
        DeviceBarDecoder(EndpointParams(pfs=(p.pfs[0],)))
