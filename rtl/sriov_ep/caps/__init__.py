"""Capability structures, each described once, and the chains that compose a function's
configuration space from them.

A chain is the list of structures of one function's configuration space, placed and linked by
:func:`sriov_ep.caps.chain.place`. Each PF and its VFs have one chain each:

===========  =============================================  ====================================
 structure    PF                                             VF
===========  =============================================  ====================================
 header       Type 0 header (:mod:`.header`)                 VF header (IDs all ones, no BARs)
 pcie         PCI Express capability at 0x40 (:mod:`.pcie`)   same, per-VF Device Control bits
 pm           Power Management (:mod:`.pm`), by default       if ``vf_pm``; PowerState per VF
 msix         MSI-X (:mod:`.msix`) if ``msix``               if ``vf_msix``; Enable/Mask per VF
 user caps    ``user_caps`` (:mod:`.user`)                   ``vf_user_caps``
 ari          ARI (:mod:`.ari`)                              ARI at 0x100
 sriov        SR-IOV (:mod:`.sriov`)                         (none)
 acs          ACS (:mod:`.acs`) if ``acs`` is an AcsParams   (none)
===========  =============================================  ====================================

Placement (which structures, where) depends on the PF alone: :func:`pf_structures` and
:func:`vf_structures` take a :class:`~sriov_ep.params.PfParams`. Some register values depend on
the device: :func:`pf_chain` ``(params, k)`` builds PF ``k`` of an
:class:`~sriov_ep.params.EndpointParams`, where the ARI Next Function Number is the next PF's
function number (0 in the last), Header Type is 0x80 when the device has several PFs, and ARI
Capable Hierarchy is RW in PF 0 only (RsvdP in the others). ``pf_chain(params)`` without ``k``
is the chain of a single-PF device (or of a lone PfParams).

The endpoint builds its register windows, read multiplexer, write strobes and the VF state
memory's entry by iterating over these chains (``owner`` says who serves an entry).
"""

from dataclasses import dataclass

from ..params import AcsParams, EndpointParams, as_pf
from ..regs import RegisterMap
from .acs import ACS_CAP_ID, ACS_CAP_SIZE, ACS_CAP_VERSION, acs_capability_map
from .ari import ARI_CAP_ID, ARI_CAP_SIZE, VF_ARI_CAP_OFFSET, ari_capability_map
from .chain import Kind, Placed, Structure, place
from .header import HEADER_SIZE, type0_header_map, vf_header_map
from .msix import MSIX_CAP_ID, MSIX_CAP_SIZE, msix_capability_map
from .pcie import PCIE_CAP_ID, PCIE_CAP_OFFSET, PCIE_CAP_SIZE, pcie_capability_map
from .pm import PM_CAP_ID, PM_CAP_SIZE, pm_capability_map
from .sriov import SRIOV_CAP_ID, SRIOV_CAP_SIZE, sriov_capability_map
from .user import user_capability_map

__all__ = ["ChainEntry", "PfContext", "pf_context", "pf_structures", "vf_structures",
           "pf_chain", "vf_chain"]

_TITLES = {
    "header": "Type 0 Configuration Space Header",
    "pcie":   "PCI Express Capability",
    "pm":     "Power Management Capability",
    "msix":   "MSI-X Capability",
    "ari":    "ARI Extended Capability",
    "sriov":  "SR-IOV Extended Capability",
    "acs":    "ACS Extended Capability",
}


@dataclass(frozen=True)
class ChainEntry:
    """One structure of a function's chain.

    ``owner`` is who serves it: ``"bank"`` (a :class:`~sriov_ep.regs.RegisterBank` of
    ``regmap`` inside the endpoint), ``"sriov"`` (the :class:`~sriov_ep.caps.sriov.SriovCapability`
    component) or ``"user"`` (user logic, through the endpoint's user configuration port; ``user``
    is the :class:`~sriov_ep.params.UserCap` and ``user_index`` its window number).
    """
    placed:     Placed
    regmap:     RegisterMap
    owner:      str = "bank"
    user:       object = None
    user_index: int = 0

    @property
    def name(self):
        return self.placed.name

    @property
    def offset(self):
        return self.placed.offset

    @property
    def size(self):
        return self.placed.size

    @property
    def title(self):
        if self.user is not None:
            kind = {"legacy": "capability", "extended": "extended capability",
                    "range": "range"}[self.user.kind]
            return f"user {kind} {self.user.name!r} (served by user logic)"
        return _TITLES[self.name]


def _user_structures(caps):
    kinds = {"legacy": Kind.LEGACY, "extended": Kind.EXTENDED, "range": Kind.RANGE}
    return [Structure(cap.name, kinds[cap.kind], cap.size, cap.offset,
                      None if cap.kind == "range" else cap.cap_id, cap.version)
            for cap in caps]


@dataclass(frozen=True)
class PfContext:
    """What PF ``k``'s configuration space takes from its device.

    ``next_function``: ARI Next Function Number (the next PF's function number, 0 in the last);
    ``multi_function``: Header Type's Multi-Function bit; ``owns_ari``: the PF holds the
    device's ARI Capable Hierarchy bit (PF 0).
    """
    pf:             object
    k:              int = 0
    next_function:  int = 0
    multi_function: bool = False
    owns_ari:       bool = True


