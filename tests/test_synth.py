"""Reading Yosys ``stat`` reports for the area figures (``sriov-ep bench area``).

The reports below are in the layout Yosys 0.70 prints; the counts are made up so that a double
count or a missed line shows.
"""

from sriov_ep.tools.synth import FAMILIES, count_cells

XILINX_REPORT = """
10. Printing statistics.

=== sriov_ep_top ===

        +----------Local Count, excluding submodules.
        |
      351 wires
     4131 wire bits
     1086 cells
        1   BUFG
      213   LUT2
       51   LUT3
      278   LUT6
      663 submodules
       86   CARRY4
      493   FDRE
        3   RAMB18E1

=== design hierarchy ===

        +----------Count including submodules.
        |
     1086 sriov_ep_top

        +----------Count including submodules.
        |
      351 wires
     1086 cells
      213   LUT2
       51   LUT3
      278   LUT6
       86   CARRY4
      493   FDRE
        3   RAMB18E1
"""

ECP5_REPORT = """
=== sriov_ep_top ===

        +----------Local Count, excluding submodules.
        |
      840 wires
     1452 cells
      581   LUT4
      465   TRELLIS_FF
       20   DP16KD
"""


def _totals(report, family):
    counts = count_cells(report, "sriov_ep_top")
    spec = FAMILIES[family]
    return tuple(sum(counts.get(c, 0) for c in spec[kind]) for kind in ("luts", "ffs", "brams"))


def test_hierarchy_section_is_not_counted_twice():
    assert _totals(XILINX_REPORT, "xilinx") == (213 + 51 + 278, 493, 3)


def test_single_section_report():
    assert _totals(ECP5_REPORT, "ecp5") == (581, 465, 20)
    assert count_cells(ECP5_REPORT, "sriov_ep_top")["cells"] == 1452


# -- The benchmark configuration ------------------------------------------------------------

#: Block RAM of the ECP5 devices, in bits: DP16KD blocks of 18 Kbit.
LFE5UM_45F_BRAM_BITS = 108 * 18 * 1024
LFE5UM_85F_BRAM_BITS = 208 * 18 * 1024


def test_bench_params_cover_pm_and_msix():
    """``bench area``/``bench fmax`` measure PF and VF PM at every size, and PF and VF MSI-X
    (4 vectors each) up to 4096 VFs."""
    from sriov_ep.caps import pf_chain, vf_chain
    from sriov_tb.bench import MSIX_MAX_VFS, bench_params

    assert MSIX_MAX_VFS == 4096
    for n in (8, 256, 2048, 4096):
        params = bench_params(n)
        assert params.pm is not None and params.vf_pm is not None
        assert (params.msix.vectors, params.vf_msix.vectors) == (4, 4)
        assert [(e.name, e.offset) for e in pf_chain(params)] == [
            ("header", 0x000), ("pcie", 0x040), ("pm", 0x07c), ("msix", 0x084),
            ("ari", 0x100), ("sriov", 0x140)]
        assert [(e.name, e.offset) for e in vf_chain(params)] == [
            ("header", 0x000), ("pcie", 0x040), ("pm", 0x07c), ("msix", 0x084), ("ari", 0x100)]
    for n in (4097, 65535):
        params = bench_params(n)
        assert params.vf_pm is not None
        assert params.msix is None and params.vf_msix is None
        assert [e.name for e in vf_chain(params)] == ["header", "pcie", "pm", "ari"]


def test_bench_msix_memory_and_ecp5_block_ram():
    """The reason for MSIX_MAX_VFS: the MSI-X memories (94 bits per table entry) of
    bench_params fit an LFE5UM-45F at 4096 VFs, and not even an LFE5UM-85F at 65535."""
    from sriov_ep.interrupts import MsixEntry, MsixState

    def bits(total_vfs):
        """MsixEngine.memory_bits for 4 PF and 4 VF vectors (without building an engine, which
        Amaranth would warn about as never elaborated)."""
        return MsixEntry.size * (4 + total_vfs * 4) + (total_vfs + 1) * MsixState(4).size

    assert (MsixEntry.size, MsixState(4).size) == (94, 2 * 4 + 15)
    assert bits(4096) < LFE5UM_45F_BRAM_BITS
    assert bits(65535) > LFE5UM_85F_BRAM_BITS


def test_bench_endpoint_elaborates():
    """The endpoint of bench_params(8), with PM and MSI-X, converts to RTLIL (what ``bench
    area`` hands to Yosys; no Yosys needed here)."""
    from amaranth.back import rtlil

    from sriov_ep.endpoint import SriovEndpoint
    from sriov_tb.bench import bench_params

    text = rtlil.convert(SriovEndpoint(bench_params(8)), name="sriov_ep_top", emit_src=False)
    assert "module \\sriov_ep_top\n" in text
    assert "module \\sriov_ep_top.msix\n" in text
