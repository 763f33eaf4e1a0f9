"""What the Linux PCI core does to an SR-IOV PF, access by access.

The sequences follow drivers/pci/iov.c (sriov_init, compute_max_vf_buses, sriov_enable,
sriov_disable, sriov_restore_state) as digested in sriov-spec.md §4: same registers, same access
widths, same order. Sleeps become nothing: the design must be ready at once.

The driver works on a :class:`sriov_tb.cfg.ConfigSpace` addressed with absolute PF config
offsets; ``cap`` is the SR-IOV capability offset.
"""

from dataclasses import dataclass, field

__all__ = ["SriovError", "VfBarInfo", "SriovInfo", "LinuxSriovDriver"]

# SR-IOV capability registers (include/uapi/linux/pci_regs.h, PCI_SRIOV_*).
SRIOV_CAP       = 0x04
SRIOV_CTRL      = 0x08
SRIOV_STATUS    = 0x0a
SRIOV_INITIAL_VF = 0x0c
SRIOV_TOTAL_VF  = 0x0e
SRIOV_NUM_VF    = 0x10
SRIOV_FUNC_LINK = 0x12
SRIOV_VF_OFFSET = 0x14
SRIOV_VF_STRIDE = 0x16
SRIOV_VF_DID    = 0x1a
SRIOV_SUP_PGSIZE = 0x1c
SRIOV_SYS_PGSIZE = 0x20
SRIOV_BAR       = 0x24

CTRL_VFE = 0x01
CTRL_VFM = 0x02
CTRL_MSE = 0x08
CTRL_ARI = 0x10
CAP_VFM  = 0x01


class SriovError(Exception):
    """Linux would fail here; ``errno`` is the name of the error it returns."""

    def __init__(self, errno, message):
        self.errno = errno
        super().__init__(f"{errno}: {message}")


@dataclass
class VfBarInfo:
    """A VF BAR as Linux sizes it."""
    index:        int
    size:         int
    is_64bit:     bool
    prefetchable: bool


@dataclass
class SriovInfo:
    """What sriov_init learns and caches (struct pci_sriov)."""
    ctrl:         int = 0
    total_vfs:    int = 0
    initial_vfs:  int = 0
    num_vfs:      int = 0
    offset:       int = 0
    stride:       int = 0
    pgsz:         int = 0
    vf_device:    int = 0
    cap:          int = 0
    link:         int = 0
    max_vf_buses: int = 0
    bars:         list = field(default_factory=list)
    #: (nr, offset, stride) seen during compute_max_vf_buses, for tests.
    offsets_seen: list = field(default_factory=list)


