"""The host side: endpoint port drivers, a scoreboard, a root port and a Linux-like host.

Layers, bottom up:

* an *endpoint port* has ``async config(type1, rid, reg, be, write, data)`` returning a
  :class:`Completion` record: :class:`EndpointDriver` drives the RTL's channels in an Amaranth
  testbench, :class:`ModelEndpointPort` asks the reference model, :class:`Scoreboard` does both
  and compares every completion;
* :class:`RootPort` turns accesses to a BDF into Type 0 (the endpoint's bus) or Type 1 (buses
  beyond it) requests, records a transcript, and hands out per-function :class:`ConfigSpace`
  objects for 1/2/4-byte accesses;
* :class:`LinuxHost` enumerates the PF as Linux does, assigns BARs, and drives
  :class:`LinuxSriovDriver` (enable, disable, restore) and the VF walk.
"""

from dataclasses import dataclass, field

from sriov_ep.endpoint import CompletionStatus
from sriov_ep.params import format_bdf

from .cfg import ConfigSpace, Mismatch
from .linux import LinuxSriovDriver

__all__ = ["Completion", "stream_transaction", "EndpointDriver", "ModelEndpointPort",
           "Scoreboard", "RootPort",
           "MemDecodeResult", "decode_result", "MemoryDriver", "MemTransaction", "BarMemories",
           "MemoryPort",
           "Transaction", "LinuxHost", "HostError"]


@dataclass(frozen=True)
class Completion:
    status: str             # "SC" or "UR"
    data:   int
    cycles: int | None = None


async def stream_transaction(ctx, req, res, payload, *, timeout, what="request"):
    """Send ``payload`` on stream ``req``, then take one payload from stream ``res``.

    Returns ``(payload, cycles)``: ``cycles`` counts clock edges from the one that accepted the
    request to the one that transferred the response (``res.ready`` is held high).
    """
    ctx.set(req.payload, payload)
    ctx.set(req.valid, 1)
    ctx.set(res.ready, 1)
    waited = 0
    while True:
        _, _, ready = await ctx.tick().sample(req.ready)
        if ready:
            break
        waited += 1
        if waited > timeout:
            raise TimeoutError(f"{what} not accepted after {timeout} cycles")
    ctx.set(req.valid, 0)
    cycles = 0
    while True:
        cycles += 1
        _, _, valid, response = await ctx.tick().sample(res.valid, res.payload)
        if valid:
            break
        if cycles > timeout:
            raise TimeoutError(f"no response to the {what} after {timeout} cycles")
    ctx.set(res.ready, 0)
    return response, cycles


class EndpointDriver:
    """Drive :class:`sriov_ep.SriovEndpoint`'s config channels from an Amaranth testbench.

    ``cycles`` of a completion counts clock edges from the one that accepted the request to the
    one that transferred the completion (``cfg_cpl.ready`` is held high).
    """

    def __init__(self, ctx, dut, *, timeout=1_000_000):
        self.ctx     = ctx
        self.dut     = dut
        self.timeout = timeout

    async def config(self, type1, rid, reg, be, write, data):
        payload, cycles = await stream_transaction(
            self.ctx, self.dut.cfg_req, self.dut.cfg_cpl,
            {"type1": type1, "rid": rid, "reg": reg, "be": be, "write": write, "data": data},
            timeout=self.timeout, what="config request")
        status = "SC" if payload.status == CompletionStatus.SC else "UR"
        return Completion(status, payload.data, cycles)


class ModelEndpointPort:
    """The reference model behind the same ``config`` call."""

    def __init__(self, model):
        self.model = model

    async def config(self, type1, rid, reg, be, write, data):
        status, value = self.model.config(type1, rid, reg, be, write, data)
        return Completion(status, value)


class Scoreboard:
    """Send every request to the design and the model; completions must match."""

    def __init__(self, dut, model):
        self.dut      = dut
        self.model    = model
        self.compared = 0

    async def config(self, type1, rid, reg, be, write, data):
        got = await self.dut.config(type1, rid, reg, be, write, data)
        expected = await self.model.config(type1, rid, reg, be, write, data)
        self.compared += 1
        if (got.status, got.data) != (expected.status, expected.data):
            kind = f"CfgWr{type1}" if write else f"CfgRd{type1}"
            raise Mismatch(f"{kind} {format_bdf(rid)} reg {reg:#x} (offset {4 * reg:#05x}) "
                           f"be {be:#x} data {data:#010x}: design {got.status} {got.data:#010x},"
                           f" model {expected.status} {expected.data:#010x}")
        return got


