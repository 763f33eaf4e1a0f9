"""The Access Control Services Extended Capability of a PF (PCI Express Base §7.7.11).

Eight bytes: the header, ACS Capability and ACS Control. No Egress Control Vector (Egress
Control is not among the allowed Capability bits, see :class:`~sriov_ep.params.AcsParams`).
"""

from ..regs import Access, Field, Register, RegisterMap, ResetScope

__all__ = ["ACS_CAP_ID", "ACS_CAP_VERSION", "ACS_CAP_SIZE", "acs_capability_map"]

ACS_CAP_ID      = 0x000d
ACS_CAP_VERSION = 1
ACS_CAP_SIZE    = 0x08

#: ACS Capability / Control bit names (§7.7.11.2-3), by bit position.
_BITS = ("source_validation", "translation_blocking", "p2p_request_redirect",
         "p2p_completion_redirect", "upstream_forwarding", "p2p_egress_control",
         "direct_translated_p2p")


def acs_capability_map(acs, next_offset=0):
    """The ACS Extended Capability for ``acs`` (an :class:`~sriov_ep.params.AcsParams`).

    ACS Capability reads ``acs.capability``; ACS Control bit i is RW (function state: every
    reset clears it) where Capability bit i is set, and RO 0 elsewhere.
    """
    capability = acs.capability
    if capability >> len(_BITS):
        raise ValueError(f"acs.capability: bits 15:7 must be 0 (got {capability:#06x})")
    control = tuple(
        Field(f"{name}_enable", bit, 1, Access.RW, scope=ResetScope.FUNCTION)
        if capability >> bit & 1 else Field(f"{name}_enable", bit, 1, Access.RO, 0)
        for bit, name in enumerate(_BITS))
    return RegisterMap("acs", ACS_CAP_SIZE, [
        Register("header", 0x00, 32, (
            Field("cap_id", 0, 16, Access.RO, ACS_CAP_ID),
            Field("cap_version", 16, 4, Access.RO, ACS_CAP_VERSION),
            Field("next_offset", 20, 12, Access.RO, next_offset),
        ), desc="ACS Extended Capability Header"),
        Register("acs_capability", 0x04, 16, tuple(
            Field(name, bit, 1, Access.RO, capability >> bit & 1)
            for bit, name in enumerate(_BITS)), desc="ACS Capability"),
        Register("acs_control", 0x06, 16, control,
                 desc="ACS Control: an enable per implemented Capability bit, the rest RO 0"),
    ])
