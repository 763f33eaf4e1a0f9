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