@dataclass
class Transaction:
    """One config transaction as the root port saw it."""
    op:     str             # "cfgrd" | "cfgwr"
    rid:    int
    offset: int             # byte offset of the access
    size:   int
    status: str
    value:  int             # read data (all ones on UR), or the value written
    cycles: int | None
    step:   str = ""        # what issued it (a script op, a Linux step)

    def as_dict(self):
        return {"op": self.op, "bdf": format_bdf(self.rid), "offset": self.offset,
                "size": self.size, "status": self.status, "value": self.value,
                "cycles": self.cycles, "step": self.step}

    def __str__(self):
        digits = 2 * self.size
        return (f"{self.op} {format_bdf(self.rid)} {self.offset:#05x} {self.size} "
                f"{self.status} 0x{self.value:0{digits}x}"
                + (f" {self.cycles} cycles" if self.cycles is not None else "")
                + (f"  [{self.step}]" if self.step else ""))


class HostError(Exception):
    """The host model cannot go on (e.g. an expected function is missing)."""


class _FunctionPort:
    """Dword port to one function through the root port (for :class:`ConfigSpace`)."""

    def __init__(self, root, rid):
        self.root = root
        self.rid  = rid

    async def read_dword(self, dword):
        cpl = await self.root.request(self.rid, dword, 0xf, False, 0)
        return cpl.data if cpl.status == "SC" else 0xffff_ffff

    async def write_dword(self, dword, data, byte_en):
        await self.root.request(self.rid, dword, byte_en, True, data)


@dataclass(frozen=True)
class MemDecodeResult:
    """Which function and BAR a memory request reached (``function`` 0 is the PF)."""
    claimed:  bool
    function: int
    bar:      int
    offset:   int
    cycles:   int | None = None

    def key(self):
        return (self.claimed, self.function, self.bar, self.offset)


def decode_result(res, addr, write, tag, cycles):
    """A :class:`MemDecodeResult` from a ``mem_res`` payload (anything with its field names as
    attributes), checked against the request it must answer."""
    if (res.addr, res.write, res.tag) != (addr, int(write), tag):
        raise Mismatch(f"decode result for {res.addr:#x} (tag {res.tag}) returned for the "
                       f"request at {addr:#x} (tag {tag})")
    if res.claimed and res.is_vf and res.vf == 0:
        raise Mismatch(f"decode of {addr:#x} claims VF 0")
    if not res.claimed:
        return MemDecodeResult(False, 0, 0, 0, cycles)
    return MemDecodeResult(True, res.vf if res.is_vf else 0, res.bar, res.offset, cycles)


class MemoryDriver:
    """Drive :class:`sriov_ep.SriovEndpoint`'s memory decode channels (``mem_req``/``mem_res``).

    ``cycles`` counts clock edges from the one accepting the request to the one transferring its
    result.
    """

    def __init__(self, ctx, dut, *, timeout=100_000):
        self.ctx     = ctx
        self.dut     = dut
        self.timeout = timeout
        self.tag     = 0

    async def decode(self, addr, write):
        self.tag = (self.tag + 1) % (1 << len(self.dut.mem_req.payload.tag))
        res, cycles = await stream_transaction(
            self.ctx, self.dut.mem_req, self.dut.mem_res,
            {"addr": addr, "write": write, "tag": self.tag},
            timeout=self.timeout, what="memory request")
        return decode_result(res, addr, write, self.tag, cycles)


class MemoryPort:
    """Decode on the design and on the model (``model.decode_memory``); they must agree."""

    def __init__(self, dut, model):
        self.dut      = dut
        self.model    = model
        self.compared = 0

    async def decode(self, addr, write):
        got = await self.dut.decode(addr, write)
        expected = MemDecodeResult(*self.model.decode_memory(addr))
        self.compared += 1
        if got.key() != expected.key():
            raise Mismatch(f"memory {'write' if write else 'read'} at {addr:#018x}: design "
                           f"{_describe(got)}, model {_describe(expected)}")
        return got


