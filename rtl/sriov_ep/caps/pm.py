"""The Power Management capability (PCI Bus Power Management Interface 1.2; PCIe Base §7.5.2).

Version 3, no PME, D1/D2 only when the parameters say so. PowerState takes D0 and D3hot (and
D1/D2 when supported); a write of an unsupported state completes normally and changes nothing
(PM 1.2 §5.4.1). For a VF the PowerState is held per VF in the VF state memory.
"""

from ..regs import Access, Field, Register, RegisterMap

__all__ = ["PM_CAP_ID", "PM_CAP_SIZE", "D0", "D3HOT", "pm_capability_map"]

PM_CAP_ID   = 0x01
PM_CAP_SIZE = 0x08

#: PowerState encodings.
D0, D1, D2, D3HOT = 0b00, 0b01, 0b10, 0b11

RO, RW = Access.RO, Access.RW


def pm_capability_map(pm, next_offset=0, *, vf=False):
    """The register map of a PM capability for :class:`~sriov_ep.params.PmParams` ``pm``."""
    states = (D0, D3HOT) + ((D1,) if pm.d1 else ()) + ((D2,) if pm.d2 else ())
    return RegisterMap("vf_pm" if vf else "pm", PM_CAP_SIZE, [
        Register("cap_header", 0x00, 16, (
            Field("cap_id", 0, 8, RO, PM_CAP_ID),
            Field("next_pointer", 8, 8, RO, next_offset),
        ), desc="Power Management capability header"),
        Register("pmc", 0x02, 16, (
            Field("version", 0, 3, RO, 0b011, desc="PM 1.2"),
            Field("pme_clock", 3, 1, RO, 0),
            Field("immediate_readiness_on_return_to_d0", 4, 1, RO, 0),
            Field("dsi", 5, 1, RO, 0),
            Field("aux_current", 6, 3, RO, 0),
            Field("d1_support", 9, 1, RO, int(pm.d1)),
            Field("d2_support", 10, 1, RO, int(pm.d2)),
            Field("pme_support", 11, 5, RO, 0, desc="no PME"),
        ), desc="Power Management Capabilities"),
        Register("pmcsr", 0x04, 16, (
            Field("power_state", 0, 2, RW, D0, per_vf=vf, values=states,
                  desc="D0 or D3hot" + (" (D1/D2 too)" if pm.d1 or pm.d2 else "") +
                       "; other values ignored" + ("; per VF" if vf else "")),
            Field("no_soft_reset", 3, 1, RO, int(pm.no_soft_reset)),
            Field("pme_en", 8, 1, RO, 0, desc="no PME"),
            Field("data_select", 9, 4, RO, 0),
            Field("data_scale", 13, 2, RO, 0),
            Field("pme_status", 15, 1, RO, 0),
        ), desc="Power Management Control/Status"),
        Register("pmcsr_bse", 0x06, 8, (), desc="bridge extensions: reserved"),
        Register("data", 0x07, 8, (Field("data", 0, 8, RO, 0),), desc="no Data register"),
    ])
