"""``SriovEndpoint``: the configuration side of an SR-IOV endpoint (one PF and its VFs)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .caps.config_space import (
    PCIE_CAP_OFFSET,
    VF_ARI_CAP_OFFSET,
    ari_capability_map,
    ext_cap_chain,
    pcie_capability_map,
    type0_header_map,
    vf_header_map,
)
from .caps.sriov import SriovCapability, VfBarState
from .decode.bar import MemDecode, MemRequest, PfBarState, VfBarDecoder
from .decode.routing import RoutingIdDecoder, Target, needs_divider
from .params import EndpointParams
from .regs import RegisterBank

__all__ = ["CompletionStatus", "ConfigRequest", "Completion", "VfState", "SriovEndpoint",
           "CONFIG_LATENCY", "VF_BME_LATENCY", "config_latency"]

#: Clock edges from the one that accepts a config request to the one that transfers its
#: completion (with ``cfg_cpl.ready`` high): decode (2), read the VF state (3), execute,
#: complete. One more (see :attr:`SriovEndpoint.config_latency`) when a VF Stride is not a power
#: of two: the Routing-ID decoder's multiplication gets a stage of its own.
CONFIG_LATENCY = 7

def config_latency(params):
    """:attr:`SriovEndpoint.config_latency` of an endpoint with ``params``."""
    return CONFIG_LATENCY + (1 if needs_divider(params) else 0)


#: Clock edges from ``vf_bme_query`` to ``vf_bme``: the memory index is registered, the memory
#: read, its output registered.
VF_BME_LATENCY = 3


class CompletionStatus(enum.Enum, shape=3):
    """Completion Status codes (PCI Express Base, §2.2.9)."""
    SC = 0b000
    UR = 0b001


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


class VfState(data.Struct):
    """Per-VF configuration state, held in a memory. All zeros is the reset state."""
    bus_master_enable:        1
    relaxed_ordering_disable: 1
    no_snoop_disable:         1


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


class VfStateMemory(wiring.Component):
    """Per-VF state: banks of block-RAM depth, a read/write port and a Bus Master Enable port.

    Reads take two cycles: each bank's output is registered before the banks are multiplexed,
    so a block RAM's output goes straight to a flip-flop. The depth of a bank, 16384, is that of
    an ECP5 DP16KD (and of a Xilinx RAMB36) one bit wide.

    No memory here has two ports with different addresses. A read and a write through different
    ports of a block RAM may collide, and synthesis (Yosys, for one) then emulates
    read-before-write with bypass logic between the RAM's output and its first flip-flop, the
    slowest path in the design. So:

    - ``rw`` reads and writes through one address: one port of a block RAM, with that port's own
      read-before-write behaviour.
    - The Bus Master Enable bits are kept twice more, in memories X and Y that each read and
      write through one (multiplexed) address. A write goes to X, and to Y one cycle later; a
      ``bme`` read uses whichever of the two is not being written. Writes come one per cycle
      only while the state is being cleared (when the endpoint ignores the answers), so one of
      the two is always free, and the answer is the same as from one memory read before the
      write.
    - Up to :attr:`DISTRIBUTED_DEPTH` entries the memories fit in LUT RAM, whose reads are
      asynchronous and cannot collide with a write; there the Bus Master Enable bits are kept
      once more, in one memory with a read port of its own, and no multiplexer sits in front of
      its read address.

    Members
    -------
    rw : In(read/write port signature)
        ``addr``, ``w_data``, ``w_en``: written at the clock edge; ``r_data``: the entry at
        ``addr`` two cycles earlier (before any write in that cycle).
    bme : In(read port signature)
        ``addr`` in, ``data`` (that entry's Bus Master Enable, before any write in the cycle
        after ``addr``) out two cycles after ``addr``.
    """

    BANK_DEPTH = 16384
    #: Depths up to this are expected in distributed (LUT) RAM.
    DISTRIBUTED_DEPTH = 512

    def __init__(self, depth):
        self._depth = depth
        rw = wiring.Signature({"addr": Out(range(depth)), "r_data": In(VfState),
                               "w_data": Out(VfState), "w_en": Out(1)})
        bme = wiring.Signature({"addr": Out(range(depth)), "data": In(1)})
        super().__init__({"rw": In(rw), "bme": In(bme)})

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        banks = -(-depth // self.BANK_DEPTH)
        bank_depth = min(depth, self.BANK_DEPTH)
        low = max(1, (bank_depth - 1).bit_length())

        def bank_memories(name, shape, addr, w_addr, w_data, w_en, r_addr=None):
            """One memory per bank, each reading and writing through ``addr`` (the index within
            a bank; or reading through ``r_addr``); returns each bank's registered read data."""
            shared = Signal(low, name=f"{name}_addr")     # one net: one RAM port for both
            m.d.comb += shared.eq(addr)
            outputs = []
            for b in range(banks):
                mem = memory.Memory(shape=shape, init=[],
                                    depth=max(2, min(bank_depth, depth - b * self.BANK_DEPTH)))
                m.submodules[f"{name}_bank{b}"] = mem
                wr, rd = mem.write_port(), mem.read_port()
                in_bank = (w_addr >> low) == b if banks > 1 else 1
                m.d.comb += [wr.addr.eq(shared), wr.data.eq(w_data), wr.en.eq(w_en & in_bank),
                             rd.addr.eq(shared if r_addr is None else r_addr[:low])]
                data = Signal(shape, name=f"{name}_bank{b}_data")
                m.d.sync += data.eq(rd.data)
                outputs.append(data)
            return outputs

        def select_bank(name, addr, outputs, out):
            if banks == 1:
                m.d.comb += out.eq(outputs[0])
                return
            bank_r = Signal(range(banks), name=f"{name}_bank_r")
            bank_r2 = Signal(range(banks), name=f"{name}_bank_r2")
            m.d.sync += [bank_r.eq(addr >> low), bank_r2.eq(bank_r)]
            with m.Switch(bank_r2):
                for b, data in enumerate(outputs):
                    with m.Case(b):
                        m.d.comb += out.eq(data)

        rw = self.rw
        rw_out = bank_memories("rw", VfState, rw.addr[:low], rw.addr, rw.w_data, rw.w_en)
        select_bank("rw", rw.addr, rw_out, rw.r_data)

        q_addr = self.bme.addr
        if depth <= self.DISTRIBUTED_DEPTH:
            bme_out = bank_memories("bme", 1, rw.addr[:low], rw.addr,
                                    rw.w_data.bus_master_enable, rw.w_en, r_addr=q_addr)
            select_bank("bme", q_addr, bme_out, self.bme.data)
            return m

        # Bus Master Enable: X is written with the write, Y a cycle later from registers.
        y_en, y_addr, y_bme = Signal(), Signal(range(depth)), Signal()
        m.d.sync += [y_en.eq(rw.w_en), y_addr.eq(rw.addr),
                     y_bme.eq(rw.w_data.bus_master_enable)]
        x_out = bank_memories("bme_x", 1, Mux(rw.w_en, rw.addr[:low], q_addr[:low]),
                              rw.addr, rw.w_data.bus_master_enable, rw.w_en)
        y_out = bank_memories("bme_y", 1, Mux(y_en, y_addr[:low], q_addr[:low]),
                              y_addr, y_bme, y_en)
        # Y answers when X is being written; the choice follows the read through its registers.
        use_y = Signal()
        use_y_r = Signal()
        m.d.sync += [use_y.eq(rw.w_en), use_y_r.eq(use_y)]
        x_data, y_data = Signal(), Signal()
        select_bank("bme_x", q_addr, x_out, x_data)
        select_bank("bme_y", q_addr, y_out, y_data)
        m.d.comb += self.bme.data.eq(Mux(use_y_r, y_data, x_data))
        return m


