"""The Type 0 configuration header (0x00..0x3F) of the PF and of a VF (SR-IOV §3.4.1)."""

from ..regs import Access, Field, Register, RegisterMap

__all__ = ["HEADER_SIZE", "type0_header_map", "vf_header_map"]

HEADER_SIZE = 0x40

RO, HWINIT, RW, RW1C, RSVDP, RSVDZ = (Access.RO, Access.HWINIT, Access.RW, Access.RW1C,
                                      Access.RSVDP, Access.RSVDZ)


def _bar_registers(bars, prefix="bar"):
    """The six BAR dwords of a Type 0 header for ``bars`` (a tuple of :class:`Bar`)."""
    by_slot = {bar.index: bar for bar in bars}
    regs = []
    for slot in range(6):
        offset = 0x10 + 4 * slot
        bar = by_slot.get(slot)
        lower = by_slot.get(slot - 1)
        if bar is not None:
            log2 = bar.size_log2
            fields = [Field("type", 0, 4, RO, bar.type_bits,
                            desc=f"{'64' if bar.is_64bit else '32'}-bit, "
                                 f"{'' if bar.prefetchable else 'non-'}prefetchable memory")]
            if log2 > 4:
                fields.append(Field("size_zero", 4, min(log2, 32) - 4, RO, 0,
                                    desc=f"aperture {bar.size:#x} bytes"))
            if log2 < 32:
                fields.append(Field("address", log2, 32 - log2, RW))
            regs.append(Register(f"{prefix}{slot}", offset, 32, tuple(fields),
                                 desc=f"BAR{slot}"))
        elif lower is not None and lower.is_64bit:
            log2 = lower.size_log2
            fields = []
            if log2 > 32:
                fields.append(Field("size_zero", 0, log2 - 32, RO, 0))
            fields.append(Field("address_hi", max(0, log2 - 32), 32 - max(0, log2 - 32), RW,
                                desc=f"bits 63:32 of BAR{slot - 1}"))
            regs.append(Register(f"{prefix}{slot}", offset, 32, tuple(fields),
                                 desc=f"BAR{slot} (upper dword of BAR{slot - 1})"))
        else:
            regs.append(Register(f"{prefix}{slot}", offset, 32, (),
                                 desc=f"BAR{slot} (not implemented)"))
    return regs


