"""Independent reference models: the SR-IOV Extended Capability and the whole endpoint.

:class:`SriovCapabilityModel` models the SR-IOV Extended Capability (ID 0x0010);
:class:`EndpointModel` models the whole endpoint, a device of one or more PFs: routing of config
requests over every PF and its VFs, the captured bus and the ARI Capable Hierarchy bit the PFs
share, and memory-request decoding over every PF's BARs and VF BARs. Each PF is a
:class:`PfModel` (its configuration space and its VFs', the Power Management, MSI-X and ACS
capabilities with the MSI-X tables/PBAs and interrupt delivery, the user configuration windows)
and delegates its SR-IOV capability to a :class:`SriovCapabilityModel`.

Capability placement (PF and VF chains) is re-implemented here from the documented rule (see
:func:`place_structures`), not taken from ``sriov_ep.caps``. PM follows PCI PM 1.2 / PCIe Base
§7.5.2, MSI-X PCIe Base §7.7.2 as digested in ``../shared/reference/device-spec.md`` §1, §2,
§7, ACS PCIe Base §7.7.11, and several PFs ``docs/multi-pf.md`` §2-§4 and §9, with the
project's choices spelled out in :class:`PfModel`'s and :class:`EndpointModel`'s docstrings.

Written from ``../shared/reference/sriov-spec.md`` (register map, VF BAR rules, corner cases),
``docs/sriov-capability-behaviour.md`` and ``docs/endpoint-behaviour.md`` (the project's choices
where the spec leaves room), and deliberately *not* from the RTL: the point of the models is that
they can disagree with the hardware. They keep the architectural state as plain named fields and
decode every write register by register, using the literal offsets of the spec.

SR-IOV capability register map (byte offsets relative to the capability start;
``dword = offset // 4``)::

    0x00  Extended Capability Header     0x14  First VF Offset  |  0x16 VF Stride
    0x04  SR-IOV Capabilities            0x18  reserved         |  0x1A VF Device ID
    0x08  Control  |  0x0A Status        0x1C  Supported Page Sizes
    0x0C  InitialVFs  |  0x0E TotalVFs   0x20  System Page Size
    0x10  NumVFs  |  0x12 FDL  |  0x13   0x24..0x38  VF BAR0..VF BAR5
                                         0x3C  VF Migration State Array Offset (reads 0)
"""

from dataclasses import dataclass

__all__ = ["AriCapableHierarchy", "SriovCapabilityModel", "EndpointModel", "PfModel",
           "MemoryResult", "PlacedStructure", "place_structures"]


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