def pf_context(params, k=None):
    """The :class:`PfContext` of PF ``k`` of ``params`` (an :class:`EndpointParams`).

    Without ``k``, ``params`` is a single-PF :class:`EndpointParams` or a :class:`PfParams`
    (a lone PF: Next Function Number 0, Header Type 0, owner of ARI Capable Hierarchy).
    """
    if k is None:
        return PfContext(as_pf(params))
    if not isinstance(params, EndpointParams):
        raise TypeError(f"params: with a PF index, an EndpointParams (got {params!r})")
    pfs = params.pfs
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(pfs):
        raise IndexError(f"PF index {k!r}: this device has PFs 0..{len(pfs) - 1}")
    nxt = pfs[k + 1].pf_rid & 0xff if k + 1 < len(pfs) else 0
    return PfContext(pfs[k], k, nxt, len(pfs) > 1, k == 0)


def _acs(pf):
    """``pf.acs`` if it is an :class:`AcsParams` (``None`` and ``"auto"`` mean no ACS)."""
    return pf.acs if isinstance(pf.acs, AcsParams) else None


def pf_structures(params):
    """The structures of a PF's configuration space, in listing order.

    ``params``: a :class:`~sriov_ep.params.PfParams` (or a single-PF EndpointParams).
    """
    p = as_pf(params)
    structures = [Structure("header", Kind.HEADER, HEADER_SIZE, 0),
                  Structure("pcie", Kind.LEGACY, PCIE_CAP_SIZE, PCIE_CAP_OFFSET, PCIE_CAP_ID)]
    if p.pm is not None:
        structures.append(Structure("pm", Kind.LEGACY, PM_CAP_SIZE, p.pm.offset, PM_CAP_ID))
    if p.msix is not None:
        structures.append(Structure("msix", Kind.LEGACY, MSIX_CAP_SIZE, p.msix.offset,
                                    MSIX_CAP_ID))
    structures += [Structure("ari", Kind.EXTENDED, ARI_CAP_SIZE, p.ari_cap_offset, ARI_CAP_ID),
                   Structure("sriov", Kind.EXTENDED, SRIOV_CAP_SIZE, p.sriov_cap_offset,
                             SRIOV_CAP_ID)]
    acs = _acs(p)
    if acs is not None:
        structures.append(Structure("acs", Kind.EXTENDED, ACS_CAP_SIZE, acs.offset, ACS_CAP_ID,
                                    ACS_CAP_VERSION))
    return structures + _user_structures(p.user_caps)


def vf_structures(params):
    """The structures of the configuration space of every VF of a PF, in listing order.

    ``params``: a :class:`~sriov_ep.params.PfParams` (or a single-PF EndpointParams).
    """
    p = as_pf(params)
    structures = [Structure("header", Kind.HEADER, HEADER_SIZE, 0),
                  Structure("pcie", Kind.LEGACY, PCIE_CAP_SIZE, PCIE_CAP_OFFSET, PCIE_CAP_ID)]
    if p.vf_pm is not None:
        structures.append(Structure("pm", Kind.LEGACY, PM_CAP_SIZE, p.vf_pm.offset, PM_CAP_ID))
    if p.vf_msix is not None:
        structures.append(Structure("msix", Kind.LEGACY, MSIX_CAP_SIZE, p.vf_msix.offset,
                                    MSIX_CAP_ID))
    structures.append(Structure("ari", Kind.EXTENDED, ARI_CAP_SIZE, VF_ARI_CAP_OFFSET,
                                ARI_CAP_ID))
    return structures + _user_structures(p.vf_user_caps)


def _chain(ctx, structures, *, vf):
    params = ctx.pf
    placed = place(structures)
    legacy = [pl.offset for pl in placed if pl.kind == Kind.LEGACY]
    cap_pointer = legacy[0] if legacy else 0
    caps = params.vf_user_caps if vf else params.user_caps
    users = {cap.name: (n, cap) for n, cap in enumerate(caps)}
    entries = []
    for pl in placed:
        name, nxt = pl.name, pl.next_offset
        owner, user, index = "bank", None, 0
        if name in users:
            index, user = users[name]
            owner, regmap = "user", user_capability_map(user, nxt, vf=vf)
        elif name == "header":
            regmap = (vf_header_map(params, cap_pointer) if vf
                      else type0_header_map(params, cap_pointer,
                                            multi_function=ctx.multi_function))
        elif name == "pcie":
            regmap = pcie_capability_map(params, nxt, vf=vf)
        elif name == "pm":
            regmap = pm_capability_map(params.vf_pm if vf else params.pm, nxt, vf=vf)
        elif name == "msix":
            regmap = msix_capability_map(params.vf_msix if vf else params.msix, nxt, vf=vf)
        elif name == "ari":
            # VFs: Next Function Number 0 (SR-IOV §3.7.7).
            regmap = ari_capability_map(nxt, 0 if vf else ctx.next_function)
            if vf:
                regmap = RegisterMap("vf_ari", regmap.size, regmap.registers)
        elif name == "sriov":
            owner, regmap = "sriov", sriov_capability_map(params, nxt, owns_ari=ctx.owns_ari)
        elif name == "acs":
            regmap = acs_capability_map(params.acs, nxt)
        else:   # pragma: no cover - every structure above has a case
            raise AssertionError(name)
        entries.append(ChainEntry(pl, regmap, owner, user, index))
    return entries


def pf_chain(params, k=None):
    """PF ``k``'s chain: :class:`ChainEntry` objects in ascending offset order.

    ``pf_chain(params, k)``: PF ``k`` of the device ``params``; ``pf_chain(params)``: the PF of a
    single-PF device (or a lone PfParams). See :func:`pf_context`.
    """
    ctx = pf_context(params, k)
    return _chain(ctx, pf_structures(ctx.pf), vf=False)


def vf_chain(params, k=None):
    """The chain of every VF of PF ``k``: :class:`ChainEntry` objects in ascending offset
    order (arguments as for :func:`pf_chain`; a VF's chain depends on its PF only)."""
    ctx = pf_context(params, k)
    return _chain(ctx, vf_structures(ctx.pf), vf=True)