def _describe(result):
    if not result.claimed:
        return "not claimed"
    who = f"VF{result.function}" if result.function else "PF"
    return f"{who} BAR{result.bar} + {result.offset:#x}"


class BarMemories:
    """The user logic of a testbench: a sparse byte memory behind every (function, BAR)."""

    def __init__(self):
        self.mem = {}

    def write(self, function, bar, offset, size, value):
        store = self.mem.setdefault((function, bar), {})
        for i in range(size):
            store[offset + i] = (value >> (8 * i)) & 0xff

    def read(self, function, bar, offset, size):
        store = self.mem.get((function, bar), {})
        return sum(store.get(offset + i, 0) << (8 * i) for i in range(size))


@dataclass
class MemTransaction:
    """One memory transaction: its decode and the data."""
    op:       str           # "memrd" | "memwr"
    addr:     int
    size:     int
    status:   str           # "SC" when claimed, "UR" otherwise
    value:    int
    cycles:   int | None
    function: int | None    # 0 PF, n VF n, None unclaimed
    bar:      int | None
    offset:   int | None
    step:     str = ""

    def as_dict(self):
        return {"op": self.op, "addr": self.addr, "size": self.size, "status": self.status,
                "value": self.value, "cycles": self.cycles, "function": self.function,
                "bar": self.bar, "offset": self.offset, "step": self.step}

    def __str__(self):
        where = "-"
        if self.function is not None:
            who = f"VF{self.function}" if self.function else "PF"
            where = f"{who} BAR{self.bar}+{self.offset:#x}"
        return (f"{self.op} {self.addr:#018x} {self.size} {self.status} "
                f"0x{self.value:0{2 * self.size}x} {where}"
                + (f" {self.cycles} cycles" if self.cycles is not None else "")
                + (f"  [{self.step}]" if self.step else ""))


class RootPort:
    """A root port whose secondary bus is the endpoint's; higher buses are reached by Type 1.

    Every byte-level access made through :meth:`function` spaces is recorded in
    :attr:`transcript` (one :class:`Transaction` per access) and passed to ``on_transaction``.
    """

    def __init__(self, port, *, secondary_bus, on_transaction=None):
        self.port = port
        self.secondary_bus  = secondary_bus
        self.on_transaction = on_transaction
        self.transcript = []
        self.step = ""
        self._last = None

    async def request(self, rid, reg, be, write, data):
        type1 = (rid >> 8) != self.secondary_bus
        cpl = await self.port.config(type1, rid, reg, be, write, data)
        self._last = cpl
        return cpl

    def function(self, rid):
        return _RecordingSpace(self, rid)

    def record(self, txn):
        self.transcript.append(txn)
        if self.on_transaction is not None:
            self.on_transaction(txn)


class _RecordingSpace(ConfigSpace):
    """A :class:`ConfigSpace` on one BDF that records each access as a transaction."""

    def __init__(self, root, rid):
        super().__init__(_FunctionPort(root, rid))
        self.root = root
        self.rid  = rid

    async def read(self, offset, size):
        value = await super().read(offset, size)
        cpl = self.root._last
        self.root.record(Transaction("cfgrd", self.rid, offset, size, cpl.status, value,
                                     cpl.cycles, self.root.step))
        return value

    async def write(self, offset, size, value):
        await super().write(offset, size, value)
        cpl = self.root._last
        self.root.record(Transaction("cfgwr", self.rid, offset, size, cpl.status, value,
                                     cpl.cycles, self.root.step))

    async def status_of_read(self, offset, size):
        """Read and return ``(status, value)``."""
        value = await self.read(offset, size)
        return self.root._last.status, value


# -- Linux-like host --------------------------------------------------------------------------

PCI_COMMAND        = 0x04
PCI_COMMAND_MEMORY = 0x02
PCI_COMMAND_MASTER = 0x04
PCI_CAP_ID_EXP     = 0x10
PCI_EXT_CAP_ID_ARI = 0x000e
PCI_EXT_CAP_ID_SRIOV = 0x0010
PCI_EXP_DEVCAP     = 0x04
PCI_EXP_DEVCAP_FLR = 1 << 28
PCI_EXP_DEVCTL     = 0x08
PCI_EXP_DEVCTL_BCR_FLR = 0x8000