def type0_header_map(params, cap_pointer, *, multi_function=False):
    """The PF's Type 0 configuration header (0x00..0x3F); ``cap_pointer`` is the offset of the
    first legacy capability. ``multi_function`` sets Header Type's Multi-Function bit (0x80, a
    device of several PFs, PCI Express Base §7.5.1.1.9)."""
    p = params
    header_type = 0x80 if multi_function else 0x00
    return RegisterMap("header", 0x40, [
        Register("vendor_id", 0x00, 16, (Field("vendor_id", 0, 16, RO, p.vendor_id),)),
        Register("device_id", 0x02, 16, (Field("device_id", 0, 16, RO, p.device_id),)),
        Register("command", 0x04, 16, (
            Field("io_space_enable", 0, 1, RO, 0, desc="no I/O BARs"),
            Field("memory_space_enable", 1, 1, RW),
            Field("bus_master_enable", 2, 1, RW),
            Field("parity_error_response", 6, 1, RW),
            Field("serr_enable", 8, 1, RW),
            Field("interrupt_disable", 10, 1, RW),
        ), desc="Command"),
        Register("status", 0x06, 16, (
            Field("immediate_readiness", 0, 1, RO, 0,
                  desc="0: config requests get RRS while the VF state is cleared after a reset"),
            Field("interrupt_status", 3, 1, RO, 0),
            Field("capabilities_list", 4, 1, RO, 1),
            Field("master_data_parity_error", 8, 1, RW1C),
            Field("signaled_target_abort", 11, 1, RW1C),
            Field("received_target_abort", 12, 1, RW1C),
            Field("received_master_abort", 13, 1, RW1C),
            Field("signaled_system_error", 14, 1, RW1C),
            Field("detected_parity_error", 15, 1, RW1C),
        ), desc="Status"),
        Register("revision_id", 0x08, 8, (Field("revision_id", 0, 8, RO, p.revision_id),)),
        Register("class_code", 0x09, 8, (Field("prog_if", 0, 8, RO, p.class_code & 0xff),)),
        Register("subclass", 0x0a, 8, (Field("subclass", 0, 8, RO, (p.class_code >> 8) & 0xff),)),
        Register("base_class", 0x0b, 8, (Field("base_class", 0, 8, RO, p.class_code >> 16),)),
        Register("cache_line_size", 0x0c, 8, (Field("cache_line_size", 0, 8, RW),)),
        Register("latency_timer", 0x0d, 8, (Field("latency_timer", 0, 8, RO, 0),)),
        Register("header_type", 0x0e, 8, (Field("header_type", 0, 8, RO, header_type),)),
        Register("bist", 0x0f, 8, (Field("bist", 0, 8, RO, 0),)),
        *_bar_registers(p.pf_bars),
        Register("cardbus_cis", 0x28, 32, ()),
        Register("subsystem_vendor_id", 0x2c, 16, (
            Field("subsystem_vendor_id", 0, 16, RO, p.subsystem_vendor_id),)),
        Register("subsystem_id", 0x2e, 16, (Field("subsystem_id", 0, 16, RO, p.subsystem_id),)),
        Register("expansion_rom", 0x30, 32, (), desc="not implemented"),
        Register("capabilities_pointer", 0x34, 8, (
            Field("capabilities_pointer", 0, 8, RO, cap_pointer),)),
        Register("interrupt_line", 0x3c, 8, (Field("interrupt_line", 0, 8, RW),)),
        Register("interrupt_pin", 0x3d, 8, (Field("interrupt_pin", 0, 8, RO, 0x01),),
                 desc="INTA"),
        Register("min_gnt", 0x3e, 8, (Field("min_gnt", 0, 8, RO, 0),)),
        Register("max_lat", 0x3f, 8, (Field("max_lat", 0, 8, RO, 0),)),
    ])


def vf_header_map(params, cap_pointer):
    """A VF's Type 0 header (SR-IOV §3.4.1): Vendor/Device ID all ones, no BARs, no INTx.

    ``command.bus_master_enable`` is held per VF outside the bank (custom field).
    """
    p = params
    return RegisterMap("vf_header", 0x40, [
        Register("vendor_id", 0x00, 16, (Field("vendor_id", 0, 16, RO, 0xffff),)),
        Register("device_id", 0x02, 16, (Field("device_id", 0, 16, RO, 0xffff),)),
        Register("command", 0x04, 16, (
            Field("memory_space_enable", 1, 1, RO, 0, desc="VF MSE in the PF governs"),
            Field("bus_master_enable", 2, 1, RW, per_vf=True, desc="per VF"),
        ), desc="Command"),
        Register("status", 0x06, 16, (
            Field("immediate_readiness", 0, 1, RO, 1,
                  desc="a VF completes config requests at once after any reset"),
            Field("capabilities_list", 4, 1, RO, 1),
        )),
        Register("revision_id", 0x08, 8, (Field("revision_id", 0, 8, RO, p.revision_id),)),
        Register("class_code", 0x09, 8, (Field("prog_if", 0, 8, RO, p.class_code & 0xff),)),
        Register("subclass", 0x0a, 8, (Field("subclass", 0, 8, RO, (p.class_code >> 8) & 0xff),)),
        Register("base_class", 0x0b, 8, (Field("base_class", 0, 8, RO, p.class_code >> 16),)),
        Register("subsystem_vendor_id", 0x2c, 16, (
            Field("subsystem_vendor_id", 0, 16, RO, p.subsystem_vendor_id),)),
        Register("subsystem_id", 0x2e, 16, (Field("subsystem_id", 0, 16, RO, p.subsystem_id),)),
        Register("capabilities_pointer", 0x34, 8, (
            Field("capabilities_pointer", 0, 8, RO, cap_pointer),)),
    ])


