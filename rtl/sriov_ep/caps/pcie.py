"""The PCI Express Capability (version 2, Endpoint) of the PF and of a VF (PCIe Base §7.5.3)."""

from ..regs import Access, Field, Register, RegisterMap, ResetScope

__all__ = ["PCIE_CAP_OFFSET", "PCIE_CAP_SIZE", "PCIE_CAP_ID", "pcie_capability_map"]

PCIE_CAP_OFFSET   = 0x40
PCIE_CAP_SIZE     = 0x3c
PCIE_CAP_ID       = 0x10

RO, HWINIT, RW, RW1C, RSVDP, RSVDZ = (Access.RO, Access.HWINIT, Access.RW, Access.RW1C,
                                      Access.RSVDP, Access.RSVDZ)
#: Link settings: an FLR or a D3hot -> D0 reset keeps them (PCIe Base §6.6.2).
LINK = ResetScope.LINK


def pcie_capability_map(params, next_offset=0, *, vf=False):
    """The PCI Express Capability (version 2, Endpoint) at 0x40; offsets relative to it.

    For a VF, Device Control holds only the per-VF bits (custom fields held outside the bank) and
    Link Control is reserved: the PF's settings apply.
    """
    if vf:
        devctl = (
            Field("relaxed_ordering", 4, 1, RW, 1, per_vf=True, desc="per VF"),
            Field("no_snoop", 11, 1, RW, 1, per_vf=True, desc="per VF"),
            Field("initiate_flr", 15, 1, RW, custom=True, desc="write 1: VF FLR; reads 0"),
        )
        devsta = ()
        linkctl = ()
    else:
        devctl = (
            Field("correctable_error_reporting", 0, 1, RW),
            Field("non_fatal_error_reporting", 1, 1, RW),
            Field("fatal_error_reporting", 2, 1, RW),
            Field("unsupported_request_reporting", 3, 1, RW),
            Field("relaxed_ordering", 4, 1, RW, 1),
            Field("max_payload_size", 5, 3, RW, 0, scope=LINK),
            Field("no_snoop", 11, 1, RW, 1),
            Field("max_read_request_size", 12, 3, RW, 2),
            Field("initiate_flr", 15, 1, RW, custom=True, desc="write 1: PF FLR; reads 0"),
        )
        devsta = (
            Field("correctable_error_detected", 0, 1, RW1C),
            Field("non_fatal_error_detected", 1, 1, RW1C),
            Field("fatal_error_detected", 2, 1, RW1C),
            Field("unsupported_request_detected", 3, 1, RW1C),
        )
        # Enable Clock Power Management (bit 8) and Hardware Autonomous Width Disable (bit 9)
        # are hardwired to 0, as §7.5.3.7 permits without Clock PM (Link Capabilities bit 18 is
        # 0) and without autonomous width changes.
        linkctl = (
            Field("aspm_control", 0, 2, RW, scope=LINK),
            Field("read_completion_boundary", 3, 1, RW, scope=LINK,
                  desc="0: 64 bytes, 1: 128 bytes (the Root Port's RCB)"),
            Field("common_clock_configuration", 6, 1, RW, scope=LINK),
            Field("extended_synch", 7, 1, RW, scope=LINK),
        )
    return RegisterMap("vf_pcie" if vf else "pcie", PCIE_CAP_SIZE, [
        Register("cap_header", 0x00, 16, (
            Field("cap_id", 0, 8, RO, PCIE_CAP_ID),
            Field("next_pointer", 8, 8, RO, next_offset),
        ), desc="PCI Express Capability header"),
        Register("pcie_capabilities", 0x02, 16, (
            Field("version", 0, 4, RO, 2),
            Field("device_port_type", 4, 4, RO, 0, desc="PCI Express Endpoint"),
        )),
        Register("device_capabilities", 0x04, 32, (
            Field("max_payload_size_supported", 0, 3, RO, 0, desc="128 bytes"),
            Field("role_based_error_reporting", 15, 1, RO, 1),
            Field("function_level_reset", 28, 1, RO, 1),
        )),
        Register("device_control", 0x08, 16, devctl),
        Register("device_status", 0x0a, 16, devsta),
        Register("link_capabilities", 0x0c, 32, (
            Field("max_link_speed", 0, 4, RO, 2, desc="5.0 GT/s"),
            Field("max_link_width", 4, 6, RO, 1, desc="x1"),
        )),
        Register("link_control", 0x10, 16, linkctl),
        Register("link_status", 0x12, 16, (
            Field("current_link_speed", 0, 4, RO, 2),
            Field("negotiated_link_width", 4, 6, RO, 1),
        )),
        Register("link_capabilities_2", 0x2c, 32, (
            Field("supported_link_speeds", 1, 7, RO, 0b11, desc="2.5 and 5.0 GT/s"),)),
        Register("link_control_2", 0x30, 16, (
            Field("target_link_speed", 0, 4, RO, 2),)),
    ])


