"""The ARI Extended Capability (PCI Express Base §7.8.7)."""

from ..regs import Access, Field, Register, RegisterMap

__all__ = ["ARI_CAP_ID", "ARI_CAP_SIZE", "VF_ARI_CAP_OFFSET", "ari_capability_map"]

ARI_CAP_ID        = 0x000e
ARI_CAP_SIZE      = 0x08
VF_ARI_CAP_OFFSET = 0x100

RO, HWINIT, RW, RW1C, RSVDP, RSVDZ = (Access.RO, Access.HWINIT, Access.RW, Access.RW1C,
                                      Access.RSVDP, Access.RSVDZ)


def ari_capability_map(next_offset=0, next_function=0):
    """The ARI Extended Capability (8 bytes), read-only.

    ``next_function`` is the Next Function Number: the function number of the device's next PF
    in ascending order, 0 in the last PF and in every VF (§7.8.7, SR-IOV §3.7.7).
    """
    return RegisterMap("ari", ARI_CAP_SIZE, [
        Register("header", 0x00, 32, (
            Field("cap_id", 0, 16, RO, ARI_CAP_ID),
            Field("cap_version", 16, 4, RO, 1),
            Field("next_offset", 20, 12, RO, next_offset),
        ), desc="ARI Extended Capability Header"),
        Register("ari_capability", 0x04, 16, (
            Field("mfvc_function_groups", 0, 1, RO, 0),
            Field("acs_function_groups", 1, 1, RO, 0),
            Field("next_function_number", 8, 8, RO, next_function),
        )),
        Register("ari_control", 0x06, 16, (), desc="no function groups: RO 0"),
    ])