class SriovEndpoint(wiring.Component):
    """Configuration space of an SR-IOV endpoint: the PF and all its VFs.

    One configuration request is handled at a time. A request is accepted when ``cfg_req.valid``
    and ``cfg_req.ready`` are both high at a clock edge; its completion is valid
    :attr:`config_latency` (7, or 8 with a VF Stride that is not a power of two) cycles later and
    stays valid until ``cfg_cpl.ready``. ``ready``
    stays low from acceptance until the completion is taken, and while the VF state is being
    cleared (TotalVFs cycles after reset, a PF FLR or VF Enable going to 0).

    Per-VF state lives in a memory of TotalVFs entries, so the flip-flop count does not grow
    with TotalVFs. Behaviour is specified in ``docs/endpoint-behaviour.md``.

    Parameters
    ----------
    params : EndpointParams
    mem_latency : int
        Latency of the memory decode (1, or 2 for one more pipeline stage).
    tag_width : int
        Width of the memory request tag carried to the decode result.

    Members
    -------
    mem_req : In(stream.Signature(MemRequest(tag_width)))
        Memory requests (64-bit address, write, tag).
    mem_res : Out(stream.Signature(MemDecode(params, tag_width)))
        Their decode (see :class:`VfBarDecoder`): claimed or not, PF or VF n, BAR, offset.
        Unclaimed requests are for the user logic to complete with UR.
    pf_bars : Out(ArrayLayout(PfBarState, 6))
        PF BAR base addresses, indexed by BAR slot (0 for slots without a BAR and for the upper
        slot of a 64-bit BAR).
    cfg_req : In(stream.Signature(ConfigRequest))
        Configuration requests.
    cfg_cpl : Out(stream.Signature(Completion))
        Their completions, in order.
    bus : Out(8)
        Captured bus number.
    pf_memory_space_enable, pf_bus_master_enable : Out(1)
        PF Command register bits.
    pf_flr : Out(1)
        One-cycle pulse when a PF Function Level Reset starts.
    vf_enable, vf_mse, ari_capable_hierarchy : Out(1)
        SR-IOV Control bits.
    num_vfs : Out(16)
        NumVFs.
    first_vf_offset, vf_stride : Out(16)
        Current First VF Offset and VF Stride.
    vf_bars : Out(ArrayLayout(VfBarState, 6))
        Base and aperture of each VF BAR, indexed by BAR slot (0 where there is none).
    vf_flr : Out(StructLayout({"valid": 1, "vf": range(TotalVFs + 1)}))
        A VF FLR event: ``valid`` for one cycle, ``vf`` the VF number (1-based). Events come at
        most once per config request, so user logic needs no backpressure.
    vfs_reset : Out(1)
        One-cycle pulse when every VF's state is reset (VF Enable cleared, PF FLR, reset).
    vf_reset_busy : Out(1)
        The VF state is being cleared.
    vf_bme_query : In(range(TotalVFs + 1))
        VF number whose Bus Master Enable to look up.
    vf_bme : Out(1)
        Bus Master Enable of VF ``vf_bme_query`` three cycles earlier; 0 unless that VF exists.
    """

    def __init__(self, params, *, mem_latency=1, tag_width=8):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params: must be an EndpointParams, not {params!r}")
        self._params = params
        vf_range = range(params.total_vfs + 1)
        self.sriov   = SriovCapability(params, next_offset=ext_cap_chain(params)["sriov"])
        self._decode_stages = 3 if needs_divider(params) else 2
        self.decoder = RoutingIdDecoder(params, stages=self._decode_stages)
        self.bar_decoder = VfBarDecoder(params, latency=mem_latency, tag_width=tag_width)
        super().__init__({
            "mem_req":                In(stream.Signature(MemRequest(tag_width))),
            "mem_res":                Out(stream.Signature(MemDecode(params, tag_width))),
            "pf_bars":                Out(data.ArrayLayout(PfBarState, 6)),
            "cfg_req":                In(stream.Signature(ConfigRequest)),
            "cfg_cpl":                Out(stream.Signature(Completion)),
            "bus":                    Out(8),
            "pf_memory_space_enable": Out(1),
            "pf_bus_master_enable":   Out(1),
            "pf_flr":                 Out(1),
            "vf_enable":              Out(1),
            "vf_mse":                 Out(1),
            "ari_capable_hierarchy":  Out(1),
            "num_vfs":                Out(16),
            "first_vf_offset":        Out(16),
            "vf_stride":              Out(16),
            "vf_bars":                Out(data.ArrayLayout(VfBarState, 6)),
            "vf_flr":                 Out(data.StructLayout({"valid": 1, "vf": vf_range})),
            "vfs_reset":              Out(1),
            "vf_reset_busy":          Out(1),
            "vf_bme_query":           In(vf_range),
            "vf_bme":                 Out(1),
        })

    @property
    def params(self):
        return self._params

    @property
    def config_latency(self):
        """Clock edges from accepting a config request to transferring its completion:
        :data:`CONFIG_LATENCY` (7), or 8 when a VF Stride is not a power of two."""
        return config_latency(self._params)

    def elaborate(self, platform):
        p = self._params
        m = Module()
        m.submodules.sriov   = sriov   = self.sriov
        m.submodules.decoder = decoder = self.decoder
        m.submodules.bar_decoder = bar_decoder = self.bar_decoder

        depth = max(2, p.total_vfs)
        m.submodules.vf_state = vf_mem = VfStateMemory(depth)
        vf_rw, bme_rd = vf_mem.rw, vf_mem.bme

        chain    = ext_cap_chain(p)
        header   = RegisterBank(type0_header_map(p), name="pf_header")
        pcie     = RegisterBank(pcie_capability_map(p), name="pf_pcie")
        ari      = RegisterBank(ari_capability_map(chain["ari"]), name="pf_ari")
        vf_hdr   = RegisterBank(vf_header_map(p), name="vf_header",
                                external=["command.bus_master_enable"])
        vf_pcie  = RegisterBank(pcie_capability_map(p, vf=True), name="vf_pcie",
                                external=["device_control.relaxed_ordering",
                                          "device_control.no_snoop",
                                          "device_control.initiate_flr"])
        vf_ari   = RegisterBank(ari_capability_map(0), name="vf_ari")

        # The request being handled, held from acceptance to completion.
        req    = Signal(ConfigRequest)
        target = Signal(Target)
        # The VF state memory's address, a register: the addressed VF's entry while a request
        # is handled, the sweep's position while the memory is being cleared.
        mem_addr = Signal(range(depth))
        vf     = Signal.like(decoder.vf)    # the addressed VF's number (from LOAD on; or 0)
        cpl    = Signal(Completion)
        state  = Signal(VfState)    # the addressed VF's state, from the memory
        # The one cycle in which the request takes effect. It, and every write enable below,
        # is a flip-flop set in the cycle before: the execute cycle starts from registers.
        exec_  = Signal()
        load2  = Signal()

        # -- Clearing all VF state: a sweep over the memory ---------------------------------
        # (No request is accepted during a sweep, and none is in flight when one starts.)
        sweep      = Signal(init=1)       # also after reset: rst may come at any time
        start_sweep = Signal()
        pf_flr = Signal()
        with m.If(start_sweep):
            m.d.sync += [sweep.eq(1), mem_addr.eq(0)]
        with m.Elif(sweep):
            m.d.sync += mem_addr.eq(mem_addr + 1)
            with m.If(mem_addr == depth - 1):
                m.d.sync += sweep.eq(0)
        vfe_prev = Signal()
        m.d.sync += vfe_prev.eq(sriov.vf_enable)
        with m.If(pf_flr):      # the FLR clears VF Enable too: one sweep, not two
            m.d.sync += vfe_prev.eq(0)
        # Registered: the sweep starts a cycle after its cause (off the execute path); until
        # then no request is accepted either.
        vfe_fell = Signal()
        m.d.comb += vfe_fell.eq(vfe_prev & ~sriov.vf_enable)
        m.d.sync += start_sweep.eq(pf_flr | vfe_fell)
        m.d.comb += self.vfs_reset.eq(start_sweep)

        # -- Request sequencing ----------------------------------------------------------------
        with m.FSM(name="cfg"):
            with m.State("IDLE"):
                idle = ~sweep & ~start_sweep & ~vfe_fell
                m.d.comb += self.cfg_req.ready.eq(idle)
                with m.If(self.cfg_req.valid & idle):
                    m.d.sync += req.eq(self.cfg_req.payload)
                    m.next = "DECODE"
            with m.State("DECODE"):         # the decoder's first stage
                m.next = "DIVIDE" if self._decode_stages == 3 else "DECODE2"
            if self._decode_stages == 3:
                with m.State("DIVIDE"):     # its multiplication by VF Stride's inverse
                    m.next = "DECODE2"
            with m.State("DECODE2"):
                m.d.sync += [target.eq(decoder.target), mem_addr.eq(decoder.vf_index)]
                m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += vf.eq(Mux(target == Target.VF, mem_addr + 1, 0))
                # The addressed VF's state is read from the memory, by the registered VF number,
                m.next = "LOAD"
            with m.State("LOAD"):
                # (the memory registers its block RAMs' outputs)
                m.next = "LOAD2"
            with m.State("LOAD2"):
                m.d.comb += load2.eq(1)
                m.d.sync += state.eq(vf_rw.r_data)
                m.next = "EXECUTE"
            with m.State("EXECUTE"):
                m.next = "COMPLETE"
            with m.State("COMPLETE"):
                m.d.comb += self.cfg_cpl.valid.eq(1)
                with m.If(self.cfg_cpl.ready):
                    m.next = "IDLE"
        m.d.comb += self.cfg_cpl.payload.eq(cpl)

        m.d.comb += [
            decoder.type1.eq(req.type1),
            decoder.rid.eq(req.rid),
            decoder.ari.eq(sriov.ari_capable_hierarchy),
            decoder.vf_enable.eq(sriov.vf_enable),
            decoder.num_vfs.eq(sriov.num_vfs),
        ]

        reg = req.reg
        hdr_hit, hdr_addr = _window(m, reg, 0, 16, "header")
        pcie_hit, pcie_addr = _window(m, reg, PCIE_CAP_OFFSET // 4, 15, "pcie")
        ari_hit, ari_addr = _window(m, reg, p.ari_cap_offset // 4, 2, "ari")
        sriov_hit, sriov_addr = _window(m, reg, p.sriov_cap_offset // 4, 16, "sriov")
        vari_hit, vari_addr = _window(m, reg, VF_ARI_CAP_OFFSET // 4, 2, "vf_ari")

        def at_execute(cond, name):
            """A flip-flop high in the execute cycle exactly when ``cond`` (known by LOAD2)."""
            strobe = Signal(name=name)
            m.d.sync += strobe.eq(load2 & cond)
            return strobe

        pf_wr    = req.write & (target == Target.PF)
        vf_wr    = req.write & (target == Target.VF)
        m.d.sync += exec_.eq(load2)
        m.d.comb += decoder.capture.eq(at_execute(pf_wr & ~req.type1, "capture_we"))
        hdr_we   = at_execute(pf_wr & hdr_hit, "header_we")
        pcie_we  = at_execute(pf_wr & pcie_hit, "pcie_we")
        ari_we   = at_execute(pf_wr & ari_hit, "ari_we")
        sriov_we = at_execute(pf_wr & sriov_hit, "sriov_we")
        vhdr_we  = at_execute(vf_wr & hdr_hit, "vf_header_we")
        vpcie_we = at_execute(vf_wr & pcie_hit, "vf_pcie_we")
        vf_exec_wr = at_execute(vf_wr, "vf_exec_wr")

        # -- PF configuration space --------------------------------------------------------------

        hdr_data, pcie_data, ari_data = Signal(32), Signal(32), Signal(32)
        header.read(m, hdr_addr, hdr_data)
        pcie.read(m, pcie_addr, pcie_data)
        ari.read(m, ari_addr, ari_data)
        header.write(m, hdr_addr, hdr_we, req.be, req.data)
        pcie.write(m, pcie_addr, pcie_we, req.be, req.data)
        ari.write(m, ari_addr, ari_we, req.be, req.data)
        m.d.comb += [
            sriov.cfg.addr.eq(sriov_addr),
            sriov.cfg.w_en.eq(sriov_we),
            sriov.cfg.w_be.eq(req.be),
            sriov.cfg.w_data.eq(req.data),
        ]

        pf_data = Signal(32)
        with m.If(hdr_hit):
            m.d.comb += pf_data.eq(hdr_data)
        with m.Elif(pcie_hit):
            m.d.comb += pf_data.eq(pcie_data)
        with m.Elif(ari_hit):
            m.d.comb += pf_data.eq(ari_data)
        with m.Elif(sriov_hit):
            m.d.comb += pf_data.eq(sriov.cfg.r_data)

        # Initiate FLR: the write completes, then the whole PF (and every VF) is reset.
        flr_w, flr_value = pcie.write_of("device_control.initiate_flr")
        m.d.comb += pf_flr.eq(flr_w & flr_value)
        header.reset(m, pf_flr)
        pcie.reset(m, pf_flr)
        m.d.comb += sriov.reset.eq(pf_flr)

        # -- VF configuration space --------------------------------------------------------------
        # The state of the addressed VF is read while fetching and used while executing.
        vf_hdr.drive("command.bus_master_enable", state.bus_master_enable)
        vf_pcie.drive("device_control.relaxed_ordering", ~state.relaxed_ordering_disable)
        vf_pcie.drive("device_control.no_snoop", ~state.no_snoop_disable)
        vf_pcie.drive("device_control.initiate_flr", Const(0, 1))

        vhdr_hit, vhdr_addr = hdr_hit, hdr_addr         # same layout as the PF's
        vpcie_hit, vpcie_addr = pcie_hit, pcie_addr
        vhdr_data, vpcie_data, vari_data = Signal(32), Signal(32), Signal(32)
        vf_hdr.read(m, vhdr_addr, vhdr_data)
        vf_pcie.read(m, vpcie_addr, vpcie_data)
        vf_ari.read(m, vari_addr, vari_data)
        vf_hdr.write(m, vhdr_addr, vhdr_we, req.be, req.data)
        vf_pcie.write(m, vpcie_addr, vpcie_we, req.be, req.data)

        vf_data = Signal(32)
        with m.If(vhdr_hit):
            m.d.comb += vf_data.eq(vhdr_data)
        with m.Elif(vpcie_hit):
            m.d.comb += vf_data.eq(vpcie_data)
        with m.Elif(vari_hit):
            m.d.comb += vf_data.eq(vari_data)

        bme_w, bme_value = vf_hdr.write_of("command.bus_master_enable")
        ro_w, ro_value = vf_pcie.write_of("device_control.relaxed_ordering")
        ns_w, ns_value = vf_pcie.write_of("device_control.no_snoop")
        vflr_w, vflr_value = vf_pcie.write_of("device_control.initiate_flr")
        vf_flr = Signal()
        m.d.comb += vf_flr.eq(vflr_w & vflr_value)
        new_state = Signal(VfState)
        m.d.comb += new_state.eq(state)
        with m.If(bme_w):
            m.d.comb += new_state.bus_master_enable.eq(bme_value)
        with m.If(ro_w):
            m.d.comb += new_state.relaxed_ordering_disable.eq(~ro_value)
        with m.If(ns_w):
            m.d.comb += new_state.no_snoop_disable.eq(~ns_value)
        with m.If(vf_flr):
            m.d.comb += new_state.eq(0)

        # The new state is written back in the cycle after executing, from registers: the next
        # request to read it comes several cycles later, and a sweep never overlaps a VF write.
        write_back = Signal()
        new_state_r = Signal(VfState)
        m.d.sync += [write_back.eq(vf_exec_wr), new_state_r.eq(new_state)]
        m.d.comb += [vf_rw.addr.eq(mem_addr),
                     vf_rw.w_data.eq(Mux(sweep, 0, new_state_r)),
                     vf_rw.w_en.eq(sweep | write_back)]
        m.d.sync += [self.vf_flr.valid.eq(vf_flr), self.vf_flr.vf.eq(vf)]

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

        # -- Memory requests: decoded against the PF's and the VFs' BARs ----------------------
        pf_bars = Signal(data.ArrayLayout(PfBarState, len(p.pf_bars)))
        for n, bar in enumerate(p.pf_bars):
            lo = header.read_dword(4 + bar.index)
            hi = header.read_dword(5 + bar.index) if bar.is_64bit else Const(0, 32)
            m.d.comb += [pf_bars[n].base.eq(Cat(Const(0, 4), lo[4:], hi)),
                         self.pf_bars[bar.index].eq(pf_bars[n])]
        for n, bar in enumerate(p.vf_bars):
            m.d.comb += self.vf_bars[bar.index].eq(sriov.vf_bars[n])
        wiring.connect(m, wiring.flipped(self.mem_req), bar_decoder.req)
        wiring.connect(m, bar_decoder.res, wiring.flipped(self.mem_res))
        m.d.comb += [
            bar_decoder.vf_enable.eq(sriov.vf_enable),
            bar_decoder.vf_mse.eq(sriov.vf_mse),
            bar_decoder.num_vfs.eq(sriov.num_vfs),
            bar_decoder.vf_bars.eq(sriov.vf_bars),
            bar_decoder.pf_mse.eq(header["command.memory_space_enable"]),
            bar_decoder.pf_bars.eq(pf_bars),
        ]

        # -- User-facing state ---------------------------------------------------------------
        # The query's memory index is registered first: no adder in front of the memory.
        bme_idx = Signal(range(depth))
        bme_ok = [Signal(name=f"bme_ok{n}") for n in range(3)]
        m.d.sync += [
            bme_idx.eq(self.vf_bme_query - 1),
            bme_ok[0].eq(sriov.vf_enable & (self.vf_bme_query != 0) &
                         (self.vf_bme_query <= sriov.num_vfs) & ~sweep),
            bme_ok[1].eq(bme_ok[0]),
            bme_ok[2].eq(bme_ok[1]),
        ]
        m.d.comb += [bme_rd.addr.eq(bme_idx),
                     self.vf_bme.eq(bme_ok[2] & bme_rd.data)]

        m.d.comb += [
            self.bus.eq(decoder.bus),
            self.pf_memory_space_enable.eq(header["command.memory_space_enable"]),
            self.pf_bus_master_enable.eq(header["command.bus_master_enable"]),
            self.pf_flr.eq(pf_flr),
            self.vf_enable.eq(sriov.vf_enable),
            self.vf_mse.eq(sriov.vf_mse),
            self.ari_capable_hierarchy.eq(sriov.ari_capable_hierarchy),
            self.num_vfs.eq(sriov.num_vfs),
            self.first_vf_offset.eq(sriov.first_vf_offset),
            self.vf_stride.eq(sriov.vf_stride),
            self.vf_reset_busy.eq(sweep),
        ]
        return m