class LinuxSriovDriver:
    """The Linux PCI core's handling of one SR-IOV PF.

    Parameters
    ----------
    cfg : ConfigSpace
        Config accesses to the PF, absolute offsets.
    cap : int
        Offset of the SR-IOV capability.
    pf_rid : int
        The PF's Routing ID (bus << 8 | devfn).
    ari : bool
        sriov_init sets ARI Capable Hierarchy: the bus is ARI-enabled (pci_configure_ari found
        ARI Forwarding in the bridge and an ARI capability in function 0) and no PF on the bus
        ran sriov_init before this one (a later PF writes 0 there: RsvdP in it).
    page_size : int
        The kernel's PAGE_SIZE.
    bus_limit : int
        The parent bridge's subordinate bus number: VFs above it cannot be enabled.

    Attributes
    ----------
    pf_functions : set of int or None
        Function numbers of the PFs on the bus, which Function Dependency Link may name
        (sriov_enable: pci_get_slot and is_physfn); None: only this PF's own.
    """

    def __init__(self, cfg, cap, *, pf_rid=0x0100, ari=True, page_size=4096, bus_limit=0xff):
        self.cfg       = cfg
        self.cap       = cap
        self.pf_rid    = pf_rid
        self.ari       = ari
        self.page_size = page_size
        self.bus_limit = bus_limit
        self.info      = None
        self.enabled   = 0
        self.pf_functions = None
        #: Base addresses Linux assigned to the VF BARs, by BAR index.
        self.bar_addresses = {}

    async def _r16(self, reg):
        return await self.cfg.read16(self.cap + reg)

    async def _w16(self, reg, value):
        await self.cfg.write16(self.cap + reg, value)

    def _vf_bus(self, offset, stride, vf_id):
        return (self.pf_rid >> 8) + (((self.pf_rid & 0xff) + offset + stride * vf_id) >> 8)

    async def _set_numvfs(self, nr):
        """pci_iov_set_numvfs: write NumVFs, re-read offset and stride (they may change)."""
        await self._w16(SRIOV_NUM_VF, nr)
        self.info.offset = await self._r16(SRIOV_VF_OFFSET)
        self.info.stride = await self._r16(SRIOV_VF_STRIDE)

    async def _size_bars(self):
        """__pci_size_bars over the six VF BAR dwords, then __pci_read_base's decoding."""
        orig, mask = [], []
        for i in range(6):
            reg = self.cap + SRIOV_BAR + 4 * i
            orig.append(await self.cfg.read32(reg))
            await self.cfg.write32(reg, 0xffff_ffff)
            mask.append(await self.cfg.read32(reg))
            await self.cfg.write32(reg, orig[-1])
        bars, i = [], 0
        while i < 6:
            low, sz = orig[i], mask[i]
            if sz == 0xffff_ffff:
                sz = 0
            if low == 0xffff_ffff:
                low = 0
            is_64 = (low & 0x6) == 0x4
            if is_64 and i < 5:
                sz |= mask[i + 1] << 32
            size_mask = sz & ~0xf
            size = size_mask & -size_mask
            if size:
                bars.append(VfBarInfo(i, size, is_64, bool(low & 0x8)))
            i += 2 if is_64 else 1
        return bars

    async def init(self):
        """sriov_init: run once at enumeration. Returns the cached :class:`SriovInfo`."""
        ctrl = await self._r16(SRIOV_CTRL)
        if ctrl & CTRL_VFE:
            await self._w16(SRIOV_CTRL, 0)
        ctrl = CTRL_ARI if self.ari else 0
        await self._w16(SRIOV_CTRL, ctrl)

        total = await self._r16(SRIOV_TOTAL_VF)
        if not total:
            raise SriovError("ENODEV", "TotalVFs is 0: not an SR-IOV PF")

        supported = await self.cfg.read32(self.cap + SRIOV_SUP_PGSIZE)
        supported &= ~((self.page_size >> 12) - 1) & 0xffff_ffff
        if not supported:
            raise SriovError("EIO", f"no supported page size >= {self.page_size}")
        pgsz = supported & -supported
        await self.cfg.write32(self.cap + SRIOV_SYS_PGSIZE, pgsz)

        bars = await self._size_bars()
        for bar in bars:
            if bar.size % self.page_size:
                raise SriovError("EIO", f"VF BAR{bar.index} size {bar.size:#x} is not a "
                                        f"multiple of PAGE_SIZE")

        self.info = info = SriovInfo(ctrl=ctrl, total_vfs=total, pgsz=pgsz, bars=bars)
        info.vf_device = await self._r16(SRIOV_VF_DID)
        info.cap = await self.cfg.read32(self.cap + SRIOV_CAP)
        info.link = await self.cfg.read8(self.cap + SRIOV_FUNC_LINK)

        # compute_max_vf_buses: offset and stride may depend on NumVFs.
        for nr in range(total, 0, -1):
            await self._set_numvfs(nr)
            info.offsets_seen.append((nr, info.offset, info.stride))
            if not info.offset or (nr > 1 and not info.stride):
                raise SriovError("EIO", f"NumVFs {nr}: First VF Offset {info.offset}, "
                                        f"VF Stride {info.stride}")
            info.max_vf_buses = max(info.max_vf_buses,
                                    self._vf_bus(info.offset, info.stride, nr - 1))
        await self._set_numvfs(0)
        return info

    async def assign_bars(self, addresses):
        """pci_iov_update_resource for each VF BAR: low dword (address | flags), then high."""
        for bar in self.info.bars:
            address = addresses[bar.index]
            if address % bar.size:
                raise ValueError(f"VF BAR{bar.index} address {address:#x} is not aligned")
            flags = (0x4 if bar.is_64bit else 0) | (0x8 if bar.prefetchable else 0)
            reg = self.cap + SRIOV_BAR + 4 * bar.index
            await self.cfg.write32(reg, (address & 0xffff_fff0) | flags)
            if bar.is_64bit:
                await self.cfg.write32(reg + 4, address >> 32)
            self.bar_addresses[bar.index] = address

    async def enable(self, nr):
        """sriov_enable(nr): returns the Routing IDs of the VFs Linux creates."""
        info = self.info
        if nr == 0:
            return []
        if self.enabled:
            raise SriovError("EINVAL", "VFs already enabled")
        initial = await self._r16(SRIOV_INITIAL_VF)
        if initial > info.total_vfs or (not info.cap & CAP_VFM and initial != info.total_vfs):
            raise SriovError("EIO", f"InitialVFs {initial}, TotalVFs {info.total_vfs}")
        if nr > info.total_vfs or (not info.cap & CAP_VFM and nr > initial):
            raise SriovError("EINVAL", f"cannot enable {nr} VFs")
        for bar in info.bars:
            if bar.index not in self.bar_addresses:
                raise SriovError("ENOMEM", "not enough MMIO resources for SR-IOV")
        last_bus = self._vf_bus(info.offset, info.stride, nr - 1)
        if last_bus > self.bus_limit:
            raise SriovError("ENOMEM", f"can't enable {nr} VFs (bus {last_bus:02x} out of range)")
        if info.link != self.pf_rid & 0xff and info.link not in (self.pf_functions or ()):
            raise SriovError("ENODEV", f"Function Dependency Link {info.link:#x} names another "
                                       f"function")
        await self._set_numvfs(nr)
        info.num_vfs = nr
        info.ctrl |= CTRL_VFE | CTRL_MSE
        await self._w16(SRIOV_CTRL, info.ctrl)
        self.enabled = nr
        return [self.vf_rid(vf_id) for vf_id in range(min(nr, initial))]

    def vf_rid(self, vf_id):
        """Routing ID of VF ``vf_id`` (0-based, as Linux counts) with the cached offset/stride."""
        return (self.pf_rid + self.info.offset + self.info.stride * vf_id) & 0xffff

    async def disable(self):
        """sriov_disable: clear VF Enable and VF MSE (ARI kept), then NumVFs = 0."""
        if not self.enabled:
            return
        self.info.ctrl &= ~(CTRL_VFE | CTRL_MSE)
        await self._w16(SRIOV_CTRL, self.info.ctrl)
        await self._set_numvfs(0)
        self.info.num_vfs = 0
        self.enabled = 0

    async def restore(self):
        """sriov_restore_state after a reset: ARI first, BARs, page size, NumVFs, Control."""
        info = self.info
        ctrl = await self._r16(SRIOV_CTRL)
        if ctrl & CTRL_VFE:
            return
        await self._w16(SRIOV_CTRL, info.ctrl & CTRL_ARI)
        for bar in info.bars:
            if bar.index in self.bar_addresses:
                address = self.bar_addresses[bar.index]
                flags = (0x4 if bar.is_64bit else 0) | (0x8 if bar.prefetchable else 0)
                reg = self.cap + SRIOV_BAR + 4 * bar.index
                await self.cfg.write32(reg, (address & 0xffff_fff0) | flags)
                if bar.is_64bit:
                    await self.cfg.write32(reg + 4, address >> 32)
        await self.cfg.write32(self.cap + SRIOV_SYS_PGSIZE, info.pgsz)
        await self._set_numvfs(info.num_vfs)
        await self._w16(SRIOV_CTRL, info.ctrl)
