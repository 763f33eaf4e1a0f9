"""``SriovEndpoint``: an SR-IOV endpoint (one PF and its VFs) assembled from its chains.

The PF's and the VFs' configuration spaces are the chains of :mod:`sriov_ep.caps`; this module
builds the request pipeline around them by iterating over the chains (one register window, read
term and write strobe per structure), packs the VF chain's per-VF fields into the VF state memory
(:mod:`sriov_ep.vf_state`), and connects the decoders and the MSI-X engine. The structure is
described in ``docs/architecture.md``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .caps import pf_chain, vf_chain
from .caps.pm import D0, D3HOT
from .caps.sriov import SriovCapability, VfBarState
from .decode.bar import DeviceBarDecoder, MemDecode, MemRequest, PfBarState, VfBarDecoder
from .decode.routing import DeviceRoutingDecoder, RoutingIdDecoder, Target, needs_divider
from .interrupts import MsixEngine, MsixPf
from .params import EndpointParams
from .regs import RegisterBank
from .vf_state import VfStateMemory, vf_state_fields, vf_state_layout, vf_state_ranges

__all__ = ["CompletionStatus", "ConfigRequest", "Completion", "SriovEndpoint",
           "UserConfigRequest", "UserConfigResponse", "InterruptRequest", "MsixMessage",
           "CONFIG_LATENCY", "VF_BME_LATENCY", "config_latency", "PfPorts",
           "pf_index_width"]

#: Clock edges from the one that accepts a config request to the one that transfers its
#: completion (with ``cfg_cpl.ready`` high): decode (2), read the VF state (3), execute,
#: complete. One more (see :attr:`SriovEndpoint.config_latency`) when a VF Stride is not a power
#: of two: the Routing-ID decoder's multiplication gets a stage of its own. One more with several
#: PFs: the merge of the per-PF decoder cores (``MERGE``).
CONFIG_LATENCY = 7

def config_latency(params):
    """:attr:`SriovEndpoint.config_latency` of an endpoint with ``params``."""
    multi = params.num_pfs > 1 if isinstance(params, EndpointParams) else False
    return CONFIG_LATENCY + (1 if needs_divider(params) else 0) + (1 if multi else 0)


def _pfs_of(params):
    """The PfParams of ``params`` (a device, or a lone PF)."""
    if isinstance(params, EndpointParams):
        return params.pfs
    return (params,)


def _max_vfs(params):
    """The largest TotalVFs of any PF: the range of a VF number within its PF."""
    return max(pf.total_vfs for pf in _pfs_of(params))


def _pf_field(params):
    """``{"pf": width}`` for a device of several PFs, ``{}`` for one PF (port shapes of one PF
    stay as they were)."""
    if isinstance(params, EndpointParams) and params.num_pfs > 1:
        return {"pf": pf_index_width(params)}
    return {}


#: Clock edges from ``vf_bme_query`` to ``vf_bme``: the memory index is registered, the memory
#: read, its output registered.
VF_BME_LATENCY = 3


class CompletionStatus(enum.Enum, shape=3):
    """Completion Status codes (PCI Express Base, §2.2.9)."""
    #: Successful Completion.
    SC  = 0b000
    #: Unsupported Request.
    UR  = 0b001
    #: Request Retry Status (formerly Configuration Request Retry Status, CRS): the PF is not
    #: ready yet after a reset; the request had no effect and is to be reissued (§2.3.1, §6.6).
    RRS = 0b010


class ConfigRequest(data.Struct):
    """A configuration request (the fields of a CfgRd0/CfgWr0/CfgRd1/CfgWr1 TLP that matter)."""
    #: Type 1 (1) or Type 0 (0).
    type1: 1
    #: Target Routing ID: bus 15:8, device 7:3 and function 2:0 (or ARI function 7:0).
    rid:   16
    #: Dword register number (Extended Register Number 11:8 and Register Number 7:2 of the TLP).
    reg:   10
    #: First DW Byte Enables.
    be:    4
    #: Write (CfgWr) rather than read (CfgRd).
    write: 1
    #: Write data.
    data:  32


class Completion(data.Struct):
    """A completion: status and, for reads, data."""
    status: CompletionStatus
    data:   32


def _window(m, reg, base_dword, dwords, name):
    """Whether dword ``reg`` falls in ``[base_dword, base_dword + dwords)``, and its index there.

    Both are registered: ``reg`` is held from acceptance to completion, so they are ready from the
    cycle after decoding on, and the comparisons stay off the execute path.
    """
    hit  = Signal(name=f"{name}_hit")
    addr = Signal(max(1, (dwords - 1).bit_length()), name=f"{name}_addr")
    in_window = reg < base_dword + dwords
    if base_dword:      # ``reg >= 0`` always holds: leave it out (Verilator -Wall: UNSIGNED)
        in_window &= reg >= base_dword
    m.d.sync += [hit.eq(in_window), addr.eq((reg - base_dword)[:len(addr)])]
    return hit, addr




def UserConfigRequest(params):
    """Layout of a request to user-owned configuration space.

    ``function``: 0 for the PF, n for VF n. ``window``: index of the window in ``user_caps``
    (PF) or ``vf_user_caps`` (VF). ``offset``: dword index inside the window; ``reg``: the
    dword register number in the function's configuration space. ``be``/``data``/``write`` as
    in the config request (bytes the endpoint answers itself are removed from ``be``). ``tag``
    must come back in the response.
    """
    # At least one bit: a 0-bit field is written to Verilog as a `[-1:0]` vector
    # (Verilator -Wall: ASCRANGE); with fewer than two windows it reads 0.
    pfs = _pfs_of(params)
    windows = max(2, *(len(pf.user_caps) for pf in pfs), *(len(pf.vf_user_caps) for pf in pfs))
    return data.StructLayout({
        **_pf_field(params),
        "function": range(_max_vfs(params) + 1),
        "window":   range(windows),
        "offset":   10,
        "reg":      10,
        "write":    1,
        "be":       4,
        "data":     32,
        "tag":      4,
    })


#: Layout of a response from user-owned configuration space: read data (ignored for writes)
#: and the request's tag.
UserConfigResponse = data.StructLayout({"data": 32, "tag": 4})


def InterruptRequest(params):
    """Layout of an interrupt request: ``function`` (0 = PF, n = VF n) and MSI-X ``vector``."""
    return data.StructLayout({**_pf_field(params), "function": range(_max_vfs(params) + 1),
                              "vector": 11})


def MsixMessage(params):
    """Layout of an MSI-X message to send: a posted write of ``data`` to ``addr`` (bits 1:0
    zero) with the Requester ID of ``function`` (0 = PF, n = VF n)."""
    return data.StructLayout({**_pf_field(params), "function": range(_max_vfs(params) + 1),
                              "addr": 64, "data": 32})


def pf_index_width(params):
    """Bits of a PF index in ports and events: at least one (it reads 0 with one PF)."""
    return max(1, (params.num_pfs - 1).bit_length())


#: What the endpoint tells user logic about one PF (port ``pfs[k]``).
PfPorts = data.StructLayout({
    #: PF Command bits.
    "memory_space_enable": 1,
    "bus_master_enable":   1,
    #: PF PowerState (0 = D0, 3 = D3hot).
    "power_state":         2,
    #: One-cycle pulse when a PF reset starts: a Function Level Reset, or D3hot to D0 with
    #: No_Soft_Reset 0.
    "flr":                 1,
    #: SR-IOV Control bits, NumVFs, and the current First VF Offset and VF Stride.
    "vf_enable":           1,
    "vf_mse":              1,
    "num_vfs":             16,
    "first_vf_offset":     16,
    "vf_stride":           16,
    #: One-cycle pulse when the state of every VF of this PF is reset (VF Enable cleared,
    #: PF reset, reset); ``vf_reset_busy`` while it is being cleared.
    "vfs_reset":           1,
    "vf_reset_busy":       1,
    #: PF BAR base addresses by slot (0 for slots without a BAR and for the upper slot of a
    #: 64-bit BAR).
    "bars":                data.ArrayLayout(PfBarState, 6),
    #: Base and aperture of each VF BAR by slot (0 where there is none).
    "vf_bars":             data.ArrayLayout(VfBarState, 6),
})


def _or_terms(terms, width):
    result = Const(0, width)
    for term in terms:
        result = result | term
    return result


def _vf_exists(n, num_vfs):
    """``1 <= n <= num_vfs`` for a VF number ``n`` from user logic, as ``n - 1 < num_vfs``:
    user logic that ties ``n`` to 0 then leaves no comparison of a constant 0 in the Verilog
    (``1'h0 <= num_vfs``: Verilator -Wall UNSIGNED)."""
    return (n != 0) & ((n - 1)[:len(n)] < num_vfs)


class SriovEndpoint(wiring.Component):
    """An SR-IOV endpoint: the configuration spaces of the PF and all its VFs, memory decode,
    MSI-X and user-owned configuration space.

    One configuration request is handled at a time. A request is accepted when ``cfg_req.valid``
    and ``cfg_req.ready`` are both high at a clock edge; its completion is valid
    :attr:`config_latency` (7, or 8 with a VF Stride that is not a power of two) cycles later and
    stays valid until ``cfg_cpl.ready``. A write to a function with MSI-X completes when the
    MSI-X engine has also taken the function's new control state (at once while the engine is
    free); after a write that resets a function with MSI-X, the next request waits a few cycles
    while the engine resets it. A request to user-owned configuration space takes as long as
    user logic takes to answer (at most ``user_cfg_timeout`` cycles). ``ready`` stays low from
    acceptance until the completion is taken.

    Readiness: after a conventional reset and after a PF reset (FLR, D3hot to D0) the VF state
    is cleared over TotalVFs cycles (``vf_reset_busy``). Meanwhile every config request is
    accepted and completed at once with no effect: RRS (Request Retry Status) for the PF, UR
    for any other Routing ID (no VF exists then). When VF Enable is cleared, the PF keeps
    working during the clear, except that a config write waits (``ready`` low) until it ends,
    at most TotalVFs + 2 cycles. The memory path never waits: BARs claim nothing after a PF
    reset (Memory Space Enable is 0), and no VF exists while the VF state is cleared.

    Per-VF state lives in a memory of TotalVFs entries, so the flip-flop count does not grow
    with TotalVFs. Behaviour is specified in ``docs/endpoint-behaviour.md``.

    Several PFs (``docs/multi-pf.md``): each PF has its own register banks and SR-IOV
    capability, the VFs of every PF share one set of VF banks (the PFs' VF chains must be equal
    for now) and one VF state memory (PF k's VF n at entry ``vf_base(k) + n - 1``). A reset of
    PF k clears PF k's entries only; meanwhile PF k answers RRS and every other PF and its VFs
    are served. ``ucfg_req``, ``irq``, ``msg`` and ``vf_msix_size`` then carry ``pf`` too. The
    MSI-X engine keeps every PF's and VF's tables and state (``docs/multi-pf.md`` §8): a reset
    of PF k clears PF k's MSI-X state and its VFs', VF Enable clearing on PF k its VFs' only;
    :attr:`msg_latency` is one cycle longer (the engine's ``irq`` input stage).

    Parameters
    ----------
    params : EndpointParams
    mem_latency : int
        Latency of the BAR decoder (1, or 2 for one more pipeline stage); the endpoint adds
        one cycle to check the function's power state and route MSI-X accesses (see
        :attr:`mem_decode_latency`).
    tag_width : int
        Width of the memory request tag carried to the decode result.

    Members
    -------
    mem_req : In(stream.Signature(MemRequest(tag_width)))
        Memory requests (64-bit address, write, tag, write data and byte enables).
    mem_res : Out(stream.Signature(MemDecode(params, tag_width)))
        Their decode (see :class:`VfBarDecoder`): claimed or not, PF or VF n, BAR, offset; or
        ``internal`` with the read data when the endpoint served an MSI-X table or PBA access.
        A function not in D0 claims nothing. Unclaimed requests are for the user logic to
        complete with UR.
    cfg_req : In(stream.Signature(ConfigRequest))
        Configuration requests.
    cfg_cpl : Out(stream.Signature(Completion))
        Their completions, in order.
    ucfg_req : Out(stream.Signature(UserConfigRequest(params)))
        Requests to configuration space the user owns (``user_caps``/``vf_user_caps``).
    ucfg_res : In(stream.Signature(UserConfigResponse))
        One response per request, with its tag; a response with another tag is dropped. Without
        a response within ``user_cfg_timeout`` cycles the endpoint completes the request itself
        (a read returns 0).
    irq : In(stream.Signature(InterruptRequest(params)))
        Interrupt requests from user logic (see :class:`MsixEngine`).
    msg : Out(stream.Signature(MsixMessage(params)))
        MSI-X messages to send.
    irq_dropped : Out(1)
        Pulses when an interrupt request names a function without MSI-X or a vector beyond its
        Table Size.
    vf_msix_size : In(stream.Signature({"vf": ..., "count": 12}))
        Set VF ``vf``'s MSI-X Table Size to ``count`` vectors (0: the default). Taken only
        while that VF exists and its MSI-X is disabled, and for 1 <= count <= max_vectors.
    vf_msix_size_done : Out(StructLayout({"valid": 1, "ok": 1}))
        One-cycle pulse when a ``vf_msix_size`` request has been handled; ``ok`` if taken.
    bus : Out(8)
        Captured bus number.
    ari_capable_hierarchy : Out(1)
        ARI Capable Hierarchy.
    pfs : Out(ArrayLayout(PfPorts, P))
        Per PF (P = ``params.num_pfs``, in ``params.pfs`` order): Command bits, PowerState,
        reset pulse, SR-IOV Control bits, NumVFs, First VF Offset and VF Stride, its VFs'
        reset pulse and clear-busy, PF and VF BARs by slot (see :data:`PfPorts`).
    vf_flr : Out(StructLayout({"valid": 1, "pf": ..., "vf": range(TotalVFs + 1)}))
        A VF reset event (VF FLR, or a VF's D3hot to D0 with No_Soft_Reset 0): ``valid`` for
        one cycle, ``vf`` the VF number (1-based) within PF ``pf``. Events come at most once per
        config request, so user logic needs no backpressure.
    vf_bme_query : In(StructLayout({"pf": ..., "vf": range(TotalVFs + 1)}))
        VF (of PF ``pf``) whose Bus Master Enable to look up.
    vf_bme : Out(1)
        Bus Master Enable of VF ``vf_bme_query`` three cycles earlier; 0 unless that VF exists.
    urd : In(StructLayout({"valid": 1, "pf": ..., "vf": range(TotalVFs + 1)}))
        Unsupported Request Detected: while ``valid``, PF ``pf``'s Device Status bit 3 (RW1C)
        is set at the clock edge (``vf`` 0; a set wins over a config write clearing it in the
        same cycle). ``vf`` other than 0 is ignored for now (a VF's Device Status is RO 0).
    """

    def __init__(self, params, *, mem_latency=1, tag_width=8):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params: must be an EndpointParams, not {params!r}")
        self._params = params
        vf_range = range(_max_vfs(params) + 1)
        pf_width = pf_index_width(params)
        if params.num_pfs > 1:
            self._init_multi(params, mem_latency, tag_width)
        else:
            self._init_single(params, mem_latency, tag_width)
        super().__init__({
            "mem_req":                In(stream.Signature(MemRequest(tag_width))),
            "mem_res":                Out(stream.Signature(MemDecode(params, tag_width))),
            "cfg_req":                In(stream.Signature(ConfigRequest)),
            "cfg_cpl":                Out(stream.Signature(Completion)),
            "ucfg_req":               Out(stream.Signature(UserConfigRequest(params))),
            "ucfg_res":               In(stream.Signature(UserConfigResponse)),
            "irq":                    In(stream.Signature(InterruptRequest(params))),
            "msg":                    Out(stream.Signature(MsixMessage(params))),
            "irq_dropped":            Out(1),
            "vf_msix_size":           In(stream.Signature(data.StructLayout({
                                          **_pf_field(params), "vf": vf_range, "count": 12}))),
            "vf_msix_size_done":      Out(data.StructLayout({"valid": 1, "ok": 1})),
            "bus":                    Out(8),
            "ari_capable_hierarchy":  Out(1),
            "pfs":                    Out(data.ArrayLayout(PfPorts, params.num_pfs)),
            "vf_flr":                 Out(data.StructLayout({"valid": 1, "pf": pf_width,
                                                             "vf": vf_range})),
            "vf_bme_query":           In(data.StructLayout({"pf": pf_width, "vf": vf_range})),
            "vf_bme":                 Out(1),
            "urd":                    In(data.StructLayout({"valid": 1, "pf": pf_width,
                                                            "vf": vf_range})),
        })

    def _init_multi(self, params, mem_latency, tag_width):
        """Submodules of a device of several PFs (``docs/multi-pf.md`` §3-§6)."""
        pfs = params.pfs
        self.pf_chains = [pf_chain(params, k) for k in range(len(pfs))]
        vf_chains = [vf_chain(params, k) for k in range(len(pfs))]

        def shape(chain):
            return [(e.name, e.offset, e.owner, e.regmap) for e in chain]

        for k, chain in enumerate(vf_chains[1:], 1):
            if shape(chain) != shape(vf_chains[0]):
                raise NotImplementedError(
                    f"SriovEndpoint: the VFs of PF {k} ({pfs[k].pf_rid:#06x}) have another "
                    f"configuration space than those of PF 0; PFs whose VF chains differ "
                    f"(VF PM, MSI-X, user capabilities, IDs) are not implemented yet")
        self.pf_chain = self.pf_chains[0]
        self.vf_chain = vf_chains[0]
        self.sriovs = []
        for k, chain in enumerate(self.pf_chains):
            entry = next(e for e in chain if e.owner == "sriov")
            self.sriovs.append(SriovCapability(pfs[k], next_offset=entry.placed.next_offset,
                                               owns_ari=(k == 0), write_ahead=True))
        self.sriov = self.sriovs[0]
        self._decode_stages = 3 if needs_divider(params) else 2
        self.decoder = DeviceRoutingDecoder(params, stages=self._decode_stages)
        self.bar_decoder = DeviceBarDecoder(params, latency=mem_latency, tag_width=tag_width)
        self.state_layout = vf_state_layout(params)
        self.msix = None
        if any(pf.msix is not None or pf.vf_msix is not None for pf in pfs):
            self.msix = MsixEngine(pfs=[
                MsixPf(pf.total_vfs,
                       pf.msix.vectors if pf.msix is not None else 0,
                       pf.vf_msix.max_vectors if pf.vf_msix is not None else 0,
                       pf.vf_msix.vectors if pf.vf_msix is not None else 0)
                for pf in pfs])

    def _init_single(self, params, mem_latency, tag_width):
        self.pf_chain = pf_chain(params)
        self.vf_chain = vf_chain(params)
        sriov_entry = next(e for e in self.pf_chain if e.owner == "sriov")
        # Its checked writes (System Page Size, NumVFs, ARI Capable Hierarchy) are decoded a
        # cycle ahead, in LOAD2, as with several PFs: the check of the written value is then
        # off the path into System Page Size's mask registers.
        self.sriov   = SriovCapability(params, next_offset=sriov_entry.placed.next_offset,
                                       write_ahead=True)
        self._decode_stages = 3 if needs_divider(params) else 2
        self.decoder = RoutingIdDecoder(params, stages=self._decode_stages)
        self.bar_decoder = VfBarDecoder(params, latency=mem_latency, tag_width=tag_width)
        self.state_layout = vf_state_layout(params)
        self.msix = None
        if params.msix is not None or params.vf_msix is not None:
            self.msix = MsixEngine(
                total_vfs=params.total_vfs,
                pf_vectors=params.msix.vectors if params.msix is not None else 0,
                vf_vectors=params.vf_msix.max_vectors if params.vf_msix is not None else 0,
                vf_default_vectors=params.vf_msix.vectors if params.vf_msix is not None else 0)

    @property
    def params(self):
        return self._params

    @property
    def config_latency(self):
        """Clock edges from accepting a config request to transferring its completion:
        :data:`CONFIG_LATENCY` (7), or 8 when a VF Stride is not a power of two; one more with
        several PFs (the merge of the PFs' decoder cores). More for a
        write to a function with MSI-X while the MSI-X engine is busy, and for user-owned
        configuration space."""
        return config_latency(self._params)

    @property
    def mem_decode_latency(self):
        """Clock edges from accepting a memory request to its decode result (with
        ``mem_res.ready`` high), for requests the endpoint does not serve itself: the BAR
        decoder's latency plus one (the router), one request per cycle. While some VF is out of
        D0, a request a VF's BAR claims takes three more (its VF's PowerState is read from the
        VF state memory); see :meth:`mem_latency_of`."""
        return self.bar_decoder.latency + 1

    def mem_latency_of(self, *, vf_claimed, vf_low_power=False):
        """:attr:`mem_decode_latency`, plus three for a request a VF's BAR claims while some VF
        is out of D0 (``vf_low_power``; not for MSI-X table and PBA accesses, which wait for
        the engine)."""
        has_vf_pm = any(pf.vf_pm is not None for pf in self._params.pfs)
        slow = vf_claimed and vf_low_power and has_vf_pm
        return self.mem_decode_latency + (3 if slow else 0)

    @property
    def msg_latency(self):
        """Clock edges from accepting an ``irq`` request for a deliverable vector to the
        earliest that can transfer its message: the MSI-X engine's (6; 7 with several PFs,
        the engine's ``irq`` input stage). ``None`` without MSI-X."""
        return self.msix.msg_latency if self.msix is not None else None

    def elaborate(self, platform):
        if self._params.num_pfs > 1:
            return self._elaborate_multi(platform)
        p = self._params
        ports = self.pfs[0]
        m = Module()
        m.submodules.sriov   = sriov   = self.sriov
        m.submodules.decoder = decoder = self.decoder
        m.submodules.bar_decoder = bar_decoder = self.bar_decoder
        msix = self.msix
        if msix is not None:
            m.submodules.msix = msix

        # -- The chains: one bank per structure the endpoint serves itself ------------------
        pf_banks = {e.name: RegisterBank(e.regmap, name=f"pf_{e.name}")
                    for e in self.pf_chain if e.owner == "bank"}
        vf_banks = {e.name: RegisterBank(e.regmap, name=f"vf_{e.name}")
                    for e in self.vf_chain if e.owner == "bank"}
        header = pf_banks["header"]

        # -- Per-VF state: every per_vf field of the VF chain, in one memory entry ----------
        layout = self.state_layout
        state_fields = vf_state_fields(p)
        key_of = {(e.name, f"{reg.name}.{f.name}"): key for key, e, reg, f in state_fields}
        bme_key = key_of[("header", "command.bus_master_enable")]
        queries = {"bme": (bme_key,)}
        ps_key = key_of.get(("pm", "pmcsr.power_state"))
        if ps_key is not None:
            queries["pm"] = (ps_key,)
        depth = max(2, p.total_vfs)
        m.submodules.vf_state = vf_mem = VfStateMemory(depth, layout, queries)
        vf_rw = vf_mem.rw

        # The request being handled, held from acceptance to completion.
        req    = Signal(ConfigRequest)
        target = Signal(Target)
        # The VF state memory's address, a register: the addressed VF's entry while a request
        # is handled, the sweep's position while the memory is being cleared.
        mem_addr = Signal(range(depth))
        vf     = Signal.like(decoder.vf)    # the addressed VF's number (from LOAD on; or 0)
        cpl    = Signal(Completion)
        state  = Signal(layout)     # the addressed VF's state, from the memory
        # The one cycle in which the request takes effect. It, and every write enable below,
        # is a flip-flop set in the cycle before: the execute cycle starts from registers.
        exec_  = Signal()
        load2  = Signal()
        # A vf_msix_size request rides the same pipeline as a config request to that VF.
        size_op    = Signal()
        size_count = Signal(12)

        # -- Clearing all VF state: a sweep over the memory ---------------------------------
        # No VF exists during a sweep (VF Enable is 0), so no request in flight uses the memory:
        # requests accepted meanwhile leave ``mem_addr`` to the sweep. ``clearing``: the sweep
        # follows a reset of the PF (or the conventional reset), whose requests get RRS until
        # it ends; a sweep after VF Enable clearing only holds config writes back.
        sweep      = Signal(init=1)       # also after reset: rst may come at any time
        clearing   = Signal(init=1)
        start_sweep = Signal()
        pf_reset = Signal()
        with m.If(start_sweep):
            m.d.sync += [sweep.eq(1), mem_addr.eq(0)]
        with m.Elif(sweep):
            m.d.sync += mem_addr.eq(mem_addr + 1)
            with m.If(mem_addr == depth - 1):
                m.d.sync += [sweep.eq(0), clearing.eq(0)]
        with m.If(pf_reset):
            m.d.sync += clearing.eq(1)
        vfe_prev = Signal()
        m.d.sync += vfe_prev.eq(sriov.vf_enable)
        with m.If(pf_reset):    # the PF reset clears VF Enable too: one sweep, not two
            m.d.sync += vfe_prev.eq(0)
        # Registered: the sweep starts a cycle after its cause (off the execute path); until
        # then no request is accepted either.
        vfe_fell = Signal()
        m.d.comb += vfe_fell.eq(vfe_prev & ~sriov.vf_enable)
        m.d.sync += start_sweep.eq(pf_reset | vfe_fell)
        m.d.comb += ports.vfs_reset.eq(start_sweep)
        # (The MSI-X engine's own sweep needs no wait here: the engine finishes it before it
        # takes the next control update, which the request's completion waits for.)
        busy = sweep | start_sweep | vfe_fell

        # -- Where the request goes ----------------------------------------------------------
        reg = req.reg
        windows = {}

        def window(offset, dwords):
            if (offset, dwords) not in windows:
                windows[offset, dwords] = _window(m, reg, offset // 4, dwords,
                                                  f"w{offset:03x}_{dwords}")
            return windows[offset, dwords]

        def at_execute(cond, name):
            """A flip-flop high in the execute cycle exactly when ``cond`` (known by LOAD2)."""
            strobe = Signal(name=name)
            m.d.sync += strobe.eq(load2 & cond)
            return strobe

        pf_wr    = req.write & (target == Target.PF)
        vf_wr    = req.write & (target == Target.VF)
        m.d.sync += exec_.eq(load2)
        m.d.comb += decoder.capture.eq(at_execute(pf_wr & ~req.type1, "capture_we"))
        vf_exec_wr = at_execute(vf_wr | size_op, "vf_exec_wr")

        # User windows: the part of a window that goes to user logic.
        user_hit = Signal()     # registered like the window hits
        user_window = Signal(range(max(2, len(p.user_caps), len(p.vf_user_caps))))
        user_offset = Signal(10)
        user_mask = Signal(32)  # the bits the endpoint answers itself (the header)
        user_be = Signal(4)

        def user_terms(entries, is_target):
            for e in entries:
                if e.owner != "user":
                    continue
                hit, addr = window(e.offset, e.placed.dwords)
                first = addr == 0
                if e.user.kind == "extended":
                    to_user = hit & ~first
                    mask = Const(0, 32)
                elif e.user.kind == "legacy":
                    to_user = hit
                    mask = Mux(first, 0x0000_ffff, 0)
                else:
                    to_user = hit
                    mask = Const(0, 32)
                with m.If(is_target & to_user):
                    m.d.comb += [user_hit.eq(1), user_window.eq(e.user_index),
                                 user_offset.eq(addr), user_mask.eq(mask)]

        user_hit_c = Signal()
        user_mask_c = Signal(32)
        user_window_c = Signal.like(user_window)
        user_offset_c = Signal(10)
        # (computed combinationally from the registered window hits, registered at LOAD2)
        m.d.comb += [user_hit_c.eq(user_hit), user_mask_c.eq(user_mask),
                     user_window_c.eq(user_window), user_offset_c.eq(user_offset)]
        user_terms(self.pf_chain, target == Target.PF)
        user_terms(self.vf_chain, target == Target.VF)
        to_user = Signal()
        to_user_window = Signal.like(user_window)
        to_user_offset = Signal(10)
        to_user_mask = Signal(32)
        with m.If(load2):
            m.d.sync += [to_user.eq(user_hit_c & ~size_op), to_user_window.eq(user_window_c),
                         to_user_offset.eq(user_offset_c), to_user_mask.eq(user_mask_c)]
        be_user = req.be & ~Cat(to_user_mask[0], to_user_mask[8], to_user_mask[16],
                                to_user_mask[24])
        m.d.comb += user_be.eq(be_user)

        # -- PF configuration space ----------------------------------------------------------
        def serve(entries, banks, write_cond, prefix):
            """Read terms and write strobes of one chain's structures; returns the read data."""
            terms = []
            for e in entries:
                hit, addr = window(e.offset, e.placed.dwords)
                if e.owner == "bank":
                    bank = banks[e.name]
                    rdata = Signal(32, name=f"{prefix}_{e.name}_rdata")
                    bank.read(m, addr, rdata)
                    we = at_execute(write_cond & hit, f"{prefix}_{e.name}_we")
                    bank.write(m, addr, we, req.be, req.data)
                    terms.append(hit.replicate(32) & rdata)
                elif e.owner == "sriov":
                    we = at_execute(write_cond & hit, f"{prefix}_sriov_we")
                    m.d.comb += [sriov.cfg.addr.eq(addr), sriov.cfg.w_en.eq(we),
                                 sriov.cfg.w_be.eq(req.be), sriov.cfg.w_data.eq(req.data),
                                 # high in LOAD2 exactly when ``we`` is in EXECUTE; the
                                 # address, byte enables and data are the write's already
                                 sriov.w_ahead.eq(load2 & write_cond & hit)]
                    terms.append(hit.replicate(32) & sriov.cfg.r_data)
                else:   # user: the endpoint answers the header only
                    bank = banks.setdefault(e.name, RegisterBank(e.regmap, name=f"{prefix}_"
                                                                                f"{e.name}"))
                    rdata = Signal(32, name=f"{prefix}_{e.name}_rdata")
                    bank.read(m, addr, rdata)
                    terms.append(hit.replicate(32) & rdata)
            return _or_terms(terms, 32)

        pf_data = Signal(32)
        m.d.comb += pf_data.eq(serve(self.pf_chain, pf_banks, pf_wr, "pf"))
        pf_banks["pcie"].set_bits(m, "device_status.unsupported_request_detected",
                                  self.urd.valid & (self.urd.pf == 0) & (self.urd.vf == 0))

        # PF resets: Initiate FLR, or PowerState D3hot -> D0 with No_Soft_Reset 0. The write
        # completes, then the whole PF (and every VF) is reset.
        flr_w, flr_value = pf_banks["pcie"].write_of("device_control.initiate_flr")
        pf_soft_reset = Const(0, 1)
        pf_d0 = Const(1, 1)
        pf_power = Const(D0, 2)
        if "pm" in pf_banks:
            pf_power = pf_banks["pm"]["pmcsr.power_state"]
            pf_d0 = pf_power == D0
            ps_w, ps_value = pf_banks["pm"].write_of("pmcsr.power_state")
            if not p.pm.no_soft_reset:
                pf_soft_reset = ps_w & (pf_power == D3HOT) & (ps_value == D0)
        m.d.comb += pf_reset.eq((flr_w & flr_value) | pf_soft_reset)
        for bank in pf_banks.values():
            bank.reset(m, pf_reset)
        m.d.comb += sriov.reset.eq(pf_reset)

        # -- VF configuration space ----------------------------------------------------------
        # The state of the addressed VF is read while fetching and used while executing. Each
        # per-VF field reads as its stored bits XOR its reset value.
        for key, e, r, f in state_fields:
            if f.access.stored or f.per_vf:
                vf_banks[e.name].drive(f"{r.name}.{f.name}",
                                       getattr(state, key) ^ Const(f.reset, f.width))
        vf_data = Signal(32)
        m.d.comb += vf_data.eq(serve(self.vf_chain, vf_banks, vf_wr, "vf"))

        new_state = Signal(layout)
        m.d.comb += new_state.eq(state)
        for key, e, r, f in state_fields:
            if not f.access.stored:
                continue
            w, value = vf_banks[e.name].write_of(f"{r.name}.{f.name}")
            with m.If(w):
                m.d.comb += getattr(new_state, key).eq(value ^ Const(f.reset, f.width))
        vflr_w, vflr_value = vf_banks["pcie"].write_of("device_control.initiate_flr")
        vf_reset = Signal()
        vf_soft_reset = Const(0, 1)
        if ps_key is not None:
            vps_w, vps_value = vf_banks["pm"].write_of("pmcsr.power_state")
            vf_power = getattr(state, ps_key)       # D0 is 0: stored as is
            if not p.vf_pm.no_soft_reset:
                vf_soft_reset = vps_w & (vf_power == D3HOT) & (vps_value == D0)
        m.d.comb += vf_reset.eq((vflr_w & vflr_value) | vf_soft_reset)
        # A VF reset returns its state to reset, except the MSI-X Table Size, which belongs to
        # the PF's management of the VF (Linux sets it before a VF driver binds, and the bind
        # itself may reset the VF).
        size_key = key_of.get(("msix", "message_control.table_size"))
        with m.If(vf_reset):
            m.d.comb += new_state.eq(0)
            if size_key is not None:
                m.d.comb += getattr(new_state, size_key).eq(getattr(state, size_key))
        size_ok = Signal()
        if size_key is not None:
            count = Mux(size_count == 0, p.vf_msix.vectors, size_count)
            enable_key = key_of[("msix", "message_control.msix_enable")]
            m.d.comb += size_ok.eq(size_op & (getattr(state, enable_key) == 0) &
                                   (count >= 1) & (count <= p.vf_msix.max_vectors) &
                                   (target == Target.VF))
            with m.If(size_ok):
                m.d.comb += getattr(new_state, size_key).eq(
                    (count - 1)[:11] ^ Const(p.vf_msix.vectors - 1, 11))

        # The new state is written back in the cycle after executing, from registers: the next
        # request to read it comes several cycles later, and a sweep never overlaps a VF write.
        write_back = Signal()
        new_state_r = Signal(layout)
        size_ok_r = Signal()
        m.d.sync += write_back.eq(vf_exec_wr)
        # Captured in the execute cycle only: it is also the MSI-X engine's control update,
        # which must hold still until the engine takes it.
        with m.If(exec_):
            m.d.sync += [new_state_r.eq(new_state), size_ok_r.eq(size_ok)]
        m.d.comb += [vf_rw.addr.eq(mem_addr),
                     vf_rw.w_data.eq(Mux(sweep, 0, new_state_r)),
                     vf_rw.w_en.eq(sweep | write_back)]
        m.d.sync += [self.vf_flr.valid.eq(vf_reset & vf_exec_wr), self.vf_flr.vf.eq(vf)]

        # -- Completion --------------------------------------------------------------------------
        with m.If(exec_):
            with m.Switch(target):
                with m.Case(Target.PF):
                    m.d.sync += [cpl.status.eq(CompletionStatus.SC), cpl.data.eq(pf_data)]
                with m.Case(Target.VF):
                    m.d.sync += [cpl.status.eq(CompletionStatus.SC), cpl.data.eq(vf_data)]
                with m.Default():
                    m.d.sync += [cpl.status.eq(CompletionStatus.UR), cpl.data.eq(0)]
            with m.If(req.write):
                m.d.sync += cpl.data.eq(0)

        # -- User configuration space: one request, a response or the timeout ----------------
        user_tag = Signal(4)
        timeout = Signal(range(p.user_cfg_timeout + 1))
        fn_number = Mux(target == Target.VF, vf, 0)
        m.d.comb += [
            self.ucfg_req.payload.function.eq(fn_number),
            self.ucfg_req.payload.window.eq(to_user_window),
            self.ucfg_req.payload.offset.eq(to_user_offset),
            self.ucfg_req.payload.reg.eq(req.reg),
            self.ucfg_req.payload.write.eq(req.write),
            self.ucfg_req.payload.be.eq(Mux(req.write, user_be, req.be)),
            self.ucfg_req.payload.data.eq(req.data),
            self.ucfg_req.payload.tag.eq(user_tag),
        ]

        # -- MSI-X: the engine keeps its own copy of each function's control state --------------
        has_msix = Const(0, 1)
        if msix is not None:
            bits = []
            if p.msix is not None:
                bits.append(target == Target.PF)
            if p.vf_msix is not None:
                bits.append(target == Target.VF)
            has_msix = _or_terms(bits, 1)
        # What the engine is told after a request, each a flag set in the execute cycle and
        # cleared when the engine takes it; valid and payload come from registers. A write to a
        # function with MSI-X: its control state (``ctrl_due``), taken alongside the
        # completion, so that the latency stays the same while the engine is free. A reset of
        # such a function: ``reset_fn`` (``reset_due``), then for a VF the Table Size it keeps
        # (``restore_due``), while the next request waits. A size op: the new Table Size
        # (``size_due``), before its done pulse.
        ctrl_due = Signal()
        reset_due = Signal()
        restore_due = Signal()
        size_due = Signal()
        with m.If(exec_):
            resets = req.write & has_msix & ((vf_reset & vf_exec_wr) | pf_reset)
            m.d.sync += [
                ctrl_due.eq(req.write & has_msix & ~size_op & ~resets),
                reset_due.eq(resets),
                restore_due.eq(resets & (target == Target.VF) if size_key is not None else 0),
                size_due.eq(size_ok),
            ]
        engine_due = ctrl_due | reset_due | restore_due | size_due
        if msix is not None:
            new_size = (Mux(size_count == 0, p.vf_msix.vectors if p.vf_msix else 1, size_count)
                        - 1)[:11]
            kept_size = (getattr(state, size_key) ^ (p.vf_msix.vectors - 1)
                         if size_key is not None else Const(0, 11))
            m.d.comb += [
                msix.ctrl.valid.eq(ctrl_due),
                msix.reset_fn.valid.eq(reset_due),
                msix.reset_fn.payload.function.eq(fn_number),
                # (the kept Table Size goes back after the reset)
                msix.table_size.valid.eq(size_due | (restore_due & ~reset_due)),
                msix.table_size.payload.vf.eq(vf),
                msix.table_size.payload.size.eq(Mux(size_due, new_size, kept_size)),
            ]
            with m.If(msix.ctrl.valid & msix.ctrl.ready):
                m.d.sync += ctrl_due.eq(0)
            with m.If(msix.reset_fn.valid & msix.reset_fn.ready):
                m.d.sync += reset_due.eq(0)
            with m.If(msix.table_size.valid & msix.table_size.ready):
                m.d.sync += [size_due.eq(0), restore_due.eq(restore_due & reset_due)]
        else:
            m.d.sync += [ctrl_due.eq(0), reset_due.eq(0), restore_due.eq(0), size_due.eq(0)]

        # -- Request sequencing ----------------------------------------------------------------
        retry = Signal()    # the request gets RRS (accepted while ``clearing``)
        with m.FSM(name="cfg"):
            with m.State("IDLE"):
                idle = ~busy & ~engine_due
                # Config requests are taken during a sweep too (see the class's "Readiness"),
                # except writes during the one after VF Enable clearing.
                take = (~start_sweep & ~vfe_fell & ~engine_due &
                        (~sweep | clearing | ~self.cfg_req.payload.write))
                m.d.comb += self.cfg_req.ready.eq(take)
                m.d.comb += self.vf_msix_size.ready.eq(idle & ~self.cfg_req.valid)
                with m.If(self.cfg_req.valid & take):
                    m.d.sync += [req.eq(self.cfg_req.payload), size_op.eq(0),
                                 retry.eq(clearing)]
                    m.next = "DECODE"
                with m.Elif(self.vf_msix_size.valid & idle):
                    size = self.vf_msix_size.payload
                    exists = sriov.vf_enable & _vf_exists(size.vf, sriov.num_vfs)
                    m.d.sync += [req.write.eq(0), size_op.eq(1), retry.eq(0),
                                 size_count.eq(size.count),
                                 target.eq(Mux(exists, Target.VF, Target.NONE)),
                                 mem_addr.eq(size.vf - 1)]
                    m.next = "FETCH"
            with m.State("DECODE"):         # the decoder's first stage
                m.next = "DIVIDE" if self._decode_stages == 3 else "DECODE2"
            if self._decode_stages == 3:
                with m.State("DIVIDE"):     # its multiplication by VF Stride's inverse
                    m.next = "DECODE2"
            with m.State("DECODE2"):
                m.d.sync += target.eq(decoder.target)
                with m.If(~sweep):
                    m.d.sync += mem_addr.eq(decoder.vf_index)
                m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += vf.eq(Mux(target == Target.VF, mem_addr + 1, 0))
                # The addressed VF's state is read from the memory, by the registered VF number,
                m.next = "LOAD"
            with m.State("LOAD"):
                # (the memory registers its block RAMs' outputs)
                m.next = "LOAD2"
            with m.State("LOAD2"):
                m.d.comb += load2.eq(~retry)        # a retried request takes no effect
                m.d.sync += state.eq(vf_rw.r_data)
                m.next = "EXECUTE"
            with m.State("EXECUTE"):
                with m.If(retry):       # the same latency as any request, and no effect
                    m.d.sync += [cpl.status.eq(Mux(target == Target.PF, CompletionStatus.RRS,
                                                   CompletionStatus.UR)),
                                 cpl.data.eq(0)]
                    m.next = "COMPLETE"
                with m.Elif(user_hit & ~size_op & ((target == Target.PF) |
                                                   (target == Target.VF))):
                    m.d.sync += timeout.eq(p.user_cfg_timeout)
                    m.next = "USER_REQ"
                with m.Else():
                    m.next = "COMPLETE"
            with m.State("USER_REQ"):
                with m.If((req.write & ~user_be.any()) | (~req.write & ~to_user)):
                    m.next = "COMPLETE"
                with m.Else():
                    m.d.comb += self.ucfg_req.valid.eq(1)
                    m.d.sync += timeout.eq(timeout - 1)
                    with m.If(self.ucfg_req.ready):
                        m.next = "USER_WAIT"
                    with m.Elif(timeout == 0):
                        m.next = "USER_DONE"
            with m.State("USER_WAIT"):
                m.d.comb += self.ucfg_res.ready.eq(1)
                m.d.sync += timeout.eq(timeout - 1)
                with m.If(self.ucfg_res.valid & (self.ucfg_res.payload.tag == user_tag)):
                    with m.If(~req.write):
                        m.d.sync += cpl.data.eq((cpl.data & to_user_mask) |
                                                (self.ucfg_res.payload.data & ~to_user_mask))
                    m.next = "USER_DONE"
                with m.Elif(timeout == 0):
                    m.next = "USER_DONE"
            with m.State("USER_DONE"):
                m.d.sync += user_tag.eq(user_tag + 1)
                m.next = "COMPLETE"
            with m.State("COMPLETE"):
                with m.If(size_op):
                    with m.If(~size_due):
                        m.d.comb += [self.vf_msix_size_done.valid.eq(1),
                                     self.vf_msix_size_done.ok.eq(size_ok_r)]
                        m.next = "IDLE"
                with m.Else():
                    ctrl_done = ~ctrl_due
                    if msix is not None:
                        ctrl_done = ctrl_done | msix.ctrl.ready
                    m.d.comb += self.cfg_cpl.valid.eq(ctrl_done)
                    with m.If(ctrl_done & self.cfg_cpl.ready):
                        m.next = "IDLE"
        m.d.comb += self.cfg_cpl.payload.eq(cpl)

        m.d.comb += [
            decoder.type1.eq(req.type1),
            decoder.rid.eq(req.rid),
            decoder.ari.eq(sriov.ari_capable_hierarchy),
            decoder.vf_enable.eq(sriov.vf_enable),
            decoder.num_vfs.eq(sriov.num_vfs),
        ]

        if msix is not None:
            # The control state the engine gets after a write (from registers).
            ctrl = msix.ctrl.payload
            pf_ctrl = [Const(0, 1)] * 3
            if p.msix is not None:
                mc = pf_banks["msix"]
                pf_ctrl = [mc["message_control.msix_enable"], mc["message_control.function_mask"],
                           header["command.bus_master_enable"]]
            vf_ctrl = [Const(0, 1)] * 4
            if p.vf_msix is not None:
                def vf_value(structure, path):
                    key = key_of[(structure, path)]
                    f = next(f for k, _e, _r, f in state_fields if k == key)
                    return getattr(new_state_r, key) ^ Const(f.reset, f.width)
                vf_ctrl = [vf_value("msix", "message_control.msix_enable"),
                           vf_value("msix", "message_control.function_mask"),
                           vf_value("header", "command.bus_master_enable"),
                           (vf_value("pm", "pmcsr.power_state") == D0) if ps_key is not None
                           else Const(1, 1)]
            is_vf = target == Target.VF
            m.d.comb += [
                ctrl.function.eq(fn_number),
                ctrl.enable.eq(Mux(is_vf, vf_ctrl[0], pf_ctrl[0])),
                ctrl.function_mask.eq(Mux(is_vf, vf_ctrl[1], pf_ctrl[1])),
                ctrl.bme.eq(Mux(is_vf, vf_ctrl[2], pf_ctrl[2])),
                ctrl.d0.eq(Mux(is_vf, vf_ctrl[3], pf_d0)),
                msix.reset_all.eq(start_sweep),
                msix.num_vfs.eq(sriov.num_vfs),
                msix.vf_enable.eq(sriov.vf_enable),
                self.irq_dropped.eq(msix.irq_dropped),
            ]
            wiring.connect(m, wiring.flipped(self.irq), msix.irq)
            wiring.connect(m, msix.msg, wiring.flipped(self.msg))
        else:
            # Without MSI-X every interrupt request is dropped.
            m.d.comb += [self.irq.ready.eq(1),
                         self.irq_dropped.eq(self.irq.valid)]

        # -- Memory requests: decoded against the PF's and the VFs' BARs ----------------------
        pf_bars = Signal(data.ArrayLayout(PfBarState, len(p.pf_bars)))
        for n, bar in enumerate(p.pf_bars):
            lo = header.read_dword(4 + bar.index)
            hi = header.read_dword(5 + bar.index) if bar.is_64bit else Const(0, 32)
            m.d.comb += [pf_bars[n].base.eq(Cat(Const(0, 4), lo[4:], hi)),
                         ports.bars[bar.index].eq(pf_bars[n])]
        for n, bar in enumerate(p.vf_bars):
            m.d.comb += ports.vf_bars[bar.index].eq(sriov.vf_bars[n])
        wiring.connect(m, wiring.flipped(self.mem_req), bar_decoder.req)
        m.d.comb += [
            bar_decoder.vf_enable.eq(sriov.vf_enable),
            bar_decoder.vf_mse.eq(sriov.vf_mse),
            bar_decoder.num_vfs.eq(sriov.num_vfs),
            bar_decoder.vf_bars.eq(sriov.vf_bars),
            # A PF that is not in D0 claims nothing.
            bar_decoder.pf_mse.eq(header["command.memory_space_enable"] & pf_d0),
            bar_decoder.pf_bars.eq(pf_bars),
        ]
        # VFs out of D0, counted as their PowerState changes: while there are none, no memory
        # request needs to look its VF's PowerState up.
        vfs_low_power = Signal()
        if ps_key is not None:
            low_count = Signal(range(depth + 1))
            was_low = getattr(state, ps_key).any()
            now_low = getattr(new_state, ps_key).any()
            with m.If(start_sweep):
                m.d.sync += low_count.eq(0)
            with m.Elif(exec_ & vf_exec_wr & ~was_low & now_low):
                m.d.sync += low_count.eq(low_count + 1)
            with m.Elif(exec_ & vf_exec_wr & was_low & ~now_low):
                m.d.sync += low_count.eq(low_count - 1)
            m.d.sync += vfs_low_power.eq(low_count != 0)
        self._route_memory(m, bar_decoder.res, vf_mem, ps_key is not None, vfs_low_power)

        # -- User-facing state ---------------------------------------------------------------
        # The query's memory index is registered first: no adder in front of the memory.
        bme_rd = vf_mem.bme
        bme_idx = Signal(range(depth))
        bme_ok = [Signal(name=f"bme_ok{n}") for n in range(3)]
        m.d.sync += [
            bme_idx.eq(self.vf_bme_query.vf - 1),
            bme_ok[0].eq(sriov.vf_enable & _vf_exists(self.vf_bme_query.vf, sriov.num_vfs) &
                         ~sweep),
            bme_ok[1].eq(bme_ok[0]),
            bme_ok[2].eq(bme_ok[1]),
        ]
        m.d.comb += [bme_rd.addr.eq(bme_idx),
                     self.vf_bme.eq(bme_ok[2] & bme_rd.data)]

        m.d.comb += [
            self.bus.eq(decoder.bus),
            self.ari_capable_hierarchy.eq(sriov.ari_capable_hierarchy),
            ports.memory_space_enable.eq(header["command.memory_space_enable"]),
            ports.bus_master_enable.eq(header["command.bus_master_enable"]),
            ports.power_state.eq(pf_power),
            ports.flr.eq(pf_reset),
            ports.vf_enable.eq(sriov.vf_enable),
            ports.vf_mse.eq(sriov.vf_mse),
            ports.num_vfs.eq(sriov.num_vfs),
            ports.first_vf_offset.eq(sriov.first_vf_offset),
            ports.vf_stride.eq(sriov.vf_stride),
            ports.vf_reset_busy.eq(sweep),
        ]
        return m

    def _elaborate_multi(self, platform):
        """Several PFs (``docs/multi-pf.md`` §3-§6, §9): per-PF banks and SR-IOV capabilities,
        one set of VF banks, the device decoder and its ``MERGE`` stage, one VF state memory
        that clears each PF's range itself, and the MSI-X engine of every PF (§8)."""
        p = self._params
        P = p.num_pfs
        m = Module()
        sriovs = self.sriovs
        for k, s in enumerate(sriovs):
            m.submodules[f"sriov{k}"] = s
        m.submodules.decoder = decoder = self.decoder
        m.submodules.bar_decoder = bar_decoder = self.bar_decoder
        msix = self.msix
        if msix is not None:
            m.submodules.msix = msix

        # -- The chains: PF banks per PF, one set of VF banks (the VF chains are equal) -------
        pf_banks = [{e.name: RegisterBank(e.regmap, name=f"pf{k}_{e.name}")
                     for e in chain if e.owner == "bank"}
                    for k, chain in enumerate(self.pf_chains)]
        vf_banks = {e.name: RegisterBank(e.regmap, name=f"vf_{e.name}")
                    for e in self.vf_chain if e.owner == "bank"}
        headers = [banks["header"] for banks in pf_banks]

        # -- Per-VF state: one memory of every PF's VFs, PF k's at vf_base(k) ----------------
        layout = self.state_layout
        state_fields = vf_state_fields(p)
        key_of = {(e.name, f"{reg.name}.{f.name}"): key for key, e, reg, f in state_fields}
        bme_key = key_of[("header", "command.bus_master_enable")]
        queries = {"bme": (bme_key,)}
        ps_key = key_of.get(("pm", "pmcsr.power_state"))
        if ps_key is not None:
            queries["pm"] = (ps_key,)
        depth = p.vf_entries
        m.submodules.vf_state = vf_mem = VfStateMemory(depth, layout, queries,
                                                       pf_ranges=vf_state_ranges(p))
        vf_rw = vf_mem.rw

        req    = Signal(ConfigRequest)
        target = Signal(Target)
        tpf    = Signal.like(decoder.pf)        # the PF reached, or whose VF is reached
        sel    = Signal(P)                      # one-hot of tpf (0 when nothing is reached)
        mem_addr = Signal(range(depth))         # the addressed VF's entry (global index)
        vf     = Signal.like(decoder.vf)        # its VF number within PF tpf
        cpl    = Signal(Completion)
        state  = Signal(layout)
        exec_  = Signal()
        load2  = Signal()
        hold   = Signal()   # the request uses the memory's port (a flip-flop, see VfStateMemory)
        retry  = Signal()
        # A vf_msix_size request rides the pipeline as a config request to that VF.
        size_op    = Signal()
        size_count = Signal(12)
        size_pf    = Signal.like(decoder.pf)    # the request's PF, VF (in vf) and index,
        size_index = Signal(range(depth))       # and VF n < NumVFs of each PF, registered
        size_in_range = Signal(P)
        size_value = Signal(11)                 # Table Size - 1 for the count, and whether
        size_fits = Signal()                    # the count is 1..max_vectors (from SIZE on)

        # -- Resets and clears per PF --------------------------------------------------------
        vf_enables = Signal(P)
        m.d.comb += vf_enables.eq(Cat(s.vf_enable for s in sriovs))
        pf_reset = Signal(P)
        vfe_prev = Signal(P)
        vfe_fell = Signal(P)
        start_sweep = Signal(P)
        clearing = Signal(P, init=(1 << P) - 1)     # PF k answers RRS (after a reset of PF k)
        m.d.sync += vfe_prev.eq(vf_enables & ~pf_reset)     # a PF reset: one clear, not two
        m.d.comb += vfe_fell.eq(vfe_prev & ~vf_enables)
        m.d.sync += start_sweep.eq(pf_reset | vfe_fell)
        m.d.comb += vf_mem.clear.eq(start_sweep)
        for k in range(P):
            with m.If(pf_reset[k]):
                m.d.sync += clearing[k].eq(1)
            with m.Elif(vf_mem.done[k]):
                m.d.sync += clearing[k].eq(0)
        # A clear after VF Enable clearing holds config writes back (any target).
        write_wait = Signal()
        m.d.comb += write_wait.eq((vf_mem.busy & ~clearing).any())

        # -- Where the request goes ----------------------------------------------------------
        reg = req.reg
        windows = {}

        def window(offset, dwords, k=None):
            """The window's hit and index; PF k's own copy with ``k`` (its registers are
            placed near PF k's logic, not shared across the device)."""
            if (k, offset, dwords) not in windows:
                prefix = "" if k is None else f"pf{k}_"
                windows[k, offset, dwords] = _window(m, reg, offset // 4, dwords,
                                                     f"{prefix}w{offset:03x}_{dwords}")
            return windows[k, offset, dwords]

        def at_execute(cond, name):
            strobe = Signal(name=name)
            m.d.sync += strobe.eq(load2 & cond)
            return strobe

        pf_wr = req.write & (target == Target.PF)
        vf_wr = req.write & (target == Target.VF)
        m.d.sync += exec_.eq(load2)
        m.d.comb += decoder.capture.eq(at_execute(pf_wr & ~req.type1, "capture_we"))
        vf_exec_wr = at_execute(vf_wr | (size_op & (target == Target.VF)), "vf_exec_wr")

        # User windows.
        windows_n = max(2, *(len(pf.user_caps) for pf in p.pfs),
                        *(len(pf.vf_user_caps) for pf in p.pfs))
        user_hit = Signal()
        user_window = Signal(range(windows_n))
        user_offset = Signal(10)
        user_mask = Signal(32)

        def user_terms(entries, is_target, k=None):
            for e in entries:
                if e.owner != "user":
                    continue
                hit, addr = window(e.offset, e.placed.dwords, k)
                first = addr == 0
                if e.user.kind == "extended":
                    to_user = hit & ~first
                    mask = Const(0, 32)
                elif e.user.kind == "legacy":
                    to_user = hit
                    mask = Mux(first, 0x0000_ffff, 0)
                else:
                    to_user = hit
                    mask = Const(0, 32)
                with m.If(is_target & to_user):
                    m.d.comb += [user_hit.eq(1), user_window.eq(e.user_index),
                                 user_offset.eq(addr), user_mask.eq(mask)]

        for k, chain in enumerate(self.pf_chains):
            user_terms(chain, (target == Target.PF) & sel[k], k)
        user_terms(self.vf_chain, target == Target.VF)
        to_user = Signal()
        to_user_window = Signal.like(user_window)
        to_user_offset = Signal(10)
        to_user_mask = Signal(32)
        with m.If(load2):
            m.d.sync += [to_user.eq(user_hit & ~size_op), to_user_window.eq(user_window),
                         to_user_offset.eq(user_offset), to_user_mask.eq(user_mask)]
        user_be = req.be & ~Cat(to_user_mask[0], to_user_mask[8], to_user_mask[16],
                                to_user_mask[24])

        def serve(entries, banks, write_cond, prefix, sriov=None, ahead=None, w=None, k=None):
            """The read data of a function's chain; its banks' writes, with byte enables and
            data ``w`` (default the request's). ``ahead`` (a dict) gets each bank's ``(strobe,
            addr)`` for ``RegisterBank.write_ahead``: the strobe is high in LOAD2 exactly when
            the bank's own write strobe is in EXECUTE. ``k``: PF k's chain, with its own
            windows."""
            w_be, w_data = w if w is not None else (req.be, req.data)
            terms = []
            for e in entries:
                hit, addr = window(e.offset, e.placed.dwords, k)
                if e.owner == "bank":
                    bank = banks[e.name]
                    rdata = Signal(32, name=f"{prefix}_{e.name}_rdata")
                    bank.read(m, addr, rdata)
                    we = at_execute(write_cond & hit, f"{prefix}_{e.name}_we")
                    bank.write(m, addr, we, w_be, w_data)
                    if ahead is not None:
                        ahead[e.name] = (load2 & write_cond & hit, addr)
                    terms.append(hit.replicate(32) & rdata)
                elif e.owner == "sriov":
                    we = at_execute(write_cond & hit, f"{prefix}_sriov_we")
                    m.d.comb += [sriov.cfg.addr.eq(addr), sriov.cfg.w_en.eq(we),
                                 sriov.cfg.w_be.eq(w_be), sriov.cfg.w_data.eq(w_data)]
                    # Its checked writes (System Page Size, NumVFs, ARI Capable Hierarchy) are
                    # decoded in LOAD2, with the address, byte enables and data already the
                    # write's, and registered: their enables are flip-flops in EXECUTE.
                    m.d.comb += sriov.w_ahead.eq(load2 & write_cond & hit)
                    # The capability's read, registered every cycle: its 16-dword multiplexer
                    # (System Page Size, the VF BARs, ...) is a stage of its own, a cycle
                    # before the PF's read data (the address is held, writes wait for EXECUTE).
                    rdata = Signal(32, name=f"{prefix}_sriov_rdata")
                    m.d.sync += rdata.eq(sriov.cfg.r_data)
                    terms.append(hit.replicate(32) & rdata)
                else:   # user: the endpoint answers the header only
                    bank = banks.setdefault(e.name, RegisterBank(e.regmap, name=f"{prefix}_"
                                                                                f"{e.name}"))
                    rdata = Signal(32, name=f"{prefix}_{e.name}_rdata")
                    bank.read(m, addr, rdata)
                    terms.append(hit.replicate(32) & rdata)
            return _or_terms(terms, 32)

        # -- PF configuration spaces: PF tpf's read data -------------------------------------
        pf_terms = []
        pf_power = []
        pf_d0 = []
        for k, chain in enumerate(self.pf_chains):
            # PF k's read data is registered every cycle, so the value taken in EXECUTE was
            # read in LOAD2 (the window hits and addresses are settled long before, writes
            # happen in EXECUTE and requests do not overlap): the PF select into the completion
            # is a stage of its own.
            data_k = Signal(32, name=f"pf{k}_data")
            ahead = {}
            # PF k's writes take a copy of the request's byte enables and data of their own,
            # gated by sel[k] (so that no two copies merge): one wide fan-out per PF, placed
            # near it, instead of one across the device. Copied every cycle, it holds the
            # request's values from LOAD2 on (the request is held from IDLE to completion).
            w_k = (Signal(4, name=f"pf{k}_w_be"), Signal(32, name=f"pf{k}_w_data"))
            m.d.sync += [w_k[0].eq(req.be & sel[k].replicate(4)),
                         w_k[1].eq(req.data & sel[k].replicate(32))]
            m.d.sync += data_k.eq(serve(chain, pf_banks[k], pf_wr & sel[k], f"pf{k}",
                                        sriovs[k], ahead, w_k, k))
            pf_terms.append(sel[k].replicate(32) & data_k)
            banks = pf_banks[k]
            banks["pcie"].set_bits(m, "device_status.unsupported_request_detected",
                                   self.urd.valid & (self.urd.pf == k) & (self.urd.vf == 0))
            # PF k's resets: Initiate FLR, or D3hot -> D0 with No_Soft_Reset 0. The write is
            # decoded a cycle ahead (LOAD2) and the reset registered, so that it is a flip-flop
            # in EXECUTE, the cycle of the write, as with one PF: the reset fans out to every
            # register of PF k, too far for the write decode in front of it.
            def ahead_of(name, path, banks=banks, ahead=ahead):
                strobe, addr = ahead[name]
                return banks[name].write_ahead(m, path, strobe, addr, req.be, req.data)
            flr_w, flr_value = ahead_of("pcie", "device_control.initiate_flr")
            soft = Const(0, 1)
            power, d0 = Const(D0, 2), Const(1, 1)
            if "pm" in banks:
                power = banks["pm"]["pmcsr.power_state"]
                d0 = power == D0
                ps_w, ps_value = ahead_of("pm", "pmcsr.power_state")
                if not p.pfs[k].pm.no_soft_reset:
                    soft = ps_w & (power == D3HOT) & (ps_value == D0)
            pf_power.append(power)
            pf_d0.append(d0)
            m.d.sync += pf_reset[k].eq((flr_w & flr_value) | soft)
            for bank in banks.values():
                bank.reset(m, pf_reset[k])
            m.d.comb += sriovs[k].reset.eq(pf_reset[k])
        # PF tpf's read data, registered every cycle as well: taken in EXECUTE, it was read in
        # LOAD (the SR-IOV capability's in FETCH), all after sel was set.
        pf_data = Signal(32)
        m.d.sync += pf_data.eq(_or_terms(pf_terms, 32))

        # ARI Capable Hierarchy: PF 0's bit, held while any PF has VF Enable set (§4).
        ari = sriovs[0].ari_capable_hierarchy
        m.d.comb += sriovs[0].ari_hold.eq(vf_enables.any())
        for s in sriovs[1:]:
            m.d.comb += s.ari_in.eq(ari)

        # -- VF configuration space -----------------------------------------------------------
        # The banks read the VF's entry from the memory's read port rather than from ``state``,
        # and the read data is registered every cycle: the value taken in EXECUTE was read in
        # LOAD2, from the entry that ``state`` is loaded with there, so that the banks' read
        # multiplexer and the completion's are stages of their own. The port holds that entry
        # through EXECUTE as well (``hold`` is high from FETCH on for a VF, the address is held
        # and nothing writes it before the write-back), so the banks' write merge, in EXECUTE,
        # starts from the same value as ``state``.
        entry = vf_rw.r_data
        for key, e, r, f in state_fields:
            if f.access.stored or f.per_vf:
                vf_banks[e.name].drive(f"{r.name}.{f.name}",
                                       getattr(entry, key) ^ Const(f.reset, f.width))
        vf_data = Signal(32)
        m.d.sync += vf_data.eq(serve(self.vf_chain, vf_banks, vf_wr, "vf"))
        new_state = Signal(layout)
        m.d.comb += new_state.eq(state)
        for key, e, r, f in state_fields:
            if not f.access.stored:
                continue
            w, value = vf_banks[e.name].write_of(f"{r.name}.{f.name}")
            with m.If(w):
                m.d.comb += getattr(new_state, key).eq(value ^ Const(f.reset, f.width))
        vflr_w, vflr_value = vf_banks["pcie"].write_of("device_control.initiate_flr")
        vf_reset = Signal()
        vf_soft_reset = Const(0, 1)
        vf_pm = p.pfs[0].vf_pm      # (equal in every PF: the VF chains are equal)
        if ps_key is not None:
            vps_w, vps_value = vf_banks["pm"].write_of("pmcsr.power_state")
            vf_power = getattr(state, ps_key)
            if not vf_pm.no_soft_reset:
                vf_soft_reset = vps_w & (vf_power == D3HOT) & (vps_value == D0)
        m.d.comb += vf_reset.eq((vflr_w & vflr_value) | vf_soft_reset)
        # A VF reset keeps the VF's MSI-X Table Size (as with one PF).
        size_key = key_of.get(("msix", "message_control.table_size"))
        vf_msix = p.pfs[0].vf_msix  # (equal in every PF)
        with m.If(vf_reset):
            m.d.comb += new_state.eq(0)
            if size_key is not None:
                m.d.comb += getattr(new_state, size_key).eq(getattr(state, size_key))
        size_ok = Signal()
        # The count's Table Size and range check are registered in SIZE (size_count is loaded
        # in IDLE), so that neither the subtraction nor the comparisons sit in EXECUTE.
        count = Mux(size_count == 0, vf_msix.vectors if vf_msix else 1, size_count)
        size_stage = [size_value.eq((count - 1)[:11])]
        if size_key is not None:
            size_stage.append(size_fits.eq((count >= 1) & (count <= vf_msix.max_vectors)))
            enable_key = key_of[("msix", "message_control.msix_enable")]
            m.d.comb += size_ok.eq(size_op & (getattr(state, enable_key) == 0) & size_fits &
                                   (target == Target.VF))
            with m.If(size_ok):
                m.d.comb += getattr(new_state, size_key).eq(
                    size_value ^ Const(vf_msix.vectors - 1, 11))

        write_back = Signal()
        new_state_r = Signal(layout)
        size_ok_r = Signal()
        m.d.sync += write_back.eq(vf_exec_wr)
        with m.If(exec_):
            m.d.sync += [new_state_r.eq(new_state), size_ok_r.eq(size_ok)]
        m.d.comb += [vf_rw.addr.eq(mem_addr), vf_rw.w_data.eq(new_state_r),
                     vf_rw.w_en.eq(write_back), vf_rw.hold.eq(hold)]
        m.d.sync += [self.vf_flr.valid.eq(vf_reset & vf_exec_wr), self.vf_flr.vf.eq(vf),
                     self.vf_flr.pf.eq(tpf)]

        # -- Completion ----------------------------------------------------------------------
        with m.If(exec_):
            with m.Switch(target):
                with m.Case(Target.PF):
                    m.d.sync += [cpl.status.eq(CompletionStatus.SC), cpl.data.eq(pf_data)]
                with m.Case(Target.VF):
                    m.d.sync += [cpl.status.eq(CompletionStatus.SC), cpl.data.eq(vf_data)]
                with m.Default():
                    m.d.sync += [cpl.status.eq(CompletionStatus.UR), cpl.data.eq(0)]
            with m.If(req.write):
                m.d.sync += cpl.data.eq(0)

        user_tag = Signal(4)
        timeout = Signal(range(p.user_cfg_timeout + 1))
        m.d.comb += [
            self.ucfg_req.payload.pf.eq(tpf),
            self.ucfg_req.payload.function.eq(Mux(target == Target.VF, vf, 0)),
            self.ucfg_req.payload.window.eq(to_user_window),
            self.ucfg_req.payload.offset.eq(to_user_offset),
            self.ucfg_req.payload.reg.eq(req.reg),
            self.ucfg_req.payload.write.eq(req.write),
            self.ucfg_req.payload.be.eq(Mux(req.write, user_be, req.be)),
            self.ucfg_req.payload.data.eq(req.data),
            self.ucfg_req.payload.tag.eq(user_tag),
        ]

        # -- MSI-X: the engine's copy of each function's control state (as with one PF) ------
        # PF k's resets go to the engine as reset_pf[k] (its entry and its VFs'), VF Enable
        # clearing as reset_vfs[k]; a VF's reset as reset_fn, then its kept Table Size.
        # The function number, registered every cycle: target and vf are settled from the
        # cycle after MERGE (or SIZE) on, and held while an operation for the engine is due.
        fn_number = Signal.like(vf)
        m.d.sync += fn_number.eq(Mux(target == Target.VF, vf, 0))
        pf_msix_sel = _or_terms([sel[k] for k, pf in enumerate(p.pfs) if pf.msix is not None], 1)
        has_msix = Const(0, 1)
        if msix is not None:
            bits = [(target == Target.PF) & pf_msix_sel]
            if vf_msix is not None:
                bits.append(target == Target.VF)
            has_msix = _or_terms(bits, 1)
        ctrl_due = Signal()
        ts_valid = Signal()
        reset_due = Signal()
        restore_due = Signal()
        size_due = Signal()
        with m.If(exec_):
            resets = req.write & has_msix & vf_reset & vf_exec_wr
            pf_resets = (pf_reset & sel).any()
            m.d.sync += [
                ctrl_due.eq(req.write & has_msix & ~size_op & ~resets & ~pf_resets),
                reset_due.eq(resets),
                restore_due.eq(resets & (target == Target.VF) if size_key is not None else 0),
                size_due.eq(size_ok),
            ]
        engine_due = ctrl_due | reset_due | restore_due | size_due
        if msix is not None:
            new_size = size_value
            kept_size = (getattr(state, size_key) ^ (vf_msix.vectors - 1)
                         if size_key is not None else Const(0, 11))
            m.d.comb += [
                msix.ctrl.valid.eq(ctrl_due),
                msix.reset_fn.valid.eq(reset_due),
                msix.reset_fn.payload.pf.eq(tpf),
                msix.reset_fn.payload.function.eq(fn_number),
                msix.reset_fn.payload.index.eq(mem_addr),
                msix.table_size.valid.eq(ts_valid),
                msix.table_size.payload.pf.eq(tpf),
                msix.table_size.payload.vf.eq(vf),
                msix.table_size.payload.index.eq(mem_addr),
                msix.table_size.payload.size.eq(Mux(size_due, new_size, kept_size)),
            ]
            with m.If(msix.ctrl.valid & msix.ctrl.ready):
                m.d.sync += ctrl_due.eq(0)
            with m.If(msix.reset_fn.valid & msix.reset_fn.ready):
                m.d.sync += reset_due.eq(0)
            with m.If(msix.table_size.valid & msix.table_size.ready):
                m.d.sync += [size_due.eq(0), restore_due.eq(restore_due & reset_due)]
            # ts_valid is size_due | (restore_due & ~reset_due) as a flip-flop of its own (the
            # engine's decision logic takes one input less): set with size_due in EXECUTE
            # (restore_due and reset_due are set together), else from the values above.
            rf_taken = msix.reset_fn.valid & msix.reset_fn.ready
            ts_taken = msix.table_size.valid & msix.table_size.ready
            next_reset = reset_due & ~rf_taken
            next_size = size_due & ~ts_taken
            next_restore = Mux(ts_taken, restore_due & reset_due, restore_due)
            with m.If(exec_):
                m.d.sync += ts_valid.eq(size_ok)
            with m.Else():
                m.d.sync += ts_valid.eq(next_size | (next_restore & ~next_reset))
            # The control state after a write (from registers: the banks, new_state_r).
            ctrl = msix.ctrl.payload
            pf_ctrl = [Const(0, 1)] * 4
            for k, pf in enumerate(p.pfs):
                if pf.msix is None:
                    continue
                mc, hdr = pf_banks[k]["msix"], headers[k]
                bits = [mc["message_control.msix_enable"], mc["message_control.function_mask"],
                        hdr["command.bus_master_enable"], pf_d0[k]]
                pf_ctrl = [c | (sel[k] & b) for c, b in zip(pf_ctrl, bits, strict=True)]
            vf_ctrl = [Const(0, 1)] * 4
            if vf_msix is not None:
                def vf_value(structure, path):
                    key = key_of[(structure, path)]
                    f = next(f for k, _e, _r, f in state_fields if k == key)
                    return getattr(new_state_r, key) ^ Const(f.reset, f.width)
                vf_ctrl = [vf_value("msix", "message_control.msix_enable"),
                           vf_value("msix", "message_control.function_mask"),
                           vf_value("header", "command.bus_master_enable"),
                           (vf_value("pm", "pmcsr.power_state") == D0) if ps_key is not None
                           else Const(1, 1)]
            is_vf = target == Target.VF
            m.d.comb += [
                ctrl.pf.eq(tpf),
                ctrl.function.eq(fn_number),
                ctrl.index.eq(mem_addr),
                ctrl.enable.eq(Mux(is_vf, vf_ctrl[0], pf_ctrl[0])),
                ctrl.function_mask.eq(Mux(is_vf, vf_ctrl[1], pf_ctrl[1])),
                ctrl.bme.eq(Mux(is_vf, vf_ctrl[2], pf_ctrl[2])),
                ctrl.d0.eq(Mux(is_vf, vf_ctrl[3], pf_ctrl[3])),
                self.irq_dropped.eq(msix.irq_dropped),
            ]
            # Registered like start_sweep: a cycle after their cause.
            msix_reset_pf = Signal(P)
            msix_reset_vfs = Signal(P)
            m.d.sync += [msix_reset_pf.eq(pf_reset), msix_reset_vfs.eq(vfe_fell)]
            m.d.comb += [msix.reset_pf.eq(msix_reset_pf), msix.reset_vfs.eq(msix_reset_vfs),
                         msix.vf_enable.eq(vf_enables)]
            m.d.comb += [msix.num_vfs[k].eq(s.num_vfs) for k, s in enumerate(sriovs)]
            irq, msg = self.irq.payload, self.msg.payload
            m.d.comb += [
                msix.irq.valid.eq(self.irq.valid), self.irq.ready.eq(msix.irq.ready),
                msix.irq.payload.pf.eq(irq.pf), msix.irq.payload.function.eq(irq.function),
                msix.irq.payload.vector.eq(irq.vector),
                self.msg.valid.eq(msix.msg.valid), msix.msg.ready.eq(self.msg.ready),
                msg.pf.eq(msix.msg.payload.pf), msg.function.eq(msix.msg.payload.function),
                msg.addr.eq(msix.msg.payload.addr), msg.data.eq(msix.msg.payload.data),
            ]
        else:
            m.d.sync += [ctrl_due.eq(0), reset_due.eq(0), restore_due.eq(0), size_due.eq(0)]
            # Without MSI-X every interrupt request is dropped.
            m.d.comb += [self.irq.ready.eq(1), self.irq_dropped.eq(self.irq.valid)]

        # -- Request sequencing --------------------------------------------------------------
        with m.If(write_back):      # the request's last use of the memory's port
            m.d.sync += hold.eq(0)
        with m.FSM(name="cfg"):
            with m.State("IDLE"):
                idle = ~start_sweep.any() & ~vfe_fell.any() & ~engine_due
                take = idle & (~write_wait | ~self.cfg_req.payload.write)
                m.d.comb += self.cfg_req.ready.eq(take)
                m.d.comb += self.vf_msix_size.ready.eq(idle & ~self.cfg_req.valid)
                # Both requests' operands are loaded in every IDLE cycle, whether taken or not
                # (nothing reads them before DECODE or SIZE), so that no clock enable of their
                # flip-flops waits for the decision; vf and size_count, which the MSI-X
                # engine's operands read while an operation is due, only when none is. The
                # size request's: its VF's global index, and whether VF n exists by each PF's
                # NumVFs (one comparison per PF, so that no PF multiplexer sits in front of a
                # comparator).
                size = self.vf_msix_size.payload
                m.d.sync += req.eq(self.cfg_req.payload)
                with m.Switch(size.pf):
                    for k in range(P):
                        with m.Case(k):
                            m.d.sync += size_index.eq(p.vf_base(k) + size.vf - 1)
                m.d.sync += [size_pf.eq(size.pf),
                             size_in_range.eq(Cat(_vf_exists(size.vf, s.num_vfs)
                                                  for s in sriovs))]
                with m.If(~engine_due):
                    m.d.sync += [vf.eq(size.vf), size_count.eq(size.count)]
                with m.If(self.cfg_req.valid & take):
                    m.next = "DECODE"
                with m.Elif(self.vf_msix_size.valid & idle):
                    m.next = "SIZE"
            with m.State("SIZE"):
                # The VF must exist and its PF's VF state must not be being cleared.
                ok = size_in_range & vf_enables & ~vf_mem.busy
                exists = ok.bit_select(size_pf, 1)
                m.d.sync += size_stage
                m.d.sync += [req.write.eq(0), size_op.eq(1), retry.eq(0),
                             target.eq(Mux(exists, Target.VF, Target.NONE)), tpf.eq(size_pf),
                             sel.eq(Mux(exists, Const(1, P) << size_pf, 0)),
                             mem_addr.eq(size_index), hold.eq(exists)]
                m.next = "FETCH"
            with m.State("DECODE"):
                m.d.sync += size_op.eq(0)
                m.next = "DIVIDE" if self._decode_stages == 3 else "DECODE2"
            if self._decode_stages == 3:
                with m.State("DIVIDE"):
                    m.next = "DECODE2"
            with m.State("DECODE2"):        # the cores' results, registered by the merge
                m.next = "MERGE"
            with m.State("MERGE"):
                # RRS: the request reaches PF k while PF k's VFs are cleared after its reset.
                pf_clearing = (clearing >> decoder.pf)[0]
                m.d.sync += [target.eq(decoder.target), tpf.eq(decoder.pf),
                             sel.eq(Mux(decoder.target == Target.NONE, 0,
                                        Const(1, P) << decoder.pf)),
                             vf.eq(decoder.vf), mem_addr.eq(decoder.vf_index),
                             retry.eq((decoder.target == Target.PF) & pf_clearing),
                             hold.eq(decoder.target == Target.VF)]
                m.next = "FETCH"
            with m.State("FETCH"):
                m.next = "LOAD"
            with m.State("LOAD"):
                m.next = "LOAD2"
            with m.State("LOAD2"):
                m.d.comb += load2.eq(~retry)
                m.d.sync += state.eq(vf_rw.r_data)
                m.next = "EXECUTE"
            with m.State("EXECUTE"):
                m.d.sync += hold.eq(vf_exec_wr)     # kept for the write-back only
                with m.If(retry):
                    m.d.sync += [cpl.status.eq(CompletionStatus.RRS), cpl.data.eq(0)]
                    m.next = "COMPLETE"
                with m.Elif(user_hit & ~size_op &
                            ((target == Target.PF) | (target == Target.VF))):
                    m.d.sync += timeout.eq(p.user_cfg_timeout)
                    m.next = "USER_REQ"
                with m.Else():
                    m.next = "COMPLETE"
            with m.State("USER_REQ"):
                with m.If((req.write & ~user_be.any()) | (~req.write & ~to_user)):
                    m.next = "COMPLETE"
                with m.Else():
                    m.d.comb += self.ucfg_req.valid.eq(1)
                    m.d.sync += timeout.eq(timeout - 1)
                    with m.If(self.ucfg_req.ready):
                        m.next = "USER_WAIT"
                    with m.Elif(timeout == 0):
                        m.next = "USER_DONE"
            with m.State("USER_WAIT"):
                m.d.comb += self.ucfg_res.ready.eq(1)
                m.d.sync += timeout.eq(timeout - 1)
                with m.If(self.ucfg_res.valid & (self.ucfg_res.payload.tag == user_tag)):
                    with m.If(~req.write):
                        m.d.sync += cpl.data.eq((cpl.data & to_user_mask) |
                                                (self.ucfg_res.payload.data & ~to_user_mask))
                    m.next = "USER_DONE"
                with m.Elif(timeout == 0):
                    m.next = "USER_DONE"
            with m.State("USER_DONE"):
                m.d.sync += user_tag.eq(user_tag + 1)
                m.next = "COMPLETE"
            with m.State("COMPLETE"):
                with m.If(size_op):
                    with m.If(~size_due):
                        m.d.comb += [self.vf_msix_size_done.valid.eq(1),
                                     self.vf_msix_size_done.ok.eq(size_ok_r)]
                        m.next = "IDLE"
                with m.Else():
                    ctrl_done = ~ctrl_due
                    if msix is not None:
                        ctrl_done = ctrl_done | msix.ctrl.ready
                    m.d.comb += self.cfg_cpl.valid.eq(ctrl_done)
                    with m.If(ctrl_done & self.cfg_cpl.ready):
                        m.next = "IDLE"
        m.d.comb += self.cfg_cpl.payload.eq(cpl)

        m.d.comb += [decoder.type1.eq(req.type1), decoder.rid.eq(req.rid), decoder.ari.eq(ari),
                     decoder.vf_enable.eq(vf_enables)]
        m.d.comb += [decoder.num_vfs[k].eq(s.num_vfs) for k, s in enumerate(sriovs)]

        # -- Memory requests: the device's BAR decoder, then the router ----------------------
        wiring.connect(m, wiring.flipped(self.mem_req), bar_decoder.req)
        for k, pf in enumerate(p.pfs):
            ports, s, header = self.pfs[k], sriovs[k], headers[k]
            for n, bar in enumerate(pf.pf_bars):
                lo = header.read_dword(4 + bar.index)
                hi = header.read_dword(5 + bar.index) if bar.is_64bit else Const(0, 32)
                base = Cat(Const(0, 4), lo[4:], hi)
                m.d.comb += [bar_decoder.pf_bars[k][n].base.eq(base),
                             ports.bars[bar.index].base.eq(base)]
            for n, bar in enumerate(pf.vf_bars):
                m.d.comb += [ports.vf_bars[bar.index].eq(s.vf_bars[n]),
                             bar_decoder.vf_bars[k][n].eq(s.vf_bars[n])]
            m.d.comb += [
                bar_decoder.vf_enable[k].eq(s.vf_enable),
                bar_decoder.vf_mse[k].eq(s.vf_mse),
                bar_decoder.num_vfs[k].eq(s.num_vfs),
                bar_decoder.pf_mse[k].eq(header["command.memory_space_enable"] & pf_d0[k]),
            ]
        # VFs out of D0, counted per PF as their PowerState changes (each count zeroed by its
        # PF's clear): while there are none, no memory request looks a PowerState up.
        vfs_low_power = Signal()
        if ps_key is not None:
            was_low = getattr(state, ps_key).any()
            now_low = getattr(new_state, ps_key).any()
            lows = []
            for k, pf in enumerate(p.pfs):
                count = Signal(range(pf.total_vfs + 1), name=f"pf{k}_low_count")
                with m.If(start_sweep[k]):
                    m.d.sync += count.eq(0)
                with m.Elif(exec_ & vf_exec_wr & sel[k] & ~was_low & now_low):
                    m.d.sync += count.eq(count + 1)
                with m.Elif(exec_ & vf_exec_wr & sel[k] & was_low & ~now_low):
                    m.d.sync += count.eq(count - 1)
                lows.append(count != 0)
            m.d.sync += vfs_low_power.eq(_or_terms(lows, 1))
        self._route_memory_multi(m, bar_decoder, vf_mem, ps_key is not None, vfs_low_power)

        # -- vf_bme: the query's global index registered first --------------------------------
        # Whether VF n exists is registered per PF (one comparison each) and selected by PF the
        # cycle after, for timing; the latency stays VF_BME_LATENCY.
        q = self.vf_bme_query
        bme_rd = vf_mem.bme
        bme_idx = Signal(range(depth))
        bme_pf = Signal.like(q.pf)
        bme_in_range = Signal(P)
        bme_ok = [Signal(name=f"bme_ok{n}") for n in range(1, 3)]
        with m.Switch(q.pf):
            for k in range(P):
                with m.Case(k):
                    m.d.sync += bme_idx.eq(p.vf_base(k) + q.vf - 1)
        m.d.sync += [
            bme_pf.eq(q.pf),
            bme_in_range.eq(Cat(_vf_exists(q.vf, s.num_vfs) for s in sriovs)),
            bme_ok[0].eq((bme_in_range & vf_enables & ~vf_mem.busy).bit_select(bme_pf, 1)),
            bme_ok[1].eq(bme_ok[0]),
        ]
        m.d.comb += [bme_rd.addr.eq(bme_idx), self.vf_bme.eq(bme_ok[1] & bme_rd.data)]

        # -- User-facing state ---------------------------------------------------------------
        m.d.comb += [self.bus.eq(decoder.bus), self.ari_capable_hierarchy.eq(ari)]
        for k, s in enumerate(sriovs):
            ports, header = self.pfs[k], headers[k]
            m.d.comb += [
                ports.memory_space_enable.eq(header["command.memory_space_enable"]),
                ports.bus_master_enable.eq(header["command.bus_master_enable"]),
                ports.power_state.eq(pf_power[k]),
                ports.flr.eq(pf_reset[k]),
                ports.vf_enable.eq(s.vf_enable),
                ports.vf_mse.eq(s.vf_mse),
                ports.num_vfs.eq(s.num_vfs),
                ports.first_vf_offset.eq(s.first_vf_offset),
                ports.vf_stride.eq(s.vf_stride),
                ports.vfs_reset.eq(start_sweep[k]),
                ports.vf_reset_busy.eq(vf_mem.busy[k]),
            ]
        return m

    def _route_memory_multi(self, m, bar_decoder, vf_mem, vf_pm, vfs_low_power):
        """After the device's BAR decoder: a register stage passes each result on, dropping the
        claim of a VF out of D0 (read from the VF state memory by the VF's global index,
        computed in the stage, while some VF is out of D0), and serving MSI-X table and PBA
        accesses (the decoder's ``msix`` flags, registered with the result) from the engine by
        PF, function and global index. PFs out of D0 claim nothing already (their decoder
        core's Memory Space Enable is gated).

        Between the two, a skid register: the decoder's ``res.ready`` is that register being
        empty, so that the decoder's pipeline enables (a few hundred flip-flops spread over
        every PF's core) wait for registers only, not for ``mem_res.ready`` and the stage's
        slow flags. An empty skid register passes the decoder's result straight on (no
        latency added); a result the stage cannot take waits in it, and the stage takes it
        before the decoder's next."""
        p = self._params
        msix = self.msix
        decoded = bar_decoder.res
        r = Signal.like(decoded.payload)
        r_valid = Signal()
        need_query = Signal()
        need_table = Signal()
        pba_hit = Signal()
        tbl_offset = Signal(16)
        out = self.mem_res
        m.d.comb += out.payload.eq(r)
        r_index = Signal(range(p.vf_entries))

        def vf_index(res):
            """The VF state memory's index of result ``res``'s VF (by its PF's first entry)."""
            base = Signal(range(p.vf_entries), name="mem_vf_base")
            with m.Switch(res.pf):
                for k in range(p.num_pfs):
                    with m.Case(k):
                        m.d.comb += base.eq(p.vf_base(k))
            return (base + res.vf - 1)[:len(r_index)]

        # -- The skid register: loaded in every cycle it is empty -------------------------------
        skid = Signal.like(decoded.payload, name="mem_skid")
        skid_hit = Signal.like(bar_decoder.msix, name="mem_skid_msix")
        skid_index = Signal.like(r_index, name="mem_skid_index")
        skid_valid = Signal(name="mem_skid_valid")
        dec_index = Signal.like(r_index, name="mem_dec_index")
        m.d.comb += [decoded.ready.eq(~skid_valid), dec_index.eq(vf_index(decoded.payload))]
        with m.If(~skid_valid):
            m.d.sync += [skid.eq(decoded.payload), skid_hit.eq(bar_decoder.msix),
                         skid_index.eq(dec_index)]
        # What the stage takes: the skid register's result if it holds one, else the decoder's.
        d = Signal.like(decoded.payload, name="mem_src")
        hit = Signal.like(bar_decoder.msix, name="mem_src_msix")
        index = Signal.like(r_index, name="mem_src_index")
        with m.If(skid_valid):
            m.d.comb += [d.eq(skid), hit.eq(skid_hit), index.eq(skid_index)]
        with m.Else():
            m.d.comb += [d.eq(decoded.payload), hit.eq(bar_decoder.msix), index.eq(dec_index)]
        d_valid = skid_valid | decoded.valid

        slow = need_query | need_table
        take = Signal(name="mem_take")
        m.d.comb += [out.valid.eq(r_valid & ~slow),
                     take.eq(~r_valid | (out.ready & ~slow))]
        m.d.sync += skid_valid.eq(d_valid & ~take)
        with m.If(take):
            m.d.sync += [r.eq(d), r_index.eq(index),
                         need_query.eq(d.claimed & d.is_vf & vfs_low_power if vf_pm else 0)]
            if msix is not None:
                m.d.sync += [need_table.eq(d.claimed & (hit.table | hit.pba)),
                             pba_hit.eq(hit.pba), tbl_offset.eq(hit.offset)]
        with m.If(d_valid & take):
            m.d.sync += r_valid.eq(1)
        with m.Elif(out.valid & out.ready):
            m.d.sync += r_valid.eq(0)
        if vf_pm:
            # The memory answers two cycles after the address, presented in every state
            # straight from a register (no state decode in front of the memory's read); r_index
            # is held from PASS through QUERY2, so the answer is there in QUERY2.
            m.d.comb += vf_mem.pm.addr.eq(r_index)
        if not (vf_pm or msix is not None):
            return
        with m.FSM(name="mem"):
            with m.State("PASS"):
                if vf_pm:
                    with m.If(r_valid & need_query):
                        m.next = "QUERY"
                if msix is not None:
                    with m.If(r_valid & need_table & ~need_query):
                        m.next = "TABLE"
            if vf_pm:
                q = vf_mem.pm
                with m.State("QUERY"):
                    m.next = "QUERY2"
                with m.State("QUERY2"):
                    m.d.sync += need_query.eq(0)
                    with m.If(q.data.any()):
                        # (pf 0 when nothing claims, as from the decoder)
                        m.d.sync += [r.claimed.eq(0), r.pf.eq(0), need_table.eq(0)]
                    m.next = "PASS"
            if msix is not None:
                with m.State("TABLE"):
                    t = msix.tbl_req
                    m.d.comb += [t.valid.eq(1),
                                 t.payload.pf.eq(r.pf),
                                 t.payload.function.eq(Mux(r.is_vf, r.vf, 0)),
                                 t.payload.index.eq(r_index),
                                 t.payload.pba.eq(pba_hit),
                                 t.payload.offset.eq(tbl_offset),
                                 t.payload.write.eq(r.write),
                                 t.payload.data.eq(r.data),
                                 t.payload.be.eq(r.be)]
                    with m.If(t.ready):
                        m.next = "TABLE_WAIT"
                with m.State("TABLE_WAIT"):
                    m.d.comb += msix.tbl_res.ready.eq(1)
                    with m.If(msix.tbl_res.valid):
                        m.d.sync += [r.claimed.eq(0), r.internal.eq(1), need_table.eq(0)]
                        with m.If(~r.write):
                            m.d.sync += r.data.eq(msix.tbl_res.payload.data)
                        m.next = "PASS"

    def _route_memory(self, m, decoded, vf_mem, vf_pm, vfs_low_power):
        """After the BAR decoder: drop the claims of functions not in D0, and serve MSI-X table
        and PBA accesses from the MSI-X engine.

        A register stage passes every other result on at one per cycle. The two slow cases are
        known when a result enters the stage (flags computed from the decoder's registered
        result, so no comparison sits on the handshake): a table or PBA access waits for the
        engine, and a request a VF's BAR claims while some VF is out of D0
        (``vfs_low_power``) first reads that VF's PowerState from the VF state memory."""
        p = self._params
        msix = self.msix
        d = decoded.payload
        r = Signal.like(d)
        r_valid = Signal()
        r_index = Signal(range(max(2, p.total_vfs)))   # the VF state memory's index of r.vf
        out = self.mem_res
        m.d.comb += out.payload.eq(r)

        def msix_region(mx, is_vf):
            """(table hit, PBA hit, offset inside) for decode result ``d``."""
            if mx is None:
                return Const(0, 1), Const(0, 1), Const(0, 16)
            fn = d.is_vf if is_vf else ~d.is_vf

            def inside(start, size):
                hit = d.offset < start + size
                if start:   # ``offset >= 0`` always holds: leave it out (Verilator: UNSIGNED)
                    hit &= d.offset >= start
                return hit

            in_table = fn & (d.bar == mx.table_bar) & inside(mx.table_offset, mx.table_bytes)
            in_pba = fn & (d.bar == mx.pba_bar) & inside(mx.pba_offset, mx.pba_bytes)
            offset = Mux(in_table, d.offset - mx.table_offset, d.offset - mx.pba_offset)
            return in_table, in_pba, offset[:16]

        pf_t, pf_p, pf_o = msix_region(p.msix, False)
        vf_t, vf_p, vf_o = msix_region(p.vf_msix, True)
        # Registered with the result: what the result still needs before it may leave.
        need_table = Signal()
        need_query = Signal()
        pba_hit = Signal()
        tbl_offset = Signal(16)

        def pass_stage():
            """Hold one result; hand it on at once unless it needs the engine or a query."""
            slow = need_table | need_query
            m.d.comb += [out.valid.eq(r_valid & ~slow),
                         decoded.ready.eq(~r_valid | (out.ready & ~slow))]
            # The stage loads whenever it may take a result (``decoded.ready``), valid or not:
            # its wide enable then depends on four registers only, not on the decoder's valid
            # (the critical path at 256 VFs ran through that AND into ~230 enables). What it
            # holds while ``r_valid`` is 0 is never looked at.
            with m.If(decoded.ready):
                m.d.sync += [
                    r.eq(d), r_index.eq(d.vf - 1),
                    need_table.eq(d.claimed & (pf_t | vf_t | pf_p | vf_p)),
                    need_query.eq(d.claimed & d.is_vf & vfs_low_power if vf_pm else 0),
                    pba_hit.eq(pf_p | vf_p),
                    tbl_offset.eq(Mux(d.is_vf, vf_o, pf_o)),
                ]
            with m.If(decoded.valid & decoded.ready):
                m.d.sync += r_valid.eq(1)
            with m.Elif(out.valid & out.ready):
                m.d.sync += r_valid.eq(0)
            if vf_pm:
                with m.If(r_valid & need_query):
                    m.next = "QUERY"
            if msix is not None:
                with m.If(r_valid & need_table & ~need_query):
                    m.next = "TABLE"

        if vf_pm:
            # The VF state memory answers two cycles after the address, presented in every
            # state straight from a register (no state decode in front of the memory's read):
            # r_index is that of the result held from PASS through QUERY2, so the answer is
            # there in QUERY2.
            m.d.comb += vf_mem.pm.addr.eq(r_index)
        if not (vf_pm or msix is not None):
            pass_stage()        # (an FSM of one state would be a 0-bit register in Verilog)
            return
        with m.FSM(name="mem"):
            with m.State("PASS"):
                pass_stage()
            if vf_pm:
                q = vf_mem.pm
                with m.State("QUERY"):
                    m.next = "QUERY2"
                with m.State("QUERY2"):
                    # D0 is stored as 0 (the reset value); anything else claims nothing.
                    m.d.sync += need_query.eq(0)
                    with m.If(q.data.any()):
                        m.d.sync += [r.claimed.eq(0), need_table.eq(0)]
                    m.next = "PASS"
            if msix is not None:
                with m.State("TABLE"):
                    t = msix.tbl_req
                    m.d.comb += [t.valid.eq(1),
                                 t.payload.function.eq(Mux(r.is_vf, r.vf, 0)),
                                 t.payload.pba.eq(pba_hit),
                                 t.payload.offset.eq(tbl_offset),
                                 t.payload.write.eq(r.write),
                                 t.payload.data.eq(r.data),
                                 t.payload.be.eq(r.be)]
                    with m.If(t.ready):
                        m.next = "TABLE_WAIT"
                with m.State("TABLE_WAIT"):
                    m.d.comb += msix.tbl_res.ready.eq(1)
                    with m.If(msix.tbl_res.valid):
                        m.d.sync += [r.claimed.eq(0), r.internal.eq(1), need_table.eq(0)]
                        with m.If(~r.write):
                            m.d.sync += r.data.eq(msix.tbl_res.payload.data)
                        m.next = "PASS"
