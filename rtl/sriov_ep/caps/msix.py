"""The MSI-X capability (PCI Express Base §7.7.2) of the PF and of the VFs.

The table and the Pending Bit Array are served by :class:`sriov_ep.interrupts.MsixEngine` from a
BAR (for the VFs, a VF BAR: every VF's table sits at the same offset in its own aperture). For a
VF, MSI-X Enable, Function Mask and the Table Size are held per VF in the VF state memory; the
Table Size is read-only to configuration writes and set by user logic
(``SriovEndpoint.vf_msix_size``) while the VF's MSI-X is disabled.
"""

from ..regs import Access, Field, Register, RegisterMap

__all__ = ["MSIX_CAP_ID", "MSIX_CAP_SIZE", "msix_capability_map"]

MSIX_CAP_ID   = 0x11
MSIX_CAP_SIZE = 0x0c

RO, HWINIT, RW = Access.RO, Access.HWINIT, Access.RW


def msix_capability_map(msix, next_offset=0, *, vf=False):
    """The register map of an MSI-X capability for :class:`~sriov_ep.params.MsixParams`."""
    bar = "VF BAR" if vf else "BAR"
    return RegisterMap("vf_msix" if vf else "msix", MSIX_CAP_SIZE, [
        Register("cap_header", 0x00, 16, (
            Field("cap_id", 0, 8, RO, MSIX_CAP_ID),
            Field("next_pointer", 8, 8, RO, next_offset),
        ), desc="MSI-X capability header"),
        Register("message_control", 0x02, 16, (
            Field("table_size", 0, 11, HWINIT, msix.vectors - 1, per_vf=vf,
                  desc=f"{msix.vectors} vectors" +
                       (f"; per VF, set by user logic up to {msix.max_vectors}" if vf else "")),
            Field("function_mask", 14, 1, RW, per_vf=vf, desc="per VF" if vf else ""),
            Field("msix_enable", 15, 1, RW, per_vf=vf, desc="per VF" if vf else ""),
        ), desc="Message Control"),
        Register("table", 0x04, 32, (
            Field("table_bir", 0, 3, RO, msix.table_bar, desc=f"{bar}{msix.table_bar}"),
            Field("table_offset", 3, 29, RO, msix.table_offset >> 3,
                  desc=f"table at {msix.table_offset:#x}"),
        ), desc="Table Offset/Table BIR"),
        Register("pba", 0x08, 32, (
            Field("pba_bir", 0, 3, RO, msix.pba_bar, desc=f"{bar}{msix.pba_bar}"),
            Field("pba_offset", 3, 29, RO, msix.pba_offset >> 3,
                  desc=f"PBA at {msix.pba_offset:#x}"),
        ), desc="PBA Offset/PBA BIR"),
    ])