@dataclass
class FunctionInfo:
    """What enumeration learned about a function."""
    rid:      int
    vendor:   int = 0
    device:   int = 0
    caps:     dict = field(default_factory=dict)      # capability ID -> offset
    ext_caps: dict = field(default_factory=dict)      # extended capability ID -> offset
    bars:     dict = field(default_factory=dict)      # BAR index -> (address, size)


class LinuxHost:
    """Enumerate, enable, walk and reset an SR-IOV endpoint as Linux does.

    Parameters
    ----------
    root : RootPort
    pf_rid : int
        Where the PF is.
    ari : bool
        The root port has ARI Forwarding (Linux then sets ARI Capable Hierarchy).
    mmio32, mmio64 : int
        Start of the host's 32-bit and 64-bit prefetchable memory windows for BARs.
    """

    def __init__(self, root, pf_rid, *, ari=True, mmio32=0x8000_0000, mmio64=0x1_0000_0000,
                 page_size=4096):
        self.root   = root
        self.pf_rid = pf_rid
        self.ari    = ari
        self.page_size = page_size
        self._next32 = mmio32
        self._next64 = mmio64
        self.pf     = None
        self.sriov  = None
        self.vfs    = []

    def _alloc(self, size, is_64bit, align=None):
        """Bump allocation from the 32- or 64-bit window, aligned to ``align`` (default
        ``size``). Linux aligns a VF BAR's whole TotalVFs block to one VF's aperture."""
        attr = "_next64" if is_64bit else "_next32"
        align = align or size
        base = -(-getattr(self, attr) // align) * align
        setattr(self, attr, base + size)
        return base

    async def _walk_caps(self, space, info):
        status = await space.read16(0x06)
        if status & 0x10:
            ptr = await space.read8(0x34) & 0xfc
            seen = set()
            while ptr and ptr not in seen:
                seen.add(ptr)
                cap_id = await space.read8(ptr)
                info.caps.setdefault(cap_id, ptr)
                ptr = await space.read8(ptr + 1) & 0xfc
        if PCI_CAP_ID_EXP in info.caps:
            ptr, seen = 0x100, set()
            while ptr and ptr not in seen:
                seen.add(ptr)
                header = await space.read32(ptr)
                if header in (0, 0xffff_ffff):
                    break
                info.ext_caps.setdefault(header & 0xffff, ptr)
                ptr = (header >> 20) & 0xffc

    async def enumerate(self):
        """pci_scan_device + pci_setup_device + BAR sizing and assignment + pci_enable_device
        + sriov_init for the PF."""
        self.root.step = "enumerate"
        space = self.root.function(self.pf_rid)
        info = FunctionInfo(self.pf_rid)
        ident = await space.read32(0x00)
        if ident in (0xffff_ffff, 0) or ident & 0xffff == 0xffff:
            raise HostError(f"no function at {format_bdf(self.pf_rid)} (read {ident:#010x})")
        info.vendor, info.device = ident & 0xffff, ident >> 16
        await space.read32(0x08)
        header_type = await space.read8(0x0e)
        if header_type & 0x7f != 0:
            raise HostError(f"{format_bdf(self.pf_rid)}: header type {header_type:#x} is not 0")
        # Linux turns decoding off around BAR sizing.
        cmd = await space.read16(PCI_COMMAND)
        await space.write16(PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)
                            & 0xffff)
        slot = 0
        while slot < 6:
            reg = 0x10 + 4 * slot
            orig = await space.read32(reg)
            await space.write32(reg, 0xffff_ffff)
            mask = await space.read32(reg)
            await space.write32(reg, orig)
            is_64 = (orig & 0x7) == 0x4
            if is_64:
                orig_hi = await space.read32(reg + 4)
                await space.write32(reg + 4, 0xffff_ffff)
                mask |= await space.read32(reg + 4) << 32
                await space.write32(reg + 4, orig_hi)
            size_mask = (mask & ~0xf) if mask != 0xffff_ffff else 0
            size = size_mask & -size_mask
            if size:
                base = self._alloc(size, is_64 and bool(orig & 0x8))
                await space.write32(reg, (base & 0xffff_fff0) | (orig & 0xf))
                if is_64:
                    await space.write32(reg + 4, base >> 32)
                info.bars[slot] = (base, size)
            slot += 2 if is_64 else 1
        await self._walk_caps(space, info)
        await space.write16(PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)
        self.pf = info

        cap = info.ext_caps.get(PCI_EXT_CAP_ID_SRIOV)
        if cap is None:
            raise HostError(f"{format_bdf(self.pf_rid)} has no SR-IOV capability")
        self.root.step = "sriov_init"
        self.sriov = LinuxSriovDriver(space, cap, pf_rid=self.pf_rid, ari=self.ari,
                                      page_size=self.page_size)
        await self.sriov.init()
        # Resource assignment: room for TotalVFs VFs per VF BAR.
        addresses = {}
        for bar in self.sriov.info.bars:
            addresses[bar.index] = self._alloc(bar.size * self.sriov.info.total_vfs,
                                               bar.is_64bit and bar.prefetchable,
                                               align=bar.size)
        self.root.step = "assign VF BARs"
        await self.sriov.assign_bars(addresses)
        self.root.step = ""
        return info

    async def enable(self, nr):
        """``echo nr > sriov_numvfs``: sriov_enable, then the first accesses to each VF."""
        if self.sriov is None:
            await self.enumerate()
        self.root.step = f"enable {nr}"
        rids = await self.sriov.enable(nr)
        self.vfs = []
        for vf_id, rid in enumerate(rids):
            self.vfs.append(await self.setup_vf(rid, first=vf_id == 0))
        self.root.step = ""
        return rids

    async def setup_vf(self, rid, *, first=False):
        """pci_iov_add_virtfn + pci_setup_device on a VF: ID dword, class, header type,
        subsystem (VF 0 only), capability walk."""
        space = self.root.function(rid)
        info = FunctionInfo(rid)
        status, ident = await space.status_of_read(0x00, 4)
        if status != "SC":
            raise HostError(f"VF {format_bdf(rid)} did not answer (UR)")
        if first:
            await space.read32(0x08)
            await space.read8(0x0e)
            await space.read16(0x2c)
            await space.read16(0x2e)
        await self._walk_caps(space, info)
        return info

    async def walk_vf(self, rid):
        """Read a VF's whole header, capability list and PCIe capability (lspci -vvv)."""
        self.root.step = f"walk {format_bdf(rid)}"
        space = self.root.function(rid)
        for offset in range(0, 0x40, 4):
            await space.read32(offset)
        info = FunctionInfo(rid)
        await self._walk_caps(space, info)
        pcie = info.caps.get(PCI_CAP_ID_EXP)
        if pcie is None:
            raise HostError(f"VF {format_bdf(rid)} has no PCI Express capability")
        for offset in range(pcie, pcie + 0x3c, 4):
            await space.read32(offset)
        self.root.step = ""
        return info

    async def disable(self):
        self.root.step = "disable"
        await self.sriov.disable()
        self.vfs = []
        self.root.step = ""

    async def flr(self, rid):
        """pcie_flr: set Initiate FLR in Device Control (read-modify-write)."""
        self.root.step = f"flr {format_bdf(rid)}"
        space = self.root.function(rid)
        caps = FunctionInfo(rid)
        await self._walk_caps(space, caps)
        pcie = caps.caps.get(PCI_CAP_ID_EXP)
        if pcie is None:
            raise HostError(f"{format_bdf(rid)} has no PCI Express capability")
        devcap = await space.read32(pcie + PCI_EXP_DEVCAP)
        if not devcap & PCI_EXP_DEVCAP_FLR:
            raise HostError(f"{format_bdf(rid)} is not FLR capable")
        is_pf = rid == self.pf_rid
        if is_pf:       # pci_reset_function saves the state it will restore
            saved_cmd = await space.read16(PCI_COMMAND)
        devctl = await space.read16(pcie + PCI_EXP_DEVCTL)
        await space.write16(pcie + PCI_EXP_DEVCTL, devctl | PCI_EXP_DEVCTL_BCR_FLR)
        if is_pf and self.pf is not None:
            self.root.step = f"restore {format_bdf(rid)}"
            for slot, (base, _size) in self.pf.bars.items():
                orig = await space.read32(0x10 + 4 * slot)
                await space.write32(0x10 + 4 * slot, (base & 0xffff_fff0) | (orig & 0xf))
                if (orig & 0x7) == 0x4:
                    await space.write32(0x14 + 4 * slot, base >> 32)
            await space.write16(PCI_COMMAND, saved_cmd)
            if self.sriov is not None:
                await self.sriov.restore()
        self.root.step = ""