class AriCapableHierarchy:
    """The ARI Capable Hierarchy bit of a device: one bit every PF's offsets follow.

    ``held`` is a callable telling whether writes are ignored now (VF Enable set in some PF).
    Only a conventional reset clears ``value``.
    """

    def __init__(self, held):
        self.value = False
        self.held  = held


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
    ari : AriCapableHierarchy or None
        The device's ARI Capable Hierarchy bit when the capability is one PF of a device;
        ``None`` (standalone): the capability holds the bit and its own VF Enable holds it.
    owns_ari : bool
        Control bit 4 is RW here (the device's lowest PF); otherwise it is RsvdP: reads 0,
        writes ignored, while First VF Offset / VF Stride still follow the device's bit.

    Attributes
    ----------
    vf_enable : bool
        Control bit 0, VF Enable.
    vf_mse : bool
        Control bit 3, VF Memory Space Enable.
    ari_capable_hierarchy : bool
        ARI Capable Hierarchy (Control bit 4 in the owner PF), read-only: the device's bit.
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

    def __init__(self, params, next_offset=0, *, ari=None, owns_ari=True):
        if not isinstance(next_offset, int) or not 0 <= next_offset <= 0xFFF \
                or next_offset % 4:
            raise ValueError(f"next_offset must be a dword-aligned offset 0..0xffc "
                             f"(got {next_offset!r})")
        self.params      = params
        self.next_offset = next_offset
        # Standalone, the capability holds the ARI bit itself and only its own VF Enable holds
        # it; inside a device the bit is the device's (shared by every PF).
        self._own_ari = ari is None
        self._ari = AriCapableHierarchy(lambda: self.vf_enable) if ari is None else ari
        self.owns_ari = bool(owns_ari)
        self.reset()

    # -- Reset ---------------------------------------------------------------------------------

    def reset(self, keep_ari=False):
        """Return every register to its reset value.

        Behaviour doc item 11: Control 0, Status 0, NumVFs 0, System Page Size 1, VF BAR address
        bits 0. Everything else in the capability is read-only and has no state.

        ARI Capable Hierarchy has LINK scope (docs/multi-pf.md §4): only a conventional reset
        clears it. A standalone capability clears it unless ``keep_ari`` (a PF FLR or D3hot -> D0
        reset); inside a device the bit is the device's, and this never touches it.
        """
        if self._own_ari and not keep_ari:
            self._ari.value = False
        self.vf_enable                     = False
        self.vf_mse                        = False
        self.vf_10bit_tag_requester_enable = False
        self.vf_migration_status           = False
        self.num_vfs                       = 0
        self.system_page_size              = SYSTEM_PAGE_SIZE_RESET
        self.vf_bar_address = {bar.index: 0 for bar in self.params.vf_bars}

    # -- Derived state the decoders use ----------------------------------------------------------

    @property
    def ari_capable_hierarchy(self):
        """The ARI Capable Hierarchy value this PF's offsets follow (the device's bit).

        Control bit 4 reads it only in the owner PF; the other PFs read 0 there (RsvdP).
        """
        return self._ari.value

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
        if self.owns_ari and self.ari_capable_hierarchy:
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
        # Sampled before anything changes: the ARI rule looks at VF Enable *before* the write,
        # in every PF of the device (the bit moves every PF's VFs).
        ari_held = self._ari.held()

        # VF Enable and VF MSE are RW at any time; both in one write works (Linux does that).
        self.vf_enable = bool(new_control & CTRL_VF_ENABLE)
        self.vf_mse    = bool(new_control & CTRL_VF_MSE)
        # ARI Capable Hierarchy: RW in the owner PF only (RsvdP elsewhere); ignored while VF
        # Enable was 1 in any PF, so First VF Offset / VF Stride cannot change under enabled VFs.
        if self.owns_ari and not ari_held:
            self._ari.value = bool(new_control & CTRL_ARI_CAPABLE_HIERARCHY)
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


# ================================================================================================
# The whole endpoint (docs/endpoint-behaviour.md)
# ================================================================================================

#: Number of dword registers in a function's 4 KiB configuration space.
CONFIG_DWORDS = 1024

# -- PF Type 0 header: byte offsets of the dwords -------------------------------------------------
HDR_ID             = 0x00   # Vendor ID | Device ID << 16
HDR_COMMAND_STATUS = 0x04   # Command | Status << 16
HDR_CLASS          = 0x08   # Revision ID | Class Code << 8
HDR_CACHE_LINE     = 0x0C   # Cache Line Size | Latency Timer | Header Type | BIST
HDR_BAR0           = 0x10   # BAR0..5 at 0x10, 0x14, ..., 0x24
HDR_BAR5           = 0x24
HDR_CARDBUS_CIS    = 0x28
HDR_SUBSYSTEM      = 0x2C   # Subsystem Vendor ID | Subsystem ID << 16
HDR_EXPANSION_ROM  = 0x30
HDR_CAP_PTR        = 0x34
HDR_RESERVED_38    = 0x38
HDR_INTERRUPT      = 0x3C   # Interrupt Line | Interrupt Pin | Min_Gnt | Max_Lat

# -- PCI Express Capability at 0x40: byte offsets of the dwords -----------------------------------
PCIE_HEADER        = 0x40   # Cap ID, Next, PCIe Capabilities
PCIE_DEVCAP        = 0x44
PCIE_DEVCTL_DEVSTA = 0x48   # Device Control | Device Status << 16
PCIE_LNKCAP        = 0x4C
PCIE_LNKCTL_LNKSTA = 0x50   # Link Control | Link Status << 16
PCIE_LNKCAP2       = 0x6C
PCIE_LNKCTL2       = 0x70

#: Capabilities Pointer value: the PCI Express Capability (fixed at 0x40, always the lowest legacy
#: capability; the model computes it from the chain all the same).
CAP_PTR = 0x40

#: Command bits that are RW in the PF: Memory Space Enable (1), Bus Master Enable (2), Parity
#: Error Response (6), SERR# Enable (8), Interrupt Disable (10).
PF_COMMAND_RW = 1 << 1 | 1 << 2 | 1 << 6 | 1 << 8 | 1 << 10            # 0x0546
#: Command bit 1, Memory Space Enable (RW in the PF, hard-wired 0 in a VF).
COMMAND_MEMORY_SPACE_ENABLE = 1 << 1
#: Command bit 2, Bus Master Enable (the only RW Command bit of a VF).
COMMAND_BUS_MASTER_ENABLE = 1 << 2
#: Status bit 4, Capabilities List (RO 1 in the PF and every VF).
STATUS_CAPABILITIES_LIST = 1 << 4
#: Status bit 0, Immediate Readiness (PCIe Base §7.5.1.1.4): 1 in every VF (a VF FLR takes
#: effect within the request; a VF exists only once the VF state is clear), 0 in the PF (its
#: config requests get Request Retry Status while the VF state is cleared after a reset).
STATUS_IMMEDIATE_READINESS = 1 << 0
#: PF Status bits that are RW1C (never set): 8, 11, 12, 13, 14, 15.
PF_STATUS_RW1C = 1 << 8 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 15  # 0xF900

#: Interrupt Pin of the PF: INTA.
PF_INTERRUPT_PIN = 0x01

#: PCI Express Capability constant dwords (version 2, Endpoint).
PCIE_HEADER_VALUE = 0x0002_0010   # Cap ID 0x10, Next 0x00, PCIe Capabilities 0x0002
PCIE_DEVCAP_VALUE = 0x1000_8000   # Max Payload 128 B, Role-Based Error Reporting, FLR capable
PCIE_LNKCAP_VALUE = 0x0000_0012   # 5.0 GT/s, x1
PCIE_LNKSTA_VALUE = 0x0012        # 5.0 GT/s, x1
PCIE_LNKCAP2_VALUE = 0x0000_0006  # 2.5 and 5.0 GT/s
PCIE_LNKCTL2_VALUE = 0x0000_0002

#: Device Control (0x48) fields.
DEVCTL_RELAXED_ORDERING = 1 << 4
DEVCTL_NO_SNOOP         = 1 << 11
DEVCTL_INITIATE_FLR     = 1 << 15
#: PF Device Control RW bits: 3:0 error reporting, 4 Relaxed Ordering, 7:5 Max Payload Size,
#: 11 No Snoop, 14:12 Max Read Request Size. Bits 10:8 are RO 0; bit 15 (Initiate FLR) reads 0.
PF_DEVCTL_RW    = 0x000F | 0x0010 | 0x00E0 | 0x0800 | 0x7000          # 0x78FF
#: PF Device Control reset value: Relaxed Ordering 1, No Snoop 1, Max Read Request Size 2.
PF_DEVCTL_RESET = 0x2810
#: PF Device Status bits 3:0: RW1C (bit 3 set by unsupported_request, the others never).
PF_DEVSTA_RW1C  = 0x000F
#: PF Link Control RW bits: 1:0 ASPM Control, 3 Read Completion Boundary, 6 Common Clock
#: Configuration, 7 Extended Synch. (8 Enable Clock PM and 9 Hardware Autonomous Width Disable
#: are hardwired to 0: no Clock PM, no autonomous width changes.)
PF_LNKCTL_RW    = 0x0003 | 0x0008 | 0x0040 | 0x0080                    # 0x00CB
#: What an FLR or a D3hot -> D0 reset keeps (PCIe Base §6.6.2: Function settings that control
#: the Link): Device Control's Max_Payload_Size (7:5) and every RW bit of Link Control. Only a
#: conventional reset returns them to 0.
PF_DEVCTL_KEPT_BY_FLR = 0x00E0
PF_LNKCTL_KEPT_BY_FLR = PF_LNKCTL_RW

#: ARI Extended Capability: ID and version (the header's bits 19:0).
ARI_CAP_ID      = 0x000E
ARI_CAP_VERSION = 1
#: Offset of the VFs' ARI capability (first of the VFs' extended list; user extended caps follow).
VF_ARI_OFFSET   = 0x100

#: Per-VF state reset values.
VF_STATE_RESET = {"bus_master_enable": False, "relaxed_ordering": True, "no_snoop": True}

# -- Power Management capability (PCI PM 1.2; PCIe Base §7.5.2), 8 bytes --------------------------
PM_CAP_ID      = 0x01
PM_CAP_SIZE    = 0x08
PM_VERSION     = 0b011      # PMC bits 2:0: PM 1.2
PMC_D1_SUPPORT = 1 << 9
PMC_D2_SUPPORT = 1 << 10
#: PMCSR (at +4) fields.
PMCSR_POWER_STATE   = 0b11  # bits 1:0
PMCSR_NO_SOFT_RESET = 1 << 3
#: PowerState encodings.
D0, D1, D2, D3HOT = 0, 1, 2, 3

# -- MSI-X capability (PCIe Base §7.7.2), 12 bytes ------------------------------------------------
MSIX_CAP_ID  = 0x11
MSIX_CAP_SIZE = 0x0C
#: Message Control (bits 31:16 of dword 0) fields.
MSGCTL_TABLE_SIZE    = 0x07FF   # bits 10:0, N-1, RO
MSGCTL_FUNCTION_MASK = 1 << 14
MSGCTL_ENABLE        = 1 << 15
#: Table entry layout (bytes within the 16-byte entry).
MSIX_ENTRY_BYTES = 16
#: Vector Control bit 0: Mask.
MSIX_VECTOR_MASK = 1 << 0

#: Header Type value with the Multi-Function bit (bit 7): every PF of a device with several PFs.
HEADER_TYPE_MULTI_FUNCTION = 0x80

# -- Access Control Services capability (PCIe Base §7.7.11), 8 bytes: no Egress Control Vector --
ACS_CAP_ID      = 0x000D
ACS_CAP_VERSION = 1
ACS_CAP_SIZE    = 0x08

#: Size of the PCI Express capability and of the ARI capability, in bytes.
PCIE_CAP_SIZE = 0x3C
ARI_CAP_SIZE  = 0x08
SRIOV_CAP_SIZE = CAP_DWORDS * 4
HEADER_SIZE   = 0x40


# -- Placement of the capability structures (the documented rule, re-implemented) -----------------

#: First byte of each kind's space: where placement of that kind starts.
_KIND_START = {"header": 0x000, "legacy": 0x040, "extended": 0x100, "range": 0x040}


@dataclass(frozen=True)
class PlacedStructure:
    """One structure of a function's configuration space, placed and linked.

    ``kind`` is ``"header"``, ``"legacy"``, ``"extended"`` or ``"range"``; ``next_offset`` is the
    next pointer its header carries (0 for the last capability of its list and for the header
    and ranges). ``user`` is the :class:`~sriov_ep.params.UserCap` of a user window (``window`` its
    index in ``user_caps`` / ``vf_user_caps``), else ``None``.
    """
    name:        str
    kind:        str
    offset:      int
    size:        int
    next_offset: int = 0
    cap_id:      int | None = None
    version:     int = 1
    user:        object = None
    window:      int | None = None

    @property
    def end(self):
        return self.offset + self.size


def place_structures(structures):
    """Place and link ``structures`` by the documented rule.

    ``structures`` are :class:`PlacedStructure` objects in listing order whose ``offset`` is the
    fixed offset or ``None``. A fixed structure sits at its offset; every other one goes to the
    lowest dword-aligned offset at or after the end of the previously listed structure of the same
    kind (legacy placement starts at 0x40, extended at 0x100) that overlaps no fixed structure.
    Legacy capabilities are linked in ascending offset order, extended ones too; the last next
    pointer of each list is 0; ranges and the header are not linked. The parameters have already
    been validated, so nothing here checks fit.

    Returns the placed structures, ascending by offset.
    """
    fixed = [(s.offset, s.offset + s.size) for s in structures if s.offset is not None]
    cursor = dict(_KIND_START)
    placed = []
    for s in structures:
        offset = s.offset
        if offset is None:
            offset = (cursor[s.kind] + 3) & ~3
            while True:
                clashes = [b for a, b in fixed if offset < b and a < offset + s.size]
                if not clashes:
                    break
                offset = (max(clashes) + 3) & ~3
        cursor[s.kind] = offset + s.size
        placed.append((offset, s))
    result = []
    for kind in ("header", "legacy", "extended", "range"):
        members = sorted(((o, s) for o, s in placed if s.kind == kind), key=lambda m: m[0])
        for n, (offset, s) in enumerate(members):
            linked = kind in ("legacy", "extended") and n + 1 < len(members)
            nxt = members[n + 1][0] if linked else 0
            result.append(PlacedStructure(s.name, s.kind, offset, s.size, nxt, s.cap_id,
                                          s.version, s.user, s.window))
    return sorted(result, key=lambda s: s.offset)


def _user_structures(caps):
    return [PlacedStructure(cap.name, cap.kind, cap.offset, cap.size,
                            cap_id=None if cap.kind == "range" else cap.cap_id,
                            version=cap.version, user=cap, window=n)
            for n, cap in enumerate(caps)]


def _pf_structures(p):
    """The PF's structures in listing order (offset = fixed offset or None)."""
    s = [PlacedStructure("header", "header", 0, HEADER_SIZE),
         PlacedStructure("pcie", "legacy", 0x40, PCIE_CAP_SIZE, cap_id=0x10)]
    if p.pm is not None:
        s.append(PlacedStructure("pm", "legacy", p.pm.offset, PM_CAP_SIZE, cap_id=PM_CAP_ID))
    if p.msix is not None:
        s.append(PlacedStructure("msix", "legacy", p.msix.offset, MSIX_CAP_SIZE,
                                 cap_id=MSIX_CAP_ID))
    s.append(PlacedStructure("ari", "extended", p.ari_cap_offset, ARI_CAP_SIZE,
                             cap_id=ARI_CAP_ID))
    s.append(PlacedStructure("sriov", "extended", p.sriov_cap_offset, SRIOV_CAP_SIZE,
                             cap_id=SRIOV_CAP_ID))
    acs = _acs_of(p)
    if acs is not None:
        # Listed after SR-IOV: placed right after it unless its offset is fixed.
        s.append(PlacedStructure("acs", "extended", acs.offset, ACS_CAP_SIZE,
                                 cap_id=ACS_CAP_ID))
    return s + _user_structures(p.user_caps)


def _acs_of(p):
    """The PF's ACS parameters (an object with ``capability`` and ``offset``), or ``None``."""
    acs = getattr(p, "acs", None)
    return acs if hasattr(acs, "capability") else None


def _vf_structures(p):
    """Every VF's structures in listing order."""
    s = [PlacedStructure("header", "header", 0, HEADER_SIZE),
         PlacedStructure("pcie", "legacy", 0x40, PCIE_CAP_SIZE, cap_id=0x10)]
    if p.vf_pm is not None:
        s.append(PlacedStructure("pm", "legacy", p.vf_pm.offset, PM_CAP_SIZE, cap_id=PM_CAP_ID))
    if p.vf_msix is not None:
        s.append(PlacedStructure("msix", "legacy", p.vf_msix.offset, MSIX_CAP_SIZE,
                                 cap_id=MSIX_CAP_ID))
    s.append(PlacedStructure("ari", "extended", VF_ARI_OFFSET, ARI_CAP_SIZE, cap_id=ARI_CAP_ID))
    return s + _user_structures(p.vf_user_caps)


@dataclass(frozen=True)
class MemoryResult:
    """What :meth:`EndpointModel.memory` did with one memory request.

    ``claimed``: a BAR of a function claimed it for the user's logic (it goes out on the memory
    port). ``internal``: the endpoint served it itself (MSI-X table or PBA); then ``claimed`` is
    0. ``is_vf``/``vf``/``bar``/``offset`` describe the decode (``vf`` 0 for the PF, n for VF n
    of PF ``pf``; all 0 when nothing decodes). ``data``: for an internal read, the aligned QWORD
    containing ``offset`` (byte i at bits 8i+7:8i); 0 otherwise. ``pf``: the PF index.
    """
    claimed:  bool
    internal: bool
    is_vf:    bool
    vf:       int
    bar:      int
    offset:   int
    data:     int = 0
    pf:       int = 0


class _MsixControl:
    """MSI-X state of one function that resets: Enable, Function Mask, Mask bits, pending bits.

    (Message Address/Data are kept elsewhere: no reset clears them; the VF Table Size too.)
    """
    __slots__ = ("enable", "function_mask", "masks", "pending")

    def __init__(self, max_vectors):
        self.enable        = False
        self.function_mask = False
        self.masks         = (1 << max_vectors) - 1     # every vector masked
        self.pending       = 0


class PfModel:
    """Pure-Python model of one PF of the device and its SR-IOV VFs.

    Implements ``docs/endpoint-behaviour.md`` for one PF: the PF's configuration space (§3), its
    VFs' (§4), their completions (§2) and the decoding of memory requests by the PF BARs and VF
    BARs (§5). The PF's SR-IOV capability is a :class:`SriovCapabilityModel`. On top of that
    (device-spec.md §1, §2, §7 and the project's rules): the capability chains with PM / MSI-X /
    ACS / user capabilities placed by :func:`place_structures`; the PM capability (PowerState per
    function; a function not in D0 decodes no memory and sends no MSI-X; D3hot -> D0 without
    No_Soft_Reset resets the function: the PF as a PF FLR, a VF as a VF FLR); the MSI-X
    capability, tables and PBAs and delivery; the per-VF Table Size; the user configuration
    windows; the ACS capability (docs/multi-pf.md §3).

    What the PFs share is the device's (:class:`EndpointModel`): the captured bus, the ARI
    Capable Hierarchy bit, the user handler, :attr:`events` and :attr:`messages`. Every reset of
    this PF (PF FLR, D3hot -> D0, VF Enable clearing) touches this PF and its VFs only.

    Project choices the brief leaves open, made here:

    * PF PowerState and PF Bus Master Enable do not gate the VFs (each function has its own).
    * A PowerState write is ignored only when it selects an unsupported state (D1/D2 without
      support); any supported state may follow any other (D3hot -> D1 included). Only a
      D3hot -> D0 write resets (when No_Soft_Reset = 0).
    * MSI-X Message Address/Data are never reset. The Mask and pending bits of vectors at or above
      a VF's current Table Size are kept but invisible: the PBA reads them as 0 and delivery
      ignores them.
    * A user window write whose remaining byte enables are 0 does not call the handler (for
      legacy dword 0 the bytes 0-1 enables are cleared first); the data is passed unchanged.

    Parameters
    ----------
    device : EndpointModel
        The device this PF belongs to.
    index : int
        The PF index k (0..P-1, ascending function number).

    Attributes
    ----------
    index : int
    params : sriov_ep.params.PfParams
    sriov : SriovCapabilityModel
        The PF's SR-IOV capability. Its Next Capability Offset follows the PF chain.
    pf_chain, vf_chain : list of PlacedStructure
        The PF's and every VF's structures, placed and linked, ascending by offset.
    pf_fn : int
        The PF's function number (Routing ID bits 7:0).
    next_function : int
        Next Function Number of the PF's ARI capability: the next PF's function number, 0 in the
        last PF.
    command, cache_line_size, interrupt_line, device_control, link_control : int
        The PF's RW header and PCI Express Capability fields (only their RW bits).
    status_rw1c, device_status_rw1c : int
        The PF's RW1C Status / Device Status bits. Only :meth:`unsupported_request` sets one
        (Device Status bit 3); they are fields so that the RW1C rule is explicit and testable.
    bar_address : dict of int to int
        For every PF BAR, keyed by its (low) slot: the address in its RW bits (64 bits wide for a
        64-bit BAR, type bits excluded).
    pm_power_state : int
        The PF's PowerState (0 = D0 .. 3 = D3hot); stays 0 without a PF PM capability.
    acs_control : int
        ACS Control (0 without an ACS capability); only bits set in ACS Capability are RW.
    """

    def __init__(self, device, index):
        params = device.params.pfs[index]
        self.device = device
        self.index  = index
        self.params = params
        self.pf_fn  = params.pf_rid & 0xFF
        pfs = device.params.pfs
        self.next_function = pfs[index + 1].pf_rid & 0xFF if index + 1 < len(pfs) else 0
        self.multi_function = len(pfs) > 1
        self.acs = _acs_of(params)
        self.pf_chain = place_structures(_pf_structures(params))
        self.vf_chain = place_structures(_vf_structures(params))
        self._pf_by_name = {s.name: s for s in self.pf_chain}
        self._vf_by_name = {s.name: s for s in self.vf_chain}
        self.ari_next_offset = self._pf_by_name["ari"].next_offset
        self.sriov  = SriovCapabilityModel(params,
                                           next_offset=self._pf_by_name["sriov"].next_offset,
                                           ari=device.ari, owns_ari=index == 0)
        # dword -> structure, for the structures this class serves by structure (PM, MSI-X, ACS,
        # user windows); the header, PCIe, ARI and SR-IOV dwords are served by literal offsets.
        self._pf_windows = self._window_map(self.pf_chain)
        self._vf_windows = self._window_map(self.vf_chain)
        # MSI-X Message Address low / upper / Data per function and vector: never reset.
        self._msix_table = {}
        self.device_control = PF_DEVCTL_RESET
        self.link_control = 0
        self.reset()

    # What the PFs share lives in the device.
    @property
    def captured_bus(self):
        return self.device.captured_bus

    @property
    def events(self):
        return self.device.events

    @property
    def messages(self):
        return self.device.messages

    @property
    def user(self):
        return self.device.user

    @staticmethod
    def _window_map(chain):
        windows = {}
        for s in chain:
            if s.name in ("pm", "msix", "acs") or s.user is not None:
                for reg in range(s.offset // 4, s.end // 4):
                    windows[reg] = s
        return windows

    @staticmethod
    def _cap_ptr(chain):
        legacy = [s.offset for s in chain if s.kind == "legacy"]
        return min(legacy) if legacy else 0

    # -- Resets ----------------------------------------------------------------------------------

    def reset(self):
        """Apply a conventional reset to this PF and its VFs (the device's shared state, the
        captured bus and the ARI bit, is the device's to reset).

        MSI-X Message Address/Data keep their values (no reset clears them).
        """
        self.device_control = PF_DEVCTL_RESET
        self.link_control = 0
        self._reset_pf()

    def _reset_pf(self):
        # A function-level reset of the PF (FLR, D3hot -> D0): every RW/RW1C field of the PF
        # (header, PCIe, PM, MSI-X control, ACS, SR-IOV capability) and every VF's state, except
        # the Link settings (Max_Payload_Size, Link Control); the captured bus and the ARI bit
        # are the device's and stay. Other PFs and their VFs are not touched.
        self.command            = 0
        self.status_rw1c        = 0
        self.cache_line_size    = 0
        self.interrupt_line     = 0
        self.bar_address        = {bar.index: 0 for bar in self.params.pf_bars}
        self.device_control     = (PF_DEVCTL_RESET & ~PF_DEVCTL_KEPT_BY_FLR) | \
            (self.device_control & PF_DEVCTL_KEPT_BY_FLR)
        self.device_status_rw1c = 0
        self.link_control       &= PF_LNKCTL_KEPT_BY_FLR
        self.pm_power_state     = D0
        self.acs_control        = 0
        self._pf_msix = _MsixControl(self.params.msix.max_vectors) \
            if self.params.msix is not None else None
        self.sriov.reset()
        self._reset_all_vfs()

    def _reset_all_vfs(self):
        # Per-VF state: VF number -> dict of the three fields. A VF without an entry has the
        # reset values, so resetting all VFs is clearing the dicts. The per-VF Table Size goes
        # back to the default too (VF Enable clear, PF reset, conventional reset).
        self._vf_state      = {}
        self._vf_power      = {}    # VF -> PowerState (absent: D0)
        self._vf_msix       = {}    # VF -> _MsixControl (absent: reset values)
        self._vf_table_size = {}    # VF -> vector count (absent: vf_msix.vectors)

    def _reset_vf(self, n):
        # VF FLR or VF D3hot -> D0: this VF's state back to reset, its Table Size kept.
        self._set_vf_state(n, dict(VF_STATE_RESET))
        self._vf_power.pop(n, None)
        self._vf_msix.pop(n, None)

    def _event(self, *event):
        # Every event names the PF as its last element.
        self.device.events.append((*event, self.index))

    # -- Routing (§1) ----------------------------------------------------------------------------

    @property
    def pf_rid(self):
        """The PF's current Routing ID: the captured bus and the PF's function number."""
        return self.captured_bus << 8 | self.pf_fn

    def vf_rid(self, n):
        """Routing ID VF ``n`` (1-based) has with the current offset and stride.

        Returns ``None`` if it does not fit in 16 bits. Says nothing about whether VF ``n`` is
        enabled.
        """
        self._check_vf_number(n)
        rid = self.pf_rid + self.sriov.first_vf_offset + (n - 1) * self.sriov.vf_stride
        return rid if rid <= 0xFFFF else None

    def claim(self, type1, rid):
        """Whether this PF or one of its VFs takes a config request to ``rid``. No side effects.

        Returns
        -------
        tuple or None
            ``("PF", 0)``, ``("VF", n)`` with ``n`` 1-based, or ``None``.
        """
        self._check_rid(rid)
        if type1:
            # A Type 1 request never reaches the PF; one for the device's own bus reaches nothing
            # (a Downstream Port turns requests for its secondary bus into Type 0).
            if rid >> 8 == self.captured_bus:
                return None
            target = rid
        else:
            # The bus field of a Type 0 request is not compared: the captured bus stands in.
            if rid & 0xFF == self.pf_fn:
                return ("PF", 0)
            target = self.captured_bus << 8 | (rid & 0xFF)

        if not self.sriov.vf_enable:
            return None
        offset = self.sriov.first_vf_offset
        stride = self.sriov.vf_stride
        d = target - (self.pf_rid + offset)       # Python ints: no wrap-around
        if d < 0:
            return None
        if stride == 0:
            # Only possible with TotalVFs = 1: only d == 0 is VF 1.
            if d != 0:
                return None
            n = 1
        else:
            if d % stride != 0:
                return None
            n = d // stride + 1
        if n > self.sriov.num_vfs:
            return None
        return ("VF", n)

    def _config(self, kind, n, rid, reg, be, write, data):
        # A request routed to this PF (kind "PF") or to its VF n.
        if kind == "PF":
            if not write:
                return ("SC", self.pf_read(reg))
            # Only Type 0 requests reach a PF, so every PF write is a Type 0 write a PF claims:
            # the device captures the bus number (even with byte enables 0).
            self.device.captured_bus = rid >> 8
            self._pf_write(reg, be, data)
            # The hardware re-checks the pending vectors after every config write.
            self._deliver_pending(0)
            return ("SC", 0)
        if not write:
            return ("SC", self.vf_read(n, reg))
        self._vf_write(n, reg, be, data)
        self._deliver_pending(n)
        return ("SC", 0)

    # -- PF configuration space (§3) -------------------------------------------------------------

    def _pf_bar_at(self, slot):
        """The PF BAR whose low dword is ``slot``, or ``None``."""
        for bar in self.params.pf_bars:
            if bar.index == slot:
                return bar
        return None

    def _pf_bar_with_upper(self, slot):
        """The 64-bit PF BAR whose upper dword is ``slot``, or ``None``."""
        for bar in self.params.pf_bars:
            if bar.is_64bit and bar.index + 1 == slot:
                return bar
        return None

    @staticmethod
    def _pf_bar_address_mask(bar):
        """RW address bits of a PF BAR: from log2(size) up, within its width (no page size)."""
        width_mask = (1 << 64) - 1 if bar.is_64bit else 0xFFFF_FFFF
        return ~(bar.size - 1) & width_mask

    def _read_pf_bar(self, slot):
        bar = self._pf_bar_at(slot)
        if bar is not None:
            return (self.bar_address[bar.index] & 0xFFFF_FFF0) | bar.type_bits
        bar = self._pf_bar_with_upper(slot)
        if bar is not None:
            return (self.bar_address[bar.index] >> 32) & 0xFFFF_FFFF
        return 0    # unimplemented slot: RO 0

    def _write_pf_bar(self, slot, data, bit_mask):
        bar = self._pf_bar_at(slot)
        if bar is not None:
            # Low dword: address bits 31:4 RW above log2(S); type bits 3:0 RO.
            merged = _merge(self._read_pf_bar(slot), data, bit_mask)
            low  = merged & self._pf_bar_address_mask(bar) & 0xFFFF_FFF0
            high = self.bar_address[bar.index] & ~0xFFFF_FFFF
            self.bar_address[bar.index] = high | low
            return
        bar = self._pf_bar_with_upper(slot)
        if bar is not None:
            # Upper dword of a 64-bit BAR: address bits 63:32, RW above log2(S) - 32.
            merged = _merge(self._read_pf_bar(slot), data, bit_mask)
            high = (merged << 32) & self._pf_bar_address_mask(bar)
            low  = self.bar_address[bar.index] & 0xFFFF_FFFF
            self.bar_address[bar.index] = high | low
        # Unimplemented slot: the write is ignored.

    def _in_sriov(self, offset):
        start = self.params.sriov_cap_offset
        return start <= offset < start + CAP_DWORDS * 4

    def pf_read(self, reg):
        """Read dword register ``reg`` (0..1023) of the PF's configuration space (no routing)."""
        self._check_reg(reg)
        p = self.params
        offset = reg * 4

        # PM, MSI-X, ACS and user windows (wherever the chain placed them).
        window = self._pf_windows.get(reg)
        if window is not None:
            return self._window_read(0, window, reg)

        # Type 0 header.
        if offset == HDR_ID:
            return p.vendor_id | p.device_id << 16
        if offset == HDR_COMMAND_STATUS:
            status = STATUS_CAPABILITIES_LIST | self.status_rw1c
            return self.command | status << 16
        if offset == HDR_CLASS:
            return p.revision_id | p.class_code << 8
        if offset == HDR_CACHE_LINE:
            # Latency Timer 0, BIST 0; Header Type 0x00, or 0x80 (Multi-Function) in every PF of
            # a device with several PFs (PCIe Base §7.5.1.1.9).
            header_type = HEADER_TYPE_MULTI_FUNCTION if self.multi_function else 0
            return self.cache_line_size | header_type << 16
        if HDR_BAR0 <= offset <= HDR_BAR5:
            return self._read_pf_bar((offset - HDR_BAR0) // 4)
        if offset in (HDR_CARDBUS_CIS, HDR_EXPANSION_ROM, HDR_RESERVED_38):
            return 0
        if offset == HDR_SUBSYSTEM:
            return p.subsystem_vendor_id | p.subsystem_id << 16
        if offset == HDR_CAP_PTR:
            return self._cap_ptr(self.pf_chain)
        if offset == HDR_INTERRUPT:
            # Min_Gnt, Max_Lat 0.
            return self.interrupt_line | PF_INTERRUPT_PIN << 8

        # PCI Express Capability (its next pointer follows the chain).
        if offset == PCIE_HEADER:
            return PCIE_HEADER_VALUE | self._pf_by_name["pcie"].next_offset << 8
        if offset == PCIE_DEVCAP:
            return PCIE_DEVCAP_VALUE
        if offset == PCIE_DEVCTL_DEVSTA:
            # Initiate FLR (bit 15) reads 0: it is not stored.
            return self.device_control | self.device_status_rw1c << 16
        if offset == PCIE_LNKCAP:
            return PCIE_LNKCAP_VALUE
        if offset == PCIE_LNKCTL_LNKSTA:
            return self.link_control | PCIE_LNKSTA_VALUE << 16
        if offset == PCIE_LNKCAP2:
            return PCIE_LNKCAP2_VALUE
        if offset == PCIE_LNKCTL2:
            return PCIE_LNKCTL2_VALUE
        # 0x54-0x68, 0x74-0x78 (Slot, Root, Device 2, Slot 2 registers) and the rest of
        # 0x7C-0xFF not taken by a capability: 0.

        # Extended capabilities.
        if offset == p.ari_cap_offset:
            return ARI_CAP_ID | ARI_CAP_VERSION << 16 | self.ari_next_offset << 20
        if offset == p.ari_cap_offset + 4:
            # ARI Capability: Next Function Number in bits 15:8, no function groups; ARI
            # Control RO 0.
            return self.next_function << 8
        if self._in_sriov(offset):
            return self.sriov.read((offset - p.sriov_cap_offset) // 4)
        return 0

    def _pf_write(self, reg, be, data):
        p = self.params
        offset = reg * 4
        bit_mask = _byte_mask_to_bit_mask(be)
        written = data & bit_mask      # bits of enabled bytes (for RW1C and Initiate FLR)

        window = self._pf_windows.get(reg)
        if window is not None:
            self._window_write(0, window, reg, be, data)
        elif offset == HDR_COMMAND_STATUS:
            rw = bit_mask & PF_COMMAND_RW
            self.command = (self.command & ~rw) | (data & rw)
            self.status_rw1c &= ~(written >> 16) & 0xFFFF
        elif offset == HDR_CACHE_LINE:
            rw = bit_mask & 0xFF
            self.cache_line_size = (self.cache_line_size & ~rw) | (data & rw)
        elif HDR_BAR0 <= offset <= HDR_BAR5:
            self._write_pf_bar((offset - HDR_BAR0) // 4, data, bit_mask)
        elif offset == HDR_INTERRUPT:
            rw = bit_mask & 0xFF
            self.interrupt_line = (self.interrupt_line & ~rw) | (data & rw)
        elif offset == PCIE_DEVCTL_DEVSTA:
            rw = bit_mask & PF_DEVCTL_RW
            self.device_control = (self.device_control & ~rw) | (data & rw)
            self.device_status_rw1c &= ~(written >> 16) & 0xFFFF
            if written & DEVCTL_INITIATE_FLR:
                # The write completes SC; then the whole PF and its VFs are reset. The captured
                # bus and the ARI bit (the device's) survive; other PFs are not touched.
                self._reset_pf()
                self._event("vfs_reset")
        elif offset == PCIE_LNKCTL_LNKSTA:
            rw = bit_mask & PF_LNKCTL_RW
            self.link_control = (self.link_control & ~rw) | (data & rw)
        elif self._in_sriov(offset):
            vf_enable_before = self.sriov.vf_enable
            self.sriov.write((offset - p.sriov_cap_offset) // 4, data, be)
            if vf_enable_before and not self.sriov.vf_enable:
                self._reset_all_vfs()
                self._event("vfs_reset")
        # Everything else (RO registers, the ARI capability, unimplemented dwords): ignored.

    # -- VF configuration space (§4) -------------------------------------------------------------

    def vf_state(self, n):
        """The RW state of VF ``n`` (1-based).

        Returns
        -------
        dict
            ``{"bus_master_enable": bool, "relaxed_ordering": bool, "no_snoop": bool}`` (a copy).
        """
        self._check_vf_number(n)
        return dict(self._vf_state.get(n, VF_STATE_RESET))

    def _set_vf_state(self, n, state):
        if state == VF_STATE_RESET:
            self._vf_state.pop(n, None)     # keep the dict sparse
        else:
            self._vf_state[n] = state

    def vf_read(self, n, reg):
        """Read dword register ``reg`` of VF ``n``'s configuration space (no routing)."""
        self._check_vf_number(n)
        self._check_reg(reg)
        p = self.params
        state = self._vf_state.get(n, VF_STATE_RESET)
        offset = reg * 4

        window = self._vf_windows.get(reg)
        if window is not None:
            return self._window_read(n, window, reg)

        if offset == HDR_ID:
            return 0xFFFF_FFFF      # Vendor ID and Device ID read 0xFFFF
        if offset == HDR_COMMAND_STATUS:
            command = COMMAND_BUS_MASTER_ENABLE if state["bus_master_enable"] else 0
            return command | (STATUS_CAPABILITIES_LIST | STATUS_IMMEDIATE_READINESS) << 16
        if offset == HDR_CLASS:
            return p.revision_id | p.class_code << 8
        if offset == HDR_SUBSYSTEM:
            return p.subsystem_vendor_id | p.subsystem_id << 16
        if offset == HDR_CAP_PTR:
            return self._cap_ptr(self.vf_chain)
        # 0x0C, BARs 0x10-0x24, 0x28, 0x30, 0x38, 0x3C (no INTx): 0.

        if offset == PCIE_HEADER:
            return PCIE_HEADER_VALUE | self._vf_by_name["pcie"].next_offset << 8
        if offset == PCIE_DEVCAP:
            return PCIE_DEVCAP_VALUE
        if offset == PCIE_DEVCTL_DEVSTA:
            devctl = 0
            if state["relaxed_ordering"]:
                devctl |= DEVCTL_RELAXED_ORDERING
            if state["no_snoop"]:
                devctl |= DEVCTL_NO_SNOOP
            return devctl           # Device Status RO 0
        if offset == PCIE_LNKCAP:
            return PCIE_LNKCAP_VALUE
        if offset == PCIE_LNKCTL_LNKSTA:
            return PCIE_LNKSTA_VALUE << 16      # Link Control RO 0
        if offset == PCIE_LNKCAP2:
            return PCIE_LNKCAP2_VALUE
        if offset == PCIE_LNKCTL2:
            return PCIE_LNKCTL2_VALUE

        if offset == VF_ARI_OFFSET:
            return ARI_CAP_ID | ARI_CAP_VERSION << 16 | self._vf_by_name["ari"].next_offset << 20
        # 0x104 (ARI Capability / Control) and everything else: 0.
        return 0

    def _vf_write(self, n, reg, be, data):
        offset = reg * 4
        window = self._vf_windows.get(reg)
        if window is not None:
            self._window_write(n, window, reg, be, data)
            return
        state = dict(self._vf_state.get(n, VF_STATE_RESET))
        if offset == HDR_COMMAND_STATUS:
            if be & 0b0001:
                state["bus_master_enable"] = bool(data & COMMAND_BUS_MASTER_ENABLE)
        elif offset == PCIE_DEVCTL_DEVSTA:
            if be & 0b0001:
                state["relaxed_ordering"] = bool(data & DEVCTL_RELAXED_ORDERING)
            if be & 0b0010:
                state["no_snoop"] = bool(data & DEVCTL_NO_SNOOP)
                if data & DEVCTL_INITIATE_FLR:
                    # VF FLR: the write completes SC, then this VF (only) is reset (its MSI-X
                    # Table Size and table address/data are kept).
                    self._reset_vf(n)
                    self._event("vf_flr", n)
                    return
        # Every other VF register is read-only: the write is ignored.
        self._set_vf_state(n, state)

    # -- Structures served by structure: PM, MSI-X, ACS, user windows ----------------------------

    def _window_read(self, function, window, reg):
        dword = reg - window.offset // 4
        if window.user is not None:
            return self._user_read(function, window, dword)
        if window.name == "pm":
            return self._pm_read(function, window, dword)
        if window.name == "msix":
            return self._msix_cap_read(function, window, dword)
        return self._acs_read(window, dword)

    def _window_write(self, function, window, reg, be, data):
        dword = reg - window.offset // 4
        if window.user is not None:
            self._user_write(function, window, dword, be, data)
        elif window.name == "pm":
            self._pm_write(function, dword, be, data)
        elif window.name == "msix":
            self._msix_cap_write(function, dword, be, data)
        else:
            self._acs_write(dword, be, data)

    # -- Access Control Services (PCIe Base §7.7.11; the PF only) ---------------------------------

    def _acs_read(self, window, dword):
        if dword == 0:
            return ACS_CAP_ID | ACS_CAP_VERSION << 16 | window.next_offset << 20
        # ACS Capability (bits 15:0) and ACS Control (bits 31:16).
        return self.acs.capability | self.acs_control << 16

    def _acs_write(self, dword, be, data):
        if dword != 1:
            return      # the header is read-only
        # ACS Control: bit i is RW where ACS Capability bit i is set, RO 0 elsewhere.
        rw = self.acs.capability & (_byte_mask_to_bit_mask(be) >> 16)
        self.acs_control = (self.acs_control & ~rw) | (data >> 16 & rw)

    # -- Power Management -----------------------------------------------------------------------

    def _pm_params(self, function):
        return self.params.pm if function == 0 else self.params.vf_pm

    def power_state(self, function):
        """PowerState of ``function`` (0 = PF, n = VF n): 0 = D0 .. 3 = D3hot.

        A function without a PM capability (or a VF that does not exist) reads D0.
        """
        if function == 0:
            return self.pm_power_state
        return self._vf_power.get(function, D0)

    def _pm_read(self, function, window, dword):
        pm = self._pm_params(function)
        if dword == 0:
            pmc = PM_VERSION
            if pm.d1:
                pmc |= PMC_D1_SUPPORT
            if pm.d2:
                pmc |= PMC_D2_SUPPORT
            return PM_CAP_ID | window.next_offset << 8 | pmc << 16
        # dword 1: PMCSR (PowerState, No_Soft_Reset; PME_En, Data_Select, Data_Scale, PME_Status
        # all 0), PMCSR_BSE 0, Data 0.
        value = self.power_state(function)
        if pm.no_soft_reset:
            value |= PMCSR_NO_SOFT_RESET
        return value

    def _pm_write(self, function, dword, be, data):
        if dword != 1 or not be & 0b0001:
            return      # only PowerState (PMCSR bits 1:0, byte 0 of dword 1) is writable
        pm = self._pm_params(function)
        new = data & PMCSR_POWER_STATE
        if (new == D1 and not pm.d1) or (new == D2 and not pm.d2):
            return      # unsupported state: the field keeps its value
        old = self.power_state(function)
        if function == 0:
            self.pm_power_state = new
        elif new == D0:
            self._vf_power.pop(function, None)
        else:
            self._vf_power[function] = new
        if old == D3HOT and new == D0 and not pm.no_soft_reset:
            # D3hot -> D0 without No_Soft_Reset: the function is reset once the write completes.
            if function == 0:
                self._reset_pf()
                self._event("pm_reset", 0)
                self._event("vfs_reset")
            else:
                self._reset_vf(function)
                self._event("pm_reset", function)

    # -- MSI-X: capability ----------------------------------------------------------------------

    def _msix_params(self, function):
        return self.params.msix if function == 0 else self.params.vf_msix

    def _msix_exists(self, function):
        """Whether ``function`` (0 = PF, n = VF n) exists and has an MSI-X capability."""
        if isinstance(function, bool) or not isinstance(function, int) or function < 0:
            return False
        if function == 0:
            return self.params.msix is not None
        return (self.params.vf_msix is not None and self.sriov.vf_enable
                and function <= self.sriov.num_vfs)

    def _msix_control(self, function, create=False):
        if function == 0:
            return self._pf_msix
        ctl = self._vf_msix.get(function)
        if ctl is None:
            ctl = _MsixControl(self.params.vf_msix.max_vectors)
            if create:
                self._vf_msix[function] = ctl
        return ctl

    def msix_table_size(self, function):
        """Current vector count N of ``function``'s MSI-X table (Table Size field + 1)."""
        if function == 0:
            return self.params.msix.vectors
        return self._vf_table_size.get(function, self.params.vf_msix.vectors)

    def _msix_cap_read(self, function, window, dword):
        msix = self._msix_params(function)
        if dword == 0:
            ctl = self._msix_control(function)
            msgctl = (self.msix_table_size(function) - 1) & MSGCTL_TABLE_SIZE
            if ctl.function_mask:
                msgctl |= MSGCTL_FUNCTION_MASK
            if ctl.enable:
                msgctl |= MSGCTL_ENABLE
            return MSIX_CAP_ID | window.next_offset << 8 | msgctl << 16
        if dword == 1:
            return (msix.table_offset & ~0b111) | msix.table_bar
        return (msix.pba_offset & ~0b111) | msix.pba_bar

    def _msix_cap_write(self, function, dword, be, data):
        # Only Message Control bits 15:14 (byte 3 of dword 0) are writable.
        if dword != 0 or not be & 0b1000:
            return
        ctl = self._msix_control(function, create=True)
        ctl.function_mask = bool(data >> 16 & MSGCTL_FUNCTION_MASK)
        ctl.enable        = bool(data >> 16 & MSGCTL_ENABLE)

    # -- MSI-X: delivery ------------------------------------------------------------------------

    def _bus_master_enable(self, function):
        if function == 0:
            return bool(self.command & COMMAND_BUS_MASTER_ENABLE)
        return self._vf_state.get(function, VF_STATE_RESET)["bus_master_enable"]

    def _deliverable(self, function):
        ctl = self._msix_control(function)
        return (ctl.enable and not ctl.function_mask and self._bus_master_enable(function)
                and self.power_state(function) == D0)

    def _entry(self, function, vector):
        """The [address low, address upper, data] list of one table entry (created on use)."""
        table = self._msix_table.setdefault(function, {})
        return table.setdefault(vector, [0, 0, 0])

    def _send(self, function, vector):
        lo, hi, data = self._msix_table.get(function, {}).get(vector, (0, 0, 0))
        self.device.messages.append((function, hi << 32 | lo, data, self.index))

    def _deliver_pending(self, function):
        """Send every pending, unmasked vector of ``function`` (lowest first) if deliverable."""
        if not self._msix_exists(function) or not self._deliverable(function):
            return
        ctl = self._msix_control(function)
        for vector in range(self.msix_table_size(function)):
            bit = 1 << vector
            if ctl.pending & bit and not ctl.masks & bit:
                ctl.pending &= ~bit
                self._send(function, vector)

    def interrupt(self, function, vector):
        """Request MSI-X vector ``vector`` of ``function`` (0 = PF, n = VF n).

        Returns
        -------
        str
            ``"dropped"`` (no such function with MSI-X, or ``vector`` >= its current Table Size:
            nothing changes), ``"sent"`` (a message was appended to :attr:`messages`) or
            ``"pending"`` (the vector's pending bit is set).
        """
        if isinstance(vector, bool) or not isinstance(vector, int) or vector < 0:
            raise ValueError(f"vector must be a non-negative integer (got {vector!r})")
        if not self._msix_exists(function) or vector >= self.msix_table_size(function):
            return "dropped"
        bit = 1 << vector
        if self._deliverable(function) and not self._msix_control(function).masks & bit:
            self._send(function, vector)
            return "sent"
        self._msix_control(function, create=True).pending |= bit
        return "pending"

    def unsupported_request(self, function=0):
        """The endpoint's ``urd`` event for ``function`` (0 = the PF): the PF's Device Status
        bit 3, Unsupported Request Detected (RW1C), is set. A VF number changes nothing (a VF's
        Device Status reads 0, as the endpoint's does)."""
        if isinstance(function, bool) or not isinstance(function, int) or function < 0:
            raise ValueError(f"function must be 0 (the PF) or a VF number (got {function!r})")
        if function == 0:
            self.device_status_rw1c |= 1 << 3

    def set_vf_msix_count(self, vf, count):
        """Set VF ``vf``'s MSI-X Table Size to ``count`` vectors (0: the default).

        Accepted (returns True) only with a VF MSI-X capability, VF ``vf`` enabled
        (VF Enable = 1, ``1 <= vf <= NumVFs``), its MSI-X Enable 0 and
        ``1 <= count <= max_vectors`` (after 0 -> ``vf_msix.vectors``); else returns False and
        changes nothing.
        """
        if isinstance(vf, bool) or not isinstance(vf, int) or vf < 1:
            return False
        if isinstance(count, bool) or not isinstance(count, int):
            return False
        if not self._msix_exists(vf):
            return False
        msix = self.params.vf_msix
        if count == 0:
            count = msix.vectors
        if not 1 <= count <= msix.max_vectors:
            return False
        if self._msix_control(vf).enable:
            return False
        # Vectors past the new Table Size return to their reset state (masked, not pending), so
        # that growing the table again shows no stale vector (docs/endpoint-behaviour.md §6).
        ctl = self._msix_control(vf, create=True)
        beyond = ((1 << msix.max_vectors) - 1) & ~((1 << count) - 1)
        ctl.masks |= beyond
        ctl.pending &= ~beyond
        if count == msix.vectors:
            self._vf_table_size.pop(vf, None)
        else:
            self._vf_table_size[vf] = count
        return True

    def function_state(self, function):
        """A snapshot of the PM / MSI-X state of ``function`` (0 = PF, n = VF n), for checks.

        Returns
        -------
        dict
            ``power_state``; and, when the function has MSI-X: ``msix_enable``,
            ``function_mask``, ``table_size`` (vector count), ``masks`` and ``pending`` (bit v =
            vector v, vectors below the table size only).
        """
        state = {"power_state": self.power_state(function)}
        if self._msix_params(function) is not None:
            ctl = self._msix_control(function)
            size = self.msix_table_size(function)
            visible = (1 << size) - 1
            state.update(msix_enable=ctl.enable, function_mask=ctl.function_mask,
                         table_size=size, masks=ctl.masks & visible,
                         pending=ctl.pending & visible)
        return state

    # -- MSI-X: table and PBA (memory space) ------------------------------------------------------

    def _msix_internal(self, function, bar, offset):
        """``"table"``, ``"pba"`` or ``None``: where a decoded access lands."""
        msix = self._msix_params(function)
        if msix is None:
            return None
        if bar == msix.table_bar and \
                msix.table_offset <= offset < msix.table_offset + 16 * msix.max_vectors:
            return "table"
        pba_bytes = 8 * -(-msix.max_vectors // 64)
        if bar == msix.pba_bar and msix.pba_offset <= offset < msix.pba_offset + pba_bytes:
            return "pba"
        return None

    def _table_qword_read(self, function, rel):
        vector, half = divmod(rel, MSIX_ENTRY_BYTES)
        if vector >= self.msix_table_size(function):
            return 0
        lo, hi, data = self._msix_table.get(function, {}).get(vector, (0, 0, 0))
        if half < 8:
            return lo | hi << 32
        masked = self._msix_control(function).masks >> vector & 1
        return data | masked << 32

    def _table_qword_write(self, function, rel, data, be):
        vector, half = divmod(rel, MSIX_ENTRY_BYTES)
        if vector >= self.msix_table_size(function):
            return
        bit_mask = 0
        for i in range(8):
            if be & (1 << i):
                bit_mask |= 0xFF << (8 * i)
        if half < 8:
            entry = self._entry(function, vector)
            old = entry[0] | entry[1] << 32
            new = _merge(old, data, bit_mask)
            entry[0] = new & 0xFFFF_FFFC        # bits 1:0 read 0
            entry[1] = new >> 32 & 0xFFFF_FFFF
            return
        if be & 0x0F:
            entry = self._entry(function, vector)
            entry[2] = _merge(entry[2], data, bit_mask) & 0xFFFF_FFFF
        if be & 0x10:
            # Vector Control byte 0: bit 0 Mask; every other bit reads 0 and ignores writes.
            ctl = self._msix_control(function, create=True)
            if data >> 32 & MSIX_VECTOR_MASK:
                ctl.masks |= 1 << vector
            else:
                ctl.masks &= ~(1 << vector)
                self._deliver_pending(function)

    def _pba_qword_read(self, function, rel):
        q = rel // 8
        visible = (1 << self.msix_table_size(function)) - 1
        return (self._msix_control(function).pending & visible) >> (64 * q) \
            & 0xFFFF_FFFF_FFFF_FFFF

    def _memory(self, function, bar, offset, write, data, be):
        """Serve a memory request this PF's ``function`` claimed (see
        :meth:`EndpointModel.memory`)."""
        where = self._msix_internal(function, bar, offset)
        if where is None:
            return MemoryResult(True, False, function != 0, function, bar, offset, 0, self.index)
        msix = self._msix_params(function)
        value = 0
        if where == "table":
            rel = (offset - msix.table_offset) & ~0b111
            if write:
                self._table_qword_write(function, rel, data, be)
            else:
                value = self._table_qword_read(function, rel)
        elif not write:
            value = self._pba_qword_read(function, (offset - msix.pba_offset) & ~0b111)
        # (PBA writes are ignored: it is read-only.)
        return MemoryResult(False, True, function != 0, function, bar, offset, value, self.index)

    # -- User configuration windows -------------------------------------------------------------

    def _user_read(self, function, window, dword):
        cap = window.user
        if cap.kind == "extended" and dword == 0:
            return cap.cap_id | cap.version << 16 | window.next_offset << 20
        value = 0
        if self.user is not None:
            value = self.device._user_read(self.index, function, window.window, dword) & 0xFFFF_FFFF
        if cap.kind == "legacy" and dword == 0:
            return (value & 0xFFFF_0000) | cap.cap_id | window.next_offset << 8
        return value

    def _user_write(self, function, window, dword, be, data):
        cap = window.user
        if dword == 0:
            if cap.kind == "extended":
                return              # the header is the endpoint's, read-only
            if cap.kind == "legacy":
                be &= 0b1100        # bytes 0-1 (ID, next) are the endpoint's
        if be and self.user is not None:
            self.device._user_write(self.index, function, window.window, dword, be, data)

    # -- Memory requests (§5) --------------------------------------------------------------------

    def decode_memory(self, addr):
        """Find the function of this PF and BAR a memory request to byte address ``addr`` reaches.

        The access's size does not matter: the request is decoded by its first byte. No side
        effects. A function whose PowerState is not D0 claims nothing. MSI-X table/PBA ranges are
        reported like any other BAR offset here; :meth:`EndpointModel.memory` serves them.

        Parameters
        ----------
        addr : int
            64-bit byte address, ``0 <= addr < 2**64``.

        Returns
        -------
        tuple
            ``(claimed, function, bar, offset)``: ``function`` 0 is the PF and ``n`` is VF n
            (1-based); ``bar`` is the BAR's (low) slot; ``offset`` is ``addr`` minus the start of
            the claimed range. ``(False, 0, 0, 0)`` when nothing claims the address (UR).
        """
        self._check_address(addr)
        # PF BARs first, then VF BARs; within each, in the order of the parameter lists. The
        # first match wins (only overlapping BARs programmed by software can match twice).
        for bar in self.params.pf_bars:
            hit = self._pf_bar_claims(bar, addr)
            if hit is not None:
                return hit
        for bar in self.params.vf_bars:
            hit = self._vf_bar_claims(bar, addr)
            if hit is not None:
                return hit
        return (False, 0, 0, 0)

    @staticmethod
    def _address_limit(bar):
        """First address a BAR can never claim: 2**64 for a 64-bit BAR, 2**32 for a 32-bit one."""
        return 1 << 64 if bar.is_64bit else 1 << 32

    def _pf_bar_claims(self, bar, addr):
        # PF Memory Space Enable is Command bit 1 (0x04); a PF not in D0 decodes nothing.
        if not self.command & COMMAND_MEMORY_SPACE_ENABLE or self.pm_power_state != D0:
            return None
        # The register's address bits (type bits 3:0 excluded), 64 bits wide for a 64-bit BAR.
        base = self.bar_address[bar.index]
        if addr >= self._address_limit(bar):
            return None
        if base <= addr < base + bar.size:
            return (True, 0, bar.index, addr - base)
        return None

    def _vf_bar_claims(self, bar, addr):
        # VF decode needs VF Enable and VF MSE; PF Command MSE does not matter (spec §8 case 28)
        # and a VF's own Command has no Memory Space Enable.
        if not (self.sriov.vf_enable and self.sriov.vf_mse):
            return None
        if addr >= self._address_limit(bar):
            return None         # nothing wraps: a range past 2**32 / 2**64 is not there
        aperture = self.sriov.vf_bar_aperture(bar.index)   # max(size, System Page Size)
        base = self.sriov.vf_bar_base(bar.index)
        if addr < base:
            return None
        n = (addr - base) // aperture + 1
        if n > self.sriov.num_vfs:
            # Only VFs 1..NumVFs decode: [base + NumVFs*A, base + TotalVFs*A) is not claimed.
            return None
        if self._vf_power.get(n, D0) != D0:
            return None         # a VF not in D0 decodes nothing
        return (True, n, bar.index, addr - (base + (n - 1) * aperture))

    # -- Argument checks -------------------------------------------------------------------------

    @staticmethod
    def _check_reg(reg):
        if isinstance(reg, bool) or not isinstance(reg, int) or not 0 <= reg < CONFIG_DWORDS:
            raise ValueError(f"reg must be a dword register number 0..{CONFIG_DWORDS - 1} "
                             f"(got {reg!r})")

    @staticmethod
    def _check_be(be):
        if isinstance(be, bool) or not isinstance(be, int) or not 0 <= be <= 0xF:
            raise ValueError(f"be must be 4 byte enables, 0..0xf (got {be!r})")

    @staticmethod
    def _check_data(data):
        if isinstance(data, bool) or not isinstance(data, int) or not 0 <= data <= 0xFFFF_FFFF:
            raise ValueError(f"data must be a 32-bit unsigned integer (got {data!r})")

    @staticmethod
    def _check_address(addr):
        if isinstance(addr, bool) or not isinstance(addr, int) or not 0 <= addr < 1 << 64:
            raise ValueError(f"addr must be a 64-bit byte address, 0..2**64-1 (got {addr!r})")

    @staticmethod
    def _check_rid(rid):
        if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= 0xFFFF:
            raise ValueError(f"rid must be a 16-bit Routing ID (got {rid!r})")

    def _check_vf_number(self, n):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.params.total_vfs:
            raise ValueError(f"VF number must be 1..TotalVFs ({self.params.total_vfs}) "
                             f"(got {n!r})")


class EndpointModel:
    """Pure-Python model of the whole endpoint: a device of one or more PFs, each with its VFs.

    Implements ``docs/endpoint-behaviour.md`` and, for several PFs, ``docs/multi-pf.md`` (§2-§4,
    §9, §11): routing of configuration requests (§1) over every PF and its VFs, and the decoding
    of memory requests over every PF's BARs and VF BARs, lowest PF first. Each PF is a
    :class:`PfModel`; the device holds what the PFs share:

    * the captured bus, taken from Type 0 config writes that reach any PF;
    * ARI Capable Hierarchy, one bit for the device: RW through PF 0's SR-IOV capability only
      (RsvdP in the others), ignored while VF Enable is set in any PF, followed by every PF's
      First VF Offset / VF Stride, and cleared by a conventional reset only (LINK scope: a PF FLR
      or D3hot -> D0 keeps it, for one PF too);
    * :attr:`events`, :attr:`messages` and the user handler.

    :meth:`route` asks every PF whether it or one of its VFs takes a Routing ID and raises if two
    do: an independent check of the parameters' rule that no two functions share a Routing ID.
    Every reset of PF k (FLR, D3hot -> D0, VF Enable clearing) resets PF k and its VFs only.

    With one PF the single-PF API is unchanged: :meth:`decode`, :meth:`decode_memory`,
    :attr:`pf_rid`, and every :class:`PfModel` attribute (``sriov``, ``command``, ...) reads
    through to PF 0. With several, those raise :class:`AttributeError` naming the per-PF form;
    the per-PF methods take ``pf=k`` (default 0).

    Parameters
    ----------
    params : sriov_ep.params.EndpointParams
        Device parameters.
    user : object or None
        Handler of the user configuration windows: ``read(function, window, dword) -> int`` and
        ``write(function, window, dword, be, data)`` (function 0 = PF, n = VF n; window = index in
        that PF's ``user_caps`` / ``vf_user_caps``; dword = dword index within the window); with
        several PFs both are called with the keyword ``pf=k`` as well. ``None``: reads 0, writes
        dropped (the endpoint's timeout behaviour). May be set later as :attr:`user`.

    Attributes
    ----------
    params : sriov_ep.params.EndpointParams
    pfs : list of PfModel
        The PFs, by PF index.
    ari : AriCapableHierarchy
        The device's ARI Capable Hierarchy bit (``ari.value``).
    captured_bus : int
        Bus number captured from Type 0 config writes a PF claims (0 after conventional reset).
    events : list of tuple
        The PF index k is the last element of every event: ``("vf_flr", n, k)`` after an FLR of
        VF n of PF k; ``("vfs_reset", k)`` whenever all of PF k's VFs are reset by its VF Enable
        going from 1 to 0, by its FLR or by its D3hot -> D0 reset; ``("pm_reset", f, k)`` after a
        D3hot -> D0 reset of function f (0 = the PF) of PF k (a PF's is followed by its
        ``("vfs_reset", k)``). Never cleared by the model.
    messages : list of tuple
        MSI-X messages sent, in order: ``(function, address, data, k)`` with function 0 = PF k,
        n = its VF n, ``address = upper << 32 | lower``. Never cleared by the model.
    """

    def __init__(self, params, user=None):
        self.params   = params
        self.user     = user
        self.events   = []
        self.messages = []
        self.captured_bus = 0
        self.ari = AriCapableHierarchy(
            lambda: any(pf.sriov.vf_enable for pf in self.__dict__.get("pfs", ())))
        self.pfs = []
        for k in range(len(params.pfs)):
            self.pfs.append(PfModel(self, k))
        self.reset()

    @property
    def num_pfs(self):
        return len(self.pfs)

    def __getattr__(self, name):
        # Only reached when normal lookup fails: a PfModel attribute read on the device.
        if name.startswith("__") or name == "pfs":
            raise AttributeError(name)
        pfs = self.__dict__.get("pfs", ())
        if len(pfs) == 1:
            return getattr(pfs[0], name)
        if hasattr(PfModel, name) or (pfs and name in pfs[0].__dict__):
            raise AttributeError(f"{name!r} is per PF and this device has {len(pfs)} PFs: use "
                                 f"model.pfs[k].{name}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        # With one PF, a PfModel field set on the device is set on PF 0 (``status_rw1c`` ...).
        pfs = self.__dict__.get("pfs", ())
        if len(pfs) == 1 and name not in self.__dict__ and name in pfs[0].__dict__:
            setattr(pfs[0], name, value)
        else:
            object.__setattr__(self, name, value)

    def _single(self, name, instead):
        if len(self.pfs) != 1:
            raise AttributeError(f"{name} is for a single-PF device and this one has "
                                 f"{len(self.pfs)} PFs: use {instead}")
        return self.pfs[0]

    def pf(self, k):
        """PF ``k``'s model."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self.pfs):
            raise ValueError(f"pf must be a PF index 0..{len(self.pfs) - 1} (got {k!r})")
        return self.pfs[k]

    # -- Resets ----------------------------------------------------------------------------------

    def reset(self):
        """Apply a conventional reset: every PF and VF, the captured bus and the ARI bit.

        MSI-X Message Address/Data keep their values (no reset clears them). Appends nothing to
        :attr:`events` / :attr:`messages` and clears neither.
        """
        self.captured_bus = 0
        self.ari.value = False
        for pf in self.pfs:
            pf.reset()

    @property
    def ari_capable_hierarchy(self):
        """The device's ARI Capable Hierarchy bit."""
        return self.ari.value

    # -- Routing (§1) ----------------------------------------------------------------------------

    def route(self, type1, rid):
        """Find the function a config request with target ``rid`` reaches. No side effects.

        Parameters
        ----------
        type1 : bool
            Type 1 (True) or Type 0 (False) configuration request.
        rid : int
            Target Routing ID: bus in bits 15:8, device/function in bits 7:0.

        Returns
        -------
        tuple
            ``("PF", k, 0)`` for PF k, ``("VF", k, n)`` for VF n (1-based) of PF k, or
            ``(None, 0, 0)`` (no function: UR).

        Raises
        ------
        AssertionError
            Two PFs (or a PF and another PF's VF) take the same Routing ID: the parameters' rule
            that keeps functions apart has failed.
        """
        PfModel._check_rid(rid)
        # Every PF's claim (PfModel.claim), written out here: this runs for every config
        # request, on every PF.
        bus = self.captured_bus                 # each PF's captured_bus (the device's)
        if type1 and rid >> 8 == bus:
            return (None, 0, 0)                 # a Type 1 request for the device's own bus
        claims = []
        for pf in self.pfs:
            if type1:
                target = rid
            elif rid & 0xFF == pf.pf_fn:
                claims.append(("PF", pf.index, 0))
                continue
            else:
                target = bus << 8 | (rid & 0xFF)
            sriov = pf.sriov
            if not sriov.vf_enable:
                continue
            stride = sriov.vf_stride
            d = target - ((bus << 8 | pf.pf_fn) + sriov.first_vf_offset)
            if d < 0:
                continue
            if stride == 0:                     # only with TotalVFs 1: d 0 is VF 1
                if d != 0:
                    continue
                n = 1
            elif d % stride != 0:
                continue
            else:
                n = d // stride + 1
            if n <= sriov.num_vfs:
                claims.append(("VF", pf.index, n))
        if len(claims) > 1:
            raise AssertionError(f"Routing ID {rid:#06x} (Type {int(bool(type1))}) is taken by "
                                 f"several functions: {claims}")
        return claims[0] if claims else (None, 0, 0)

    def decode(self, type1, rid):
        """Single-PF form of :meth:`route`: ``("PF", 0)``, ``("VF", n)`` or ``(None, 0)``."""
        self._single("decode", "route(type1, rid)")
        kind, _, n = self.route(type1, rid)
        return (kind, n)

    @property
    def pf_rid(self):
        """The PF's current Routing ID (single PF; else ``pfs[k].pf_rid``)."""
        return self._single("pf_rid", "model.pfs[k].pf_rid").pf_rid

    def vf_rid(self, n, pf=0):
        """Routing ID VF ``n`` of PF ``pf`` has with the current offset and stride, or ``None``
        if it does not fit in 16 bits."""
        return self.pf(pf).vf_rid(n)

    # -- Config requests (§1, §2) ----------------------------------------------------------------

    def config(self, type1, rid, reg, be, write, data):
        """Process one configuration request and return its completion.

        Parameters
        ----------
        type1 : bool
            Type 1 (True) or Type 0 (False).
        rid : int
            Target Routing ID.
        reg : int
            Dword register number 0..1023 (byte offset // 4).
        be : int
            4-bit byte enables; bit i enables byte i (bits 8i+7:8i of ``data``).
        write : bool
            Write (True) or read (False).
        data : int
            32-bit write data (ignored for reads).

        Returns
        -------
        tuple
            ``(status, data32)``: status ``"SC"`` or ``"UR"``; a successful read returns the
            dword, a write or a UR returns 0.
        """
        PfModel._check_reg(reg)
        PfModel._check_be(be)
        PfModel._check_data(data)
        # Routing uses the state before the request (in particular the old captured bus).
        kind, k, n = self.route(type1, rid)
        if kind is None:
            # Nothing reached: UR, nothing changes, no bus capture.
            return ("UR", 0)
        return self.pfs[k]._config(kind, n, rid, reg, be, write, data)

    def pf_read(self, reg, pf=0):
        """Read dword register ``reg`` of PF ``pf``'s configuration space (no routing)."""
        return self.pf(pf).pf_read(reg)

    def vf_read(self, n, reg, pf=0):
        """Read dword register ``reg`` of VF ``n`` of PF ``pf`` (no routing)."""
        return self.pf(pf).vf_read(n, reg)

    def vf_state(self, n, pf=0):
        """The RW state of VF ``n`` of PF ``pf`` (see :meth:`PfModel.vf_state`)."""
        return self.pf(pf).vf_state(n)

    def power_state(self, function, pf=0):
        """PowerState of ``function`` (0 = the PF, n = VF n) of PF ``pf``."""
        return self.pf(pf).power_state(function)

    def msix_table_size(self, function, pf=0):
        """Current vector count of ``function``'s MSI-X table in PF ``pf``."""
        return self.pf(pf).msix_table_size(function)

    def function_state(self, function, pf=0):
        """PM / MSI-X snapshot of ``function`` of PF ``pf`` (see :meth:`PfModel.function_state`)."""
        return self.pf(pf).function_state(function)

    # -- Interrupts ------------------------------------------------------------------------------

    def interrupt(self, function, vector, pf=0):
        """Request MSI-X vector ``vector`` of ``function`` (0 = the PF, n = VF n) of PF ``pf``.

        Returns ``"dropped"``, ``"sent"`` (a message was appended to :attr:`messages`) or
        ``"pending"``; see :meth:`PfModel.interrupt`.
        """
        return self.pf(pf).interrupt(function, vector)

    def unsupported_request(self, pf=0, vf=0):
        """The endpoint's ``urd`` event: Unsupported Request Detected in PF ``pf`` (``vf`` 0;
        see :meth:`PfModel.unsupported_request`)."""
        return self.pf(pf).unsupported_request(vf)

    def set_vf_msix_count(self, vf, count, pf=0):
        """Set VF ``vf`` of PF ``pf``'s MSI-X Table Size (see :meth:`PfModel.set_vf_msix_count`)."""
        return self.pf(pf).set_vf_msix_count(vf, count)

    # -- Memory requests (§5) --------------------------------------------------------------------

    def route_memory(self, addr):
        """Find the PF, function and BAR a memory request to byte address ``addr`` reaches.

        Every PF's BARs and VF BARs, lowest PF first (within a PF: PF BARs, then VF BARs, in
        parameter order); the first match wins (only BARs software programmed to overlap can
        match twice). No side effects.

        Returns
        -------
        tuple
            ``(claimed, k, function, bar, offset)``: ``k`` the PF index, ``function`` 0 for the
            PF and ``n`` for its VF n; ``(False, 0, 0, 0, 0)`` when nothing claims the address.
        """
        PfModel._check_address(addr)
        for pf in self.pfs:
            claimed, function, bar, offset = pf.decode_memory(addr)
            if claimed:
                return (True, pf.index, function, bar, offset)
        return (False, 0, 0, 0, 0)

    def decode_memory(self, addr):
        """Single-PF form of :meth:`route_memory`: ``(claimed, function, bar, offset)``."""
        return self._single("decode_memory", "route_memory(addr)").decode_memory(addr)

    def memory(self, addr, write, data=0, be=0xFF):
        """Process one memory request: decode it, and serve MSI-X table/PBA accesses.

        Parameters
        ----------
        addr : int
            64-bit byte address; the request is decoded by it (its first byte).
        write : bool
            Write (True) or read (False).
        data : int
            For a write: the aligned QWORD's new bytes (byte i at bits 8i+7:8i), 64 bits.
        be : int
            8 byte enables of the aligned QWORD containing ``addr`` (0x0F low dword, 0xF0 high
            dword, 0xFF QWORD). Used for table writes; reads return the whole QWORD.

        Returns
        -------
        MemoryResult
            ``claimed`` for the user's logic, or ``internal`` for the MSI-X table or PBA of the
            decoded function (then a read's ``data`` is the aligned QWORD), or neither (UR);
            ``pf`` names the PF.
        """
        PfModel._check_address(addr)
        if isinstance(data, bool) or not isinstance(data, int) or not 0 <= data < 1 << 64:
            raise ValueError(f"data must be a 64-bit unsigned integer (got {data!r})")
        if isinstance(be, bool) or not isinstance(be, int) or not 0 <= be <= 0xFF:
            raise ValueError(f"be must be 8 byte enables, 0..0xff (got {be!r})")
        claimed, k, function, bar, offset = self.route_memory(addr)
        if not claimed:
            return MemoryResult(False, False, False, 0, 0, 0, 0)
        return self.pfs[k]._memory(function, bar, offset, write, data, be)

    # -- User configuration windows --------------------------------------------------------------

    def _user_read(self, k, function, window, dword):
        if self.user is None:
            return 0
        if len(self.pfs) == 1:
            return self.user.read(function, window, dword)
        return self.user.read(function, window, dword, pf=k)

    def _user_write(self, k, function, window, dword, be, data):
        if self.user is None:
            return
        if len(self.pfs) == 1:
            self.user.write(function, window, dword, be, data)
        else:
            self.user.write(function, window, dword, be, data, pf=k)
