"""Configuration space the user's logic owns: capabilities with the user's ID, and ranges.

The endpoint answers a user capability's header itself (ID, version and the next pointer the
chain gives it: all of dword 0 of an extended capability, bits 15:0 of a legacy one) and passes
every other access in the window to user logic over ``SriovEndpoint.ucfg_req``/``ucfg_res``.
"""

from ..regs import Access, Field, Register, RegisterMap

__all__ = ["user_capability_map"]

RO = Access.RO


def user_capability_map(cap, next_offset=0, *, vf=False):
    """The part of user capability ``cap`` (a :class:`~sriov_ep.params.UserCap`) the endpoint
    answers, for the register map; the rest of the window is shown as one user-owned block."""
    prefix = "vf_" if vf else ""
    regs = []
    if cap.kind == "extended":
        regs.append(Register("header", 0x00, 32, (
            Field("cap_id", 0, 16, RO, cap.cap_id),
            Field("cap_version", 16, 4, RO, cap.version),
            Field("next_offset", 20, 12, RO, next_offset),
        ), desc="Extended Capability Header (answered by the endpoint)"))
    elif cap.kind == "legacy":
        regs.append(Register("cap_header", 0x00, 16, (
            Field("cap_id", 0, 8, RO, cap.cap_id),
            Field("next_pointer", 8, 8, RO, next_offset),
        ), desc="capability header (answered by the endpoint)"))
    return RegisterMap(f"{prefix}{cap.name}", cap.size, regs)
