"""Independent reference model of the SR-IOV Extended Capability (ID 0x0010).

Written from ``/work/shared/reference/sriov-spec.md`` (register map, VF BAR rules, corner cases)
and ``docs/sriov-capability-behaviour.md`` (the project's choices where the spec leaves room),
and deliberately *not* from the RTL: the point of the model is that it can disagree with the
hardware. It keeps the architectural state as plain named fields and decodes every write register
by register, using the literal offsets of the spec.

Register map (byte offsets relative to the capability start; ``dword = offset // 4``)::

    0x00  Extended Capability Header     0x14  First VF Offset  |  0x16 VF Stride
    0x04  SR-IOV Capabilities            0x18  reserved         |  0x1A VF Device ID
    0x08  Control  |  0x0A Status        0x1C  Supported Page Sizes
    0x0C  InitialVFs  |  0x0E TotalVFs   0x20  System Page Size
    0x10  NumVFs  |  0x12 FDL  |  0x13   0x24..0x38  VF BAR0..VF BAR5
                                         0x3C  VF Migration State Array Offset (reads 0)
"""

__all__ = ["SriovCapabilityModel"]


# -- Literal numbers from the spec ---------------------------------------------------------------

#: Extended Capability ID of SR-IOV and the capability version this model implements.
SRIOV_CAP_ID      = 0x0010
SRIOV_CAP_VERSION = 1

#: Byte offsets of the registers (relative to the capability start).
OFF_HEADER        = 0x00
OFF_CAPABILITIES  = 0x04
OFF_CONTROL       = 0x08    # Control in bytes 0x08-0x09, Status in 0x0A-0x0B
OFF_VF_COUNTS     = 0x0C    # InitialVFs in 0x0C-0x0D, TotalVFs in 0x0E-0x0F
OFF_NUM_VFS       = 0x10    # NumVFs in 0x10-0x11, FDL in 0x12, RsvdP in 0x13
OFF_OFFSET_STRIDE = 0x14    # First VF Offset in 0x14-0x15, VF Stride in 0x16-0x17
OFF_VF_DEVICE_ID  = 0x18    # RsvdP in 0x18-0x19, VF Device ID in 0x1A-0x1B
OFF_SUPPORTED_PS  = 0x1C
OFF_SYSTEM_PS     = 0x20
OFF_VF_BAR0       = 0x24    # VF BAR0..5 at 0x24, 0x28, ..., 0x38
OFF_VF_MIGRATION  = 0x3C

#: Capabilities register bits.
CAP_ARI_CAPABLE_HIERARCHY_PRESERVED  = 1 << 1
CAP_VF_10BIT_TAG_REQUESTER_SUPPORTED = 1 << 2

#: Control register bits (bits 1 and 2, VF Migration [Interrupt] Enable, are read-only 0 here
#: because VF Migration is not implemented; bits 15:6 are RsvdP).
CTRL_VF_ENABLE               = 1 << 0
CTRL_VF_MSE                  = 1 << 3
CTRL_ARI_CAPABLE_HIERARCHY   = 1 << 4
CTRL_VF_10BIT_TAG_REQ_ENABLE = 1 << 5

#: Status register bit 0, VF Migration Status (RW1C); bits 15:1 are RsvdZ.
STATUS_VF_MIGRATION = 1 << 0

#: Reset value of System Page Size: bit 0, i.e. 4 KiB.
SYSTEM_PAGE_SIZE_RESET = 0x0000_0001

#: Number of dwords in the capability (0x40 bytes).
CAP_DWORDS = 16


def _byte_mask_to_bit_mask(byte_mask):
    """Expand a 4-bit byte enable into a 32-bit mask (byte enable bit i -> bits 8i+7:8i)."""
    bit_mask = 0
    for i in range(4):
        if byte_mask & (1 << i):
            bit_mask |= 0xFF << (8 * i)
    return bit_mask


def _merge(old, data, bit_mask):
    """Byte-merge rule: the old value with the enabled bytes replaced by the written ones."""
    return (old & ~bit_mask) | (data & bit_mask)


