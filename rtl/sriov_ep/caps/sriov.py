"""The SR-IOV Extended Capability (PCI Express Base, §9.3.3; SR-IOV 1.1, §3.3)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import as_pf
from ..regs import Access, Field, Register, RegisterBank, RegisterMap, RegisterPort, ResetScope

__all__ = ["SRIOV_CAP_ID", "SRIOV_CAP_SIZE", "VfBarState", "sriov_capability_map",
           "SriovCapability"]

SRIOV_CAP_ID      = 0x0010
SRIOV_CAP_VERSION = 1
SRIOV_CAP_SIZE    = 0x40

#: Decoder-facing state of one VF BAR.
VfBarState = data.StructLayout({
    #: Base address of VF 1's aperture (bits 3:0 zero; bits 63:32 zero for a 32-bit BAR).
    "base":          64,
    #: log2 of the per-VF aperture, max(BAR size, System Page Size).
    "aperture_log2": 6,
})


def _vf_bar_registers(params):
    regs = []
    for slot in range(6):
        offset = 0x24 + 4 * slot
        bar = params.vf_bar(slot)
        upper_of = params.vf_bar(slot - 1) if slot else None
        if bar is not None:
            regs.append(Register(f"vf_bar{slot}", offset, 32, (
                Field("type", 0, 4, Access.RO, bar.type_bits,
                      desc=f"{'64' if bar.is_64bit else '32'}-bit, "
                           f"{'' if bar.prefetchable else 'non-'}prefetchable memory"),
                Field("address", 4, 28, Access.RW, custom=True,
                      desc=f"bits below log2(max({bar.size:#x}, System Page Size)) read 0"),
            ), desc=f"VF BAR{slot}"))
        elif upper_of is not None and upper_of.is_64bit:
            regs.append(Register(f"vf_bar{slot}", offset, 32, (
                Field("address_hi", 0, 32, Access.RW, custom=True,
                      desc=f"bits 63:32 of VF BAR{slot - 1}"),
            ), desc=f"VF BAR{slot} (upper dword of VF BAR{slot - 1})"))
        else:
            regs.append(Register(f"vf_bar{slot}", offset, 32, (),
                                 desc=f"VF BAR{slot} (not implemented, reads 0)"))
    return regs


def sriov_capability_map(params, next_offset=0, *, owns_ari=True):
    """The register map of the SR-IOV capability for ``params``; offsets relative to its start.

    ``next_offset`` is the Next Capability Offset of its header (0 ends the list). ``owns_ari``:
    this PF holds the device's ARI Capable Hierarchy bit (RW, kept by a PF FLR or D3hot->D0:
    only a conventional reset clears it); in the device's other PFs the bit is RsvdP.
    """
    if next_offset % 4 or not (next_offset == 0 or 0x100 <= next_offset <= 0xffc):
        raise ValueError(f"next_offset: must be 0 or a dword-aligned offset in 0x100..0xffc "
                         f"(got {next_offset:#x})")
    tag10 = params.vf_10bit_tag_requester_supported
    regs = [
        Register("header", 0x00, 32, (
            Field("cap_id", 0, 16, Access.RO, SRIOV_CAP_ID),
            Field("cap_version", 16, 4, Access.RO, SRIOV_CAP_VERSION),
            Field("next_offset", 20, 12, Access.RO, next_offset),
        ), desc="SR-IOV Extended Capability Header"),
        Register("capabilities", 0x04, 32, (
            Field("vf_migration_capable", 0, 1, Access.RO, 0),
            Field("ari_capable_hierarchy_preserved", 1, 1, Access.RO,
                  int(params.ari_capable_hierarchy_preserved)),
            Field("vf_10bit_tag_requester_supported", 2, 1, Access.RO, int(tag10)),
            Field("reserved", 3, 18, Access.RSVDP),
            Field("vf_migration_interrupt_message_number", 21, 11, Access.RO, 0),
        ), desc="SR-IOV Capabilities"),
        Register("control", 0x08, 16, (
            Field("vf_enable", 0, 1, Access.RW),
            Field("vf_migration_enable", 1, 1, Access.RO, 0, desc="no VF Migration"),
            Field("vf_migration_interrupt_enable", 2, 1, Access.RO, 0, desc="no VF Migration"),
            Field("vf_mse", 3, 1, Access.RW, desc="VF Memory Space Enable"),
            Field("ari_capable_hierarchy", 4, 1, Access.RW, custom=True,
                  scope=ResetScope.LINK, desc="writes ignored while VF Enable is 1")
            if owns_ari else
            Field("ari_capable_hierarchy", 4, 1, Access.RSVDP,
                  desc="the device's bit is in its lowest PF; its value applies here too"),
            Field("vf_10bit_tag_requester_enable", 5, 1, Access.RW if tag10 else Access.RO),
            Field("reserved", 6, 10, Access.RSVDP),
        ), desc="SR-IOV Control"),
        Register("status", 0x0a, 16, (
            Field("vf_migration_status", 0, 1, Access.RW1C),
            Field("reserved", 1, 15, Access.RSVDZ),
        ), desc="SR-IOV Status"),
        Register("initial_vfs", 0x0c, 16, (
            Field("initial_vfs", 0, 16, Access.HWINIT, params.initial_vfs),), desc="InitialVFs"),
        Register("total_vfs", 0x0e, 16, (
            Field("total_vfs", 0, 16, Access.HWINIT, params.total_vfs),), desc="TotalVFs"),
        Register("num_vfs", 0x10, 16, (
            Field("num_vfs", 0, 16, Access.RW, custom=True,
                  desc="writes ignored while VF Enable is 1 or above TotalVFs"),), desc="NumVFs"),
        Register("function_dependency_link", 0x12, 8, (
            Field("function_dependency_link", 0, 8, Access.RO, params.function_dependency_link),
        ), desc="Function Dependency Link"),
        Register("reserved_13", 0x13, 8, (Field("reserved", 0, 8, Access.RSVDP),)),
        Register("first_vf_offset", 0x14, 16, (
            Field("first_vf_offset", 0, 16, Access.RO, params.first_vf_offset_non_ari,
                  desc=f"{params.first_vf_offset_ari:#x} while ARI Capable Hierarchy, else "
                       f"{params.first_vf_offset_non_ari:#x}"),), desc="First VF Offset"),
        Register("vf_stride", 0x16, 16, (
            Field("vf_stride", 0, 16, Access.RO, params.vf_stride_non_ari,
                  desc=f"{params.vf_stride_ari:#x} while ARI Capable Hierarchy, else "
                       f"{params.vf_stride_non_ari:#x}"),), desc="VF Stride"),
        Register("reserved_18", 0x18, 16, (Field("reserved", 0, 16, Access.RSVDP),)),
        Register("vf_device_id", 0x1a, 16, (
            Field("vf_device_id", 0, 16, Access.HWINIT, params.vf_device_id),),
            desc="VF Device ID"),
        Register("supported_page_sizes", 0x1c, 32, (
            Field("supported_page_sizes", 0, 32, Access.RO, params.supported_page_sizes),),
            desc="Supported Page Sizes"),
        Register("system_page_size", 0x20, 32, (
            Field("system_page_size", 0, 32, Access.RW, 0x1, custom=True,
                  desc="accepts one supported bit, only while VF Enable is 0"),),
            desc="System Page Size"),
        *_vf_bar_registers(params),
        Register("vf_migration_state_array_offset", 0x3c, 32, (
            Field("vf_migration_state_bir", 0, 3, Access.RO, 0),
            Field("vf_migration_state_offset", 3, 29, Access.RO, 0),
        ), desc="VF Migration State Array Offset"),
    ]
    return RegisterMap("sriov", SRIOV_CAP_SIZE, regs)


def _or_all(values):
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result


def _page_log2(bit):
    """log2 of the page size selected by System Page Size bit ``bit``."""
    return bit + 12


class SriovCapability(wiring.Component):
    """The SR-IOV Extended Capability of a PF: 0x40 bytes of configuration registers.

    Behaviour where the spec leaves room is listed in ``docs/sriov-capability-behaviour.md``.

    Parameters
    ----------
    params : PfParams (or a single-PF EndpointParams)
    next_offset : int
        Next Capability Offset in the header.
    owns_ari : bool
        This PF holds the device's ARI Capable Hierarchy bit (the lowest PF; the default, and
        the only PF of a single-PF device). Otherwise the bit is RsvdP here and ``ari_in``
        gives the device's value.
    write_ahead : bool
        Adds ``w_ahead``: the checks of the writes that must pass one (System Page Size, NumVFs,
        ARI Capable Hierarchy) are decoded a cycle before the write and registered, so that
        each of those registers' enables is a flip-flop. The registers take the same values in
        the same cycles as without it, given the contract on ``w_ahead``.

    Members
    -------
    cfg : In(RegisterPort(4))
        Dword config access, dword index relative to the capability start; reads combinational,
        writes take effect at the clock edge.
    w_ahead : In(1)
        With ``write_ahead`` only: high exactly one cycle before ``cfg.w_en`` is, with
        ``cfg.addr``, ``cfg.w_be`` and ``cfg.w_data`` already the write's and held into the
        write's cycle; nothing else changes VF Enable, ``ari_hold``, NumVFs, System Page Size or
        ARI Capable Hierarchy between the two cycles (the write's own cycle may bring a
        ``reset``, which wins as always).
    reset : In(1)
        Synchronous function-level reset of the PF (FLR, or D3hot->D0 with No_Soft_Reset 0):
        every field returns to its reset value except ARI Capable Hierarchy, which only the
        domain's reset (the conventional reset) clears.
    ari_in : In(1)
        Not owner: the device's ARI Capable Hierarchy, which selects First VF Offset and VF
        Stride. Unused in the owner.
    ari_hold : In(1)
        Owner: writes to ARI Capable Hierarchy are ignored while it is 1 (a device drives the OR
        of every PF's VF Enable; this PF's own VF Enable holds the bit in any case). Unused in
        other PFs.
    vf_enable, vf_mse : Out(1)
        SR-IOV Control bits.
    ari_capable_hierarchy : Out(1)
        ARI Capable Hierarchy in effect: the owner's bit, or ``ari_in``.
    num_vfs : Out(16)
        NumVFs; never above TotalVFs.
    first_vf_offset, vf_stride : Out(16)
        Current First VF Offset and VF Stride (follow ARI Capable Hierarchy).
    system_page_size : Out(32)
        System Page Size register (one-hot).
    vf_bars : Out(ArrayLayout(VfBarState, len(params.vf_bars)))
        Base and aperture of each implemented VF BAR, in the order of ``params.vf_bars``. A base
        follows a VF BAR write and a System Page Size change at once (the page size only changes
        while VF Enable is 0, when no VF decodes); its bits below the aperture are 0.
    """

    def __init__(self, params, *, next_offset=0, owns_ari=True, write_ahead=False):
        params = as_pf(params)
        self._params   = params
        self._owns_ari = bool(owns_ari)
        self._write_ahead = bool(write_ahead)
        self.regmap    = sriov_capability_map(params, next_offset, owns_ari=self._owns_ari)
        ahead = {"w_ahead": In(1)} if self._write_ahead else {}
        super().__init__({
            "cfg":                   In(RegisterPort(4)),
            **ahead,
            "reset":                 In(1),
            "ari_in":                In(1),
            "ari_hold":              In(1),
            "vf_enable":             Out(1),
            "vf_mse":                Out(1),
            "ari_capable_hierarchy": Out(1),
            "num_vfs":               Out(16),
            "first_vf_offset":       Out(16),
            "vf_stride":             Out(16),
            "system_page_size":      Out(32, init=1),
            "vf_bars":               Out(data.ArrayLayout(VfBarState, len(params.vf_bars))),
        })

    @property
    def params(self):
        return self._params

    @property
    def owns_ari(self):
        return self._owns_ari

    @property
    def write_ahead(self):
        return self._write_ahead

    def _checked(self, m, bank, path, check, name):
        """With ``write_ahead``: the strobe of a write to ``path`` that passes ``check(value)``
        (a write the register takes), and the value. The check is made on the write as
        presented with ``w_ahead`` and registered: the strobe is a flip-flop, high in the cycle
        of the write exactly when the write's own strobe and check would be (their operands are
        the same in both cycles, by the contract on ``w_ahead``); the value is the write's."""
        w, value = bank.write_of(path)
        w_a, value_a = bank.write_ahead(m, path, self.w_ahead, self.cfg.addr, self.cfg.w_be,
                                        self.cfg.w_data)
        ok = Signal(name=f"{name}_r")
        m.d.sync += ok.eq(w_a & check(value_a))
        return ok, value

    def _by_page(self, m, page, value_of, width, name):
        """``value_of(bit)`` for the page size bit set in ``page`` (combinational).

        ``page`` holds exactly one supported bit (the register accepts nothing else), so an
        AND-OR over the supported bits selects the value: one level of logic, no comparators or
        shifters on the way from System Page Size to the BAR masks.
        """
        result = Signal(width, name=name)
        terms = [page[bit].replicate(width) & Const(value_of(bit), width)
                 for bit in range(32) if self._params.supported_page_sizes >> bit & 1]
        m.d.comb += result.eq(_or_all(terms))
        return result

    def elaborate(self, platform):
        p = self._params
        m = Module()
        bar_paths = []
        for bar in p.vf_bars:
            bar_paths.append(f"vf_bar{bar.index}.address")
            if bar.is_64bit:
                bar_paths.append(f"vf_bar{bar.index + 1}.address_hi")
        bank = RegisterBank(self.regmap, external=bar_paths)

        vf_enable = bank["control.vf_enable"]
        ari       = bank["control.ari_capable_hierarchy"] if self._owns_ari else self.ari_in
        num_vfs   = bank["num_vfs.num_vfs"]
        page      = bank["system_page_size.system_page_size"]

        # First VF Offset and VF Stride follow ARI Capable Hierarchy at once (SR-IOV §3.3.9-10).
        m.d.comb += [
            self.first_vf_offset.eq(Cat(Const(p.first_vf_offset_non_ari, 16),
                                        Const(p.first_vf_offset_ari, 16)).word_select(ari, 16)),
            self.vf_stride.eq(Cat(Const(p.vf_stride_non_ari, 16),
                                  Const(p.vf_stride_ari, 16)).word_select(ari, 16)),
        ]
        bank.drive("first_vf_offset.first_vf_offset", self.first_vf_offset)
        bank.drive("vf_stride.vf_stride", self.vf_stride)

        # VF BAR address registers. Bits below the aperture read 0 through the mask at once;
        # the cycle after a System Page Size change clears them in the register too, so a later
        # smaller page does not bring them back. (Clearing them in the writing cycle itself
        # would put the page decode on the path into the address registers.)
        # The mask is a register of its own, written with System Page Size at the same edges
        # (below: from the written value, or the reset value), so it is the mask of the page
        # size in every cycle and the page decode is on no path to the config read data or to
        # the decoders' base.
        page_reset = self.regmap.reset_value(0x20 // 4)
        bars = []
        for bar in p.vf_bars:
            width = 64 if bar.is_64bit else 32

            def log2(bit, bar=bar):
                return max(bar.size_log2, _page_log2(bit))

            def mask_of(bit, width=width, log2=log2):
                return ((1 << width) - 1) & ~((1 << log2(bit)) - 1)

            ap_log2 = self._by_page(m, page, log2, 6, f"vf_bar{bar.index}_aperture_log2")
            mask    = Signal(width, name=f"vf_bar{bar.index}_mask",
                             init=mask_of(page_reset.bit_length() - 1))
            lo_reg  = Signal(28, name=f"vf_bar{bar.index}_address")
            lo      = lo_reg & mask[4:32]
            bank.drive(f"vf_bar{bar.index}.address", lo)
            hi_reg, hi = None, Const(0, 32)
            if bar.is_64bit:
                hi_reg = Signal(32, name=f"vf_bar{bar.index + 1}_address_hi")
                hi     = hi_reg & mask[32:64]
                bank.drive(f"vf_bar{bar.index + 1}.address_hi", hi)
            bars.append((bar, ap_log2, mask, mask_of, lo_reg, lo, hi_reg, hi))

        bank.read(m, self.cfg.addr, self.cfg.r_data)
        bank.write(m, self.cfg.addr, self.cfg.w_en, self.cfg.w_be, self.cfg.w_data)

        # ARI Capable Hierarchy moves every VF's Routing ID: hold it while VFs exist (here or,
        # through ari_hold, in another PF). Its scope is LINK: bank.reset leaves it alone.
        if self._owns_ari:
            if self._write_ahead:
                ari_ok, ari_value = self._checked(
                    m, bank, "control.ari_capable_hierarchy",
                    lambda value: ~vf_enable & ~self.ari_hold, "ari_ok")
            else:
                ari_w, ari_value = bank.write_of("control.ari_capable_hierarchy")
                ari_ok = ari_w & ~vf_enable & ~self.ari_hold
            with m.If(ari_ok):
                m.d.sync += ari.eq(ari_value)

        # NumVFs is only meaningful while VF Enable is 0, and never above TotalVFs.
        # (At TotalVFs = 0xffff every value fits: no comparison, Verilator -Wall: CMPCONST.)
        if not self._write_ahead:
            num_w, num_value = bank.write_of("num_vfs.num_vfs")
            fits = num_value <= p.total_vfs if p.total_vfs < 0xffff else 1
            with m.If(num_w & ~vf_enable & fits):
                m.d.sync += num_vfs.eq(num_value)
        else:
            num_ok, num_value = self._checked(
                m, bank, "num_vfs.num_vfs",
                lambda value: ~vf_enable & (value <= p.total_vfs if p.total_vfs < 0xffff else 1),
                "num_ok")
            with m.If(num_ok):
                m.d.sync += num_vfs.eq(num_value)

        # System Page Size takes exactly one supported size, and only while VFs are disabled.
        def page_check(value, suffix=""):
            # "One supported bit" as a set of equalities: no carry chain on the write path.
            page_valid = Signal(name=f"page_valid{suffix}")
            with m.Switch(value):
                for bit in range(32):
                    if p.supported_page_sizes >> bit & 1:
                        with m.Case(1 << bit):
                            m.d.comb += page_valid.eq(1)
            return page_valid
        if self._write_ahead:
            page_ok, page_value = self._checked(
                m, bank, "system_page_size.system_page_size",
                lambda value: ~vf_enable & page_check(value, "_ahead"), "page_ok")
            page_w = page_ok
        else:
            page_w, page_value = bank.write_of("system_page_size.system_page_size")
            page_ok = Signal()
            page_valid = page_check(page_value)
            m.d.comb += page_ok.eq(page_w & ~vf_enable & page_valid)
        # The written value as the masks below see it: 0 unless System Page Size is written
        # (page_ok implies page_w), so their decode stays still while other registers are
        # written (in simulation it then runs only on page writes).
        page_written = Signal(32)
        m.d.comb += page_written.eq(Mux(page_w, page_value, 0))
        with m.If(page_ok):
            m.d.sync += page.eq(page_value)

        page_changed = Signal()
        m.d.sync += page_changed.eq(page_ok)
        for n, (bar, ap_log2, mask, mask_of, lo_reg, lo, hi_reg, hi) in enumerate(bars):
            # The mask of the page size System Page Size holds after this edge: of the written
            # value (one supported bit, page_ok checked it), else of the current one (so the
            # mask is also right one cycle after any state, as k-induction needs), and the
            # reset value's on a reset (below).
            w = len(mask)
            m.d.sync += mask.eq(Mux(page_ok,
                                    self._by_page(m, page_written, mask_of, w,
                                                  f"vf_bar{bar.index}_mask_written"),
                                    self._by_page(m, page, mask_of, w,
                                                  f"vf_bar{bar.index}_mask_held")))
            with m.If(page_changed):
                m.d.sync += lo_reg.eq(lo)
                if hi_reg is not None:
                    m.d.sync += hi_reg.eq(hi)
            # A write comes after the clean-up above, so it wins (it is masked the same way).
            lo_w, lo_value = bank.write_of(f"vf_bar{bar.index}.address")
            with m.If(lo_w):
                m.d.sync += lo_reg.eq(lo_value & mask[4:32])
            if hi_reg is not None:
                hi_w, hi_value = bank.write_of(f"vf_bar{bar.index + 1}.address_hi")
                with m.If(hi_w):
                    m.d.sync += hi_reg.eq(hi_value & mask[32:64])
            with m.If(self.reset):
                # System Page Size returns to its reset value (bank.reset), so does the mask
                m.d.sync += [lo_reg.eq(0), mask.eq(mask.init)]
                if hi_reg is not None:
                    m.d.sync += hi_reg.eq(0)
            m.d.comb += [
                self.vf_bars[n].base.eq(Cat(Const(0, 4), lo, hi)),
                self.vf_bars[n].aperture_log2.eq(ap_log2),
            ]

        bank.reset(m, self.reset)

        m.d.comb += [
            self.vf_enable.eq(vf_enable),
            self.vf_mse.eq(bank["control.vf_mse"]),
            self.ari_capable_hierarchy.eq(ari),
            self.num_vfs.eq(num_vfs),
            self.system_page_size.eq(page),
        ]
        return m