class SriovCapabilityModel:
    """Pure-Python model of one PF's SR-IOV Extended Capability (0x40 bytes).

    Parameters
    ----------
    params : sriov_ep.params.EndpointParams
        Endpoint parameters. The model uses TotalVFs/InitialVFs, VF Device ID, the ARI and non-ARI
        First VF Offset / VF Stride pairs, Supported Page Sizes, Function Dependency Link, the two
        Capabilities flags and the VF BARs.
    next_offset : int
        Next Capability Offset placed in header bits 31:20 (0 ends the list).

    Attributes
    ----------
    vf_enable : bool
        Control bit 0, VF Enable.
    vf_mse : bool
        Control bit 3, VF Memory Space Enable.
    ari_capable_hierarchy : bool
        Control bit 4, ARI Capable Hierarchy.
    vf_10bit_tag_requester_enable : bool
        Control bit 5, VF 10-Bit Tag Requester Enable (stays 0 unless supported).
    vf_migration_status : bool
        Status bit 0. Nothing in the design sets it (no VF Migration); it is a field only so that
        the RW1C rule is explicit and testable.
    num_vfs : int
        NumVFs register, 0..TotalVFs.
    system_page_size : int
        System Page Size register value (one-hot; bit n means 2^(n+12) bytes).
    vf_bar_address : dict of int to int
        For every implemented VF BAR, keyed by its (low) slot: the full address held in the BAR's
        address bits (64 bits wide for a 64-bit BAR, type bits excluded).
    """

    def __init__(self, params, next_offset=0):
        if not isinstance(next_offset, int) or not 0 <= next_offset <= 0xFFF \
                or next_offset % 4:
            raise ValueError(f"next_offset must be a dword-aligned offset 0..0xffc "
                             f"(got {next_offset!r})")
        self.params      = params
        self.next_offset = next_offset
        self.reset()

    # -- Reset ---------------------------------------------------------------------------------

    def reset(self):
        """Return every register to its reset value (conventional reset or PF FLR).

        Behaviour doc item 11: Control 0, Status 0, NumVFs 0, System Page Size 1, VF BAR address
        bits 0. Everything else in the capability is read-only and has no state.
        """
        self.vf_enable                     = False
        self.vf_mse                        = False
        self.ari_capable_hierarchy         = False
        self.vf_10bit_tag_requester_enable = False
        self.vf_migration_status           = False
        self.num_vfs                       = 0
        self.system_page_size              = SYSTEM_PAGE_SIZE_RESET
        self.vf_bar_address = {bar.index: 0 for bar in self.params.vf_bars}

    # -- Derived state the decoders use ----------------------------------------------------------

    @property
    def first_vf_offset(self):
        """First VF Offset as currently read: follows ARI Capable Hierarchy, not NumVFs."""
        if self.ari_capable_hierarchy:
            return self.params.first_vf_offset_ari
        return self.params.first_vf_offset_non_ari

    @property
    def vf_stride(self):
        """VF Stride as currently read: follows ARI Capable Hierarchy, not NumVFs."""
        if self.ari_capable_hierarchy:
            return self.params.vf_stride_ari
        return self.params.vf_stride_non_ari

    @property
    def system_page_size_bytes(self):
        """System Page Size in bytes: register bit n means 2^(n+12) bytes."""
        n = self.system_page_size.bit_length() - 1
        return 1 << (n + 12)

    def _bar_at(self, slot):
        """The VF BAR whose low dword is ``slot``, or ``None`` (no BAR, or an upper half)."""
        for bar in self.params.vf_bars:
            if bar.index == slot:
                return bar
        return None

    def _bar_with_upper(self, slot):
        """The 64-bit VF BAR whose upper dword is ``slot``, or ``None``."""
        for bar in self.params.vf_bars:
            if bar.is_64bit and bar.index + 1 == slot:
                return bar
        return None

    def _aperture(self, bar):
        # Behaviour doc item 7: A = max(BAR size, System Page Size), so that every VF's range
        # starts on a page boundary when the BAR is smaller than a system page.
        return max(bar.size, self.system_page_size_bytes)

    def _address_mask(self, bar):
        """Address bits of ``bar`` that are RW: those from log2(A) up, within its width."""
        width_mask = (1 << 64) - 1 if bar.is_64bit else 0xFFFF_FFFF
        return ~(self._aperture(bar) - 1) & width_mask

    def vf_bar_aperture(self, slot):
        """Bytes of address space per VF for the VF BAR in ``slot``.

        Parameters
        ----------
        slot : int
            VF BAR slot 0..5.

        Returns
        -------
        int or None
            ``max(size, System Page Size)``; ``None`` if the slot has no BAR or is the upper
            dword of a 64-bit BAR.
        """
        bar = self._bar_at(slot)
        if bar is None:
            return None
        return self._aperture(bar)

    def vf_bar_base(self, slot):
        """Base address of the VF BAR in ``slot`` (VF 1's range starts here).

        Parameters
        ----------
        slot : int
            VF BAR slot 0..5.

        Returns
        -------
        int or None
            The full address (64-bit for a 64-bit BAR), type bits 3:0 cleared; ``None`` if the
            slot has no BAR or is the upper dword of a 64-bit BAR.
        """
        bar = self._bar_at(slot)
        if bar is None:
            return None
        return self.vf_bar_address[bar.index]

    # -- Register reads ------------------------------------------------------------------------

    def _read_control(self):
        value = 0
        if self.vf_enable:
            value |= CTRL_VF_ENABLE
        if self.vf_mse:
            value |= CTRL_VF_MSE
        if self.ari_capable_hierarchy:
            value |= CTRL_ARI_CAPABLE_HIERARCHY
        if self.vf_10bit_tag_requester_enable:
            value |= CTRL_VF_10BIT_TAG_REQ_ENABLE
        return value

    def _read_status(self):
        return STATUS_VF_MIGRATION if self.vf_migration_status else 0

    def _read_vf_bar(self, slot):
        bar = self._bar_at(slot)
        if bar is not None:
            # Low dword: address bits 31:4 and the read-only type bits 3:0.
            return (self.vf_bar_address[bar.index] & 0xFFFF_FFF0) | bar.type_bits
        bar = self._bar_with_upper(slot)
        if bar is not None:
            # Upper dword of a 64-bit BAR: address bits 63:32, no type bits.
            return (self.vf_bar_address[bar.index] >> 32) & 0xFFFF_FFFF
        # Unimplemented VF BAR: reads 0.
        return 0

    def read(self, dword):
        """Read one dword of the capability.

        Parameters
        ----------
        dword : int
            Dword index 0..15 relative to the capability start.

        Returns
        -------
        int
            The 32-bit register value.
        """
        self._check_dword(dword)
        p = self.params
        offset = dword * 4
        if offset == OFF_HEADER:
            return SRIOV_CAP_ID | SRIOV_CAP_VERSION << 16 | self.next_offset << 20
        if offset == OFF_CAPABILITIES:
            # Bit 0 (VF Migration Capable) and bits 31:21 (its interrupt number) are 0: no VF
            # Migration (behaviour doc item 1).
            value = 0
            if p.ari_capable_hierarchy_preserved:
                value |= CAP_ARI_CAPABLE_HIERARCHY_PRESERVED
            if p.vf_10bit_tag_requester_supported:
                value |= CAP_VF_10BIT_TAG_REQUESTER_SUPPORTED
            return value
        if offset == OFF_CONTROL:
            return self._read_control() | self._read_status() << 16
        if offset == OFF_VF_COUNTS:
            return p.initial_vfs | p.total_vfs << 16
        if offset == OFF_NUM_VFS:
            # Byte 0x13 is RsvdP and reads 0.
            return self.num_vfs | p.function_dependency_link << 16
        if offset == OFF_OFFSET_STRIDE:
            return self.first_vf_offset | self.vf_stride << 16
        if offset == OFF_VF_DEVICE_ID:
            # Bytes 0x18-0x19 are RsvdP and read 0; the VF Device ID sits at 0x1A.
            return p.vf_device_id << 16
        if offset == OFF_SUPPORTED_PS:
            return p.supported_page_sizes
        if offset == OFF_SYSTEM_PS:
            return self.system_page_size
        if OFF_VF_BAR0 <= offset < OFF_VF_MIGRATION:
            return self._read_vf_bar((offset - OFF_VF_BAR0) // 4)
        if offset == OFF_VF_MIGRATION:
            # No VF Migration, so no VF Migration State Array (behaviour doc item 1).
            return 0
        raise AssertionError("unreachable")  # pragma: no cover

    # -- Register writes -----------------------------------------------------------------------

    def write(self, dword, data, byte_mask):
        """Write one dword of the capability with byte enables.

        Parameters
        ----------
        dword : int
            Dword index 0..15 relative to the capability start.
        data : int
            32-bit write data; byte i is bits 8i+7:8i.
        byte_mask : int
            4-bit byte enable; bit i enables byte i. Disabled bytes keep their old value.
        """
        self._check_dword(dword)
        if not isinstance(data, int) or not 0 <= data <= 0xFFFF_FFFF:
            raise ValueError(f"data must be a 32-bit unsigned integer (got {data!r})")
        if not isinstance(byte_mask, int) or not 0 <= byte_mask <= 0xF:
            raise ValueError(f"byte_mask must be 4 bits, 0..0xf (got {byte_mask!r})")
        bit_mask = _byte_mask_to_bit_mask(byte_mask)
        offset = dword * 4
        if offset == OFF_CONTROL:
            self._write_control_status(data, bit_mask)
        elif offset == OFF_NUM_VFS:
            self._write_num_vfs(data, bit_mask)
        elif offset == OFF_SYSTEM_PS:
            self._write_system_page_size(data, bit_mask)
        elif OFF_VF_BAR0 <= offset < OFF_VF_MIGRATION:
            self._write_vf_bar((offset - OFF_VF_BAR0) // 4, data, bit_mask)
        # Every other dword (header, Capabilities, InitialVFs/TotalVFs, First VF Offset/VF
        # Stride, VF Device ID, Supported Page Sizes, 0x3C) is read-only: the write is ignored.

    def _write_control_status(self, data, bit_mask):
        # Control, bytes 0x08-0x09 (bits 15:0 of the dword).
        old_control = self._read_control()
        new_control = _merge(old_control, data & 0xFFFF, bit_mask & 0xFFFF)
        # Sampled before anything changes: the ARI rule looks at VF Enable *before* the write.
        vf_enable_before = self.vf_enable

        # VF Enable and VF MSE are RW at any time; both in one write works (Linux does that).
        self.vf_enable = bool(new_control & CTRL_VF_ENABLE)
        self.vf_mse    = bool(new_control & CTRL_VF_MSE)
        # ARI Capable Hierarchy: ignored while VF Enable was 1, so First VF Offset / VF Stride
        # cannot change under enabled VFs.
        if not vf_enable_before:
            self.ari_capable_hierarchy = bool(new_control & CTRL_ARI_CAPABLE_HIERARCHY)
        # VF 10-Bit Tag Requester Enable: RW only when the Capabilities bit says it is supported.
        if self.params.vf_10bit_tag_requester_supported:
            self.vf_10bit_tag_requester_enable = bool(new_control & CTRL_VF_10BIT_TAG_REQ_ENABLE)
        # Bits 1, 2 (VF Migration [Interrupt] Enable) are RO 0; bits 15:6 are RsvdP: dropped.

        # Status, bytes 0x0A-0x0B (bits 31:16): bit 0 is RW1C, a 1 in an enabled byte clears it;
        # bits 15:1 are RsvdZ. A W32 at 0x08 therefore also hits Status, as RW1C.
        status_written = (data & bit_mask) >> 16
        if status_written & STATUS_VF_MIGRATION:
            self.vf_migration_status = False

    def _write_num_vfs(self, data, bit_mask):
        # NumVFs, bytes 0x10-0x11. Bytes 0x12 (FDL, RO) and 0x13 (RsvdP) ignore writes.
        if self.vf_enable:
            # Ignored while VF Enable is 1 (behaviour doc item 4; spec: undefined).
            return
        new_num_vfs = _merge(self.num_vfs, data & 0xFFFF, bit_mask & 0xFFFF)
        if new_num_vfs > self.params.total_vfs:
            # The whole write is ignored, so VF Enable can never expose more than TotalVFs VFs.
            return
        self.num_vfs = new_num_vfs

    def _write_system_page_size(self, data, bit_mask):
        if self.vf_enable:
            # Ignored while VF Enable is 1: the VF apertures must not move under enabled VFs.
            return
        new_value = _merge(self.system_page_size, data, bit_mask)
        exactly_one_bit = new_value != 0 and new_value & (new_value - 1) == 0
        if not exactly_one_bit or not new_value & self.params.supported_page_sizes:
            # 0, two or more bits, or an unsupported size: the whole write is ignored.
            return
        self.system_page_size = new_value
        # A larger page grows the apertures; the address bits that became read-only 0 are
        # cleared in the register (and stay cleared if the page size later shrinks).
        for bar in self.params.vf_bars:
            self.vf_bar_address[bar.index] &= self._address_mask(bar)

    def _write_vf_bar(self, slot, data, bit_mask):
        # VF BAR writes are accepted at any time, even with VF Enable and VF MSE set; the
        # decoders follow the new value at once (behaviour doc item 7).
        bar = self._bar_at(slot)
        if bar is not None:
            # Low dword: merge into what the dword reads, keep only the RW address bits of
            # 31:0 (bits 3:0 are the read-only type bits), keep address bits 63:32.
            merged = _merge(self._read_vf_bar(slot), data, bit_mask)
            low = merged & self._address_mask(bar) & 0xFFFF_FFF0
            high = self.vf_bar_address[bar.index] & ~0xFFFF_FFFF
            self.vf_bar_address[bar.index] = high | low
            return
        bar = self._bar_with_upper(slot)
        if bar is not None:
            # Upper dword of a 64-bit BAR: address bits 63:32, RW above log2(A).
            merged = _merge(self._read_vf_bar(slot), data, bit_mask)
            high = (merged << 32) & self._address_mask(bar)
            low = self.vf_bar_address[bar.index] & 0xFFFF_FFFF
            self.vf_bar_address[bar.index] = high | low
            return
        # Unimplemented VF BAR: writes are ignored.

    # -- Helpers -------------------------------------------------------------------------------

    @staticmethod
    def _check_dword(dword):
        if not isinstance(dword, int) or not 0 <= dword < CAP_DWORDS:
            raise ValueError(f"dword must be 0..{CAP_DWORDS - 1} (got {dword!r})")
