"""cocotbext-pcie's RootComplex against the exported Verilog of the TLP wrapper.

:class:`TlpAdapter` is a :class:`cocotbext.pcie.core.Device` that only passes TLPs: those the
root complex sends down are packed into beats of the wrapper's ``rx`` stream (through
:mod:`sriov_tb.tlp`: cocotbext's bytes, our beats); every TLP the wrapper gives on ``tx`` is
parsed and sent up unchanged. It builds no completion, captures no bus number and knows no
Routing ID: the endpoint does all of that. :class:`UserMemories` plays the user logic behind
``req``/``cpl``: a byte memory per (PF, VF, BAR), reads answered with one CplD whose Completer
ID the wrapper stamps.

:func:`run_bringup` (the cocotb test that ``tests/test_tlp_cocotbext.py`` runs) enumerates the
PF with cocotbext's enumerator, then brings SR-IOV up as Linux does (drivers/pci/iov.c), reads
every VF's configuration space and compares it with :class:`sriov_tb.model.EndpointModel`,
does MMIO to several VFs' BARs, and checks isolation and UR past NumVFs. See docs/tlp-host.md.

Port names are those of :func:`sriov_ep.tools.export.to_verilog`: ``rx__payload``,
``rx__valid``, ``rx__ready``, ... each payload one vector packed as the wrapper's layouts
(:func:`sriov_tb.cocotb_bench.pack`).
"""

import json
import os

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotbext.pcie.core import Device
from cocotbext.pcie.core.tlp import Tlp as ExtTlp

from .cocotb_bench import _StreamPorts, pack, start_clock, unpack
from .tlp import Tlp

__all__ = ["TlpAdapter", "UserMemories", "reset_wrapper", "JOB_ENV"]

#: Environment variable naming the JSON job of :func:`run_bringup`.
JOB_ENV = "SRIOV_EP_TLP_JOB"


def _layouts(width):
    from sriov_ep.tlp import TlpBeat, TlpRequest, TlpSource
    return TlpBeat(width), TlpRequest(width), TlpSource(width)


async def reset_wrapper(dut, cycles=4):
    """Hold ``rst`` with every input stream idle; return just after a rising edge."""
    for name in ("rx__valid", "tx__ready", "req__ready", "cpl__valid", "dma_wr__valid",
                 "dma_rd__valid", "irq__valid", "vf_msix_size__valid", "ucfg_req__ready",
                 "ucfg_res__valid"):
        if hasattr(dut, name):
            getattr(dut, name).value = 0
    if hasattr(dut, "tx_np_ok"):
        dut.tx_np_ok.value = 1
    if hasattr(dut, "rx_cpl__ready"):
        dut.rx_cpl__ready.value = 1        # no DMA here: take any completion delivered
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles, rising=True)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


class TlpAdapter(Device):
    """Passes TLPs between cocotbext-pcie's link and the wrapper's ``rx``/``tx``."""

    def __init__(self, dut, data_width, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dut = dut
        self.width = data_width
        self.beat_layout, _, _ = _layouts(data_width)
        self.rx = _StreamPorts(dut, "rx")
        self.tx = _StreamPorts(dut, "tx")
        self.down = Queue()
        self.up = Queue()
        self.sent_down = []
        self.sent_up = []
        cocotb.start_soon(self._drive_rx())
        cocotb.start_soon(self._watch_tx())
        cocotb.start_soon(self._send_up())

    async def upstream_recv(self, tlp):
        """A TLP from the root complex: to the wrapper's ``rx``, as it is."""
        raw = bytes(tlp.pack())
        tlp.release_fc()
        self.sent_down.append(raw)
        await self.down.put(Tlp.from_bytes(raw))

    async def _drive_rx(self):
        clk = self.dut.clk
        self.rx.valid.value = 0
        while True:
            tlp = await self.down.get()
            # Inputs change just after a rising edge only (the TLP may have come mid-cycle,
            # when a completion was seen at a falling edge): else the edge before the first
            # falling edge looked at would take the beat unseen, and then again.
            await RisingEdge(clk)
            for beat in tlp.beats(self.width):
                self.rx.payload.value = pack(self.beat_layout, beat)
                self.rx.valid.value = 1
                while True:
                    await FallingEdge(clk)
                    ready = int(self.rx.ready.value)
                    await RisingEdge(clk)
                    if ready:
                        break
            self.rx.valid.value = 0

    async def _watch_tx(self):
        clk = self.dut.clk
        self.tx.ready.value = 1
        beats = []
        while True:
            await FallingEdge(clk)
            if int(self.tx.valid.value):
                b = unpack(self.beat_layout, self.tx.payload.value)
                beats.append({"hdr": b.hdr, "data": b.data, "strb": b.strb, "sop": b.sop,
                              "eop": b.eop})
                if b.eop:
                    raw = Tlp.from_beats(beats).to_bytes()
                    beats = []
                    self.sent_up.append(raw)
                    self.up.put_nowait(raw)
            await RisingEdge(clk)

    async def _send_up(self):
        """TLPs from ``tx`` to the root complex, in the order they came."""
        while True:
            raw = await self.up.get()
            await self.upstream_send(ExtTlp.unpack(bytearray(raw)))


class UserMemories:
    """The user logic: a byte memory per ``(pf, vf, bar)`` behind ``req``, reads answered on
    ``cpl`` (Completer ID 0 in the header: the wrapper stamps it from ``func``)."""

    def __init__(self, dut, data_width):
        self.dut = dut
        self.width = data_width
        _, self.req_layout, self.src_layout = _layouts(data_width)
        self.req = _StreamPorts(dut, "req")
        self.cpl = _StreamPorts(dut, "cpl")
        self.mem = {}
        self.seen = []          # (Tlp, (pf, vf, bar), offset)
        self._out = Queue()
        cocotb.start_soon(self._take())
        cocotb.start_soon(self._give())

    async def _take(self):
        from . import tlp as T
        clk = self.dut.clk
        self.req.ready.value = 1
        beats = []
        while True:
            await FallingEdge(clk)
            if int(self.req.valid.value):
                b = unpack(self.req_layout, self.req.payload.value)
                beats.append({"hdr": b.hdr, "data": b.data, "strb": b.strb, "sop": b.sop,
                              "eop": b.eop})
                if b.eop:
                    tlp = Tlp.from_beats(beats)
                    beats = []
                    key = (b.func.pf, b.func.vf, b.bar_id)
                    self.seen.append((tlp, key, b.offset))
                    store = self.mem.setdefault(key, {})
                    if tlp.type.has_data:
                        for i in range(tlp.length):
                            be = tlp.first_be if i == 0 else \
                                (tlp.last_be if i == tlp.length - 1 else 0xF)
                            for k in range(4):
                                if be >> k & 1:
                                    store[b.offset + 4 * i + k] = tlp.data[4 * i + k]
                    else:
                        first = T.read_lower_address(0, tlp.first_be) & 3
                        n = T.read_byte_count(tlp.length, tlp.first_be, tlp.last_be)
                        raw = bytes(store.get(b.offset + first + k, 0) for k in range(n))
                        cpl = T.completion(tlp, 0, data=raw)
                        for beat in cpl.beats(self.width):
                            await self._out.put({**beat, "func": {"pf": b.func.pf,
                                                                  "vf": b.func.vf}})
            await RisingEdge(clk)

    async def _give(self):
        clk = self.dut.clk
        self.cpl.valid.value = 0
        while True:
            beat = await self._out.get()
            await RisingEdge(clk)       # (as in TlpAdapter._drive_rx)
            self.cpl.payload.value = pack(self.src_layout, beat)
            self.cpl.valid.value = 1
            while True:
                await FallingEdge(clk)
                ready = int(self.cpl.ready.value)
                await RisingEdge(clk)
                if ready:
                    break
            self.cpl.valid.value = 0


# -- SR-IOV bring-up, as Linux does it -------------------------------------------------------

CAP_PCIE = 0x10
EXT_ARI = 0x000E
EXT_SRIOV = 0x0010


async def find_cap(rc, dev, cap_id):
    ptr = await rc.config_read_byte(dev, 0x34)
    while ptr:
        header = await rc.config_read_word(dev, ptr)
        if header & 0xFF == cap_id:
            return ptr
        ptr = header >> 8 & 0xFC
    return None


async def find_ext_cap(rc, dev, cap_id):
    ptr = 0x100
    while ptr:
        header = await rc.config_read_dword(dev, ptr)
        if header in (0, 0xFFFFFFFF):
            return None
        if header & 0xFFFF == cap_id:
            return ptr
        ptr = header >> 20 & 0xFFC
    return None


async def size_vf_bars(rc, pf, sriov):
    """VF BAR i: ``(index, size per VF, is64, prefetchable)`` (§9.3.3.14: write all ones, read
    back, restore), as pci_iov's sriov_init does."""
    bars = []
    i = 0
    while i < 6:
        reg = sriov + 0x24 + 4 * i
        old = await rc.config_read_dword(pf, reg)
        await rc.config_write_dword(pf, reg, 0xFFFFFFFF)
        low = await rc.config_read_dword(pf, reg)
        await rc.config_write_dword(pf, reg, old)
        is64 = (low >> 1 & 3) == 2
        mask = low & ~0xF
        if is64:
            hreg = reg + 4
            hold = await rc.config_read_dword(pf, hreg)
            await rc.config_write_dword(pf, hreg, 0xFFFFFFFF)
            high = await rc.config_read_dword(pf, hreg)
            await rc.config_write_dword(pf, hreg, hold)
            mask |= high << 32
            width = 64
        else:
            width = 32
        if mask:
            size = (~mask + 1) & ((1 << width) - 1)
            bars.append((i, size, is64, bool(low & 8)))
        i += 2 if is64 else 1
    return bars


def _load_job():
    with open(os.environ[JOB_ENV]) as f:
        return json.load(f)


@cocotb.test()
async def run_bringup(dut):
    """Enumerate, bring SR-IOV up, read every VF, MMIO to several VFs (see the module doc)."""
    from cocotbext.pcie.core import RootComplex
    from cocotbext.pcie.core.utils import PcieId

    from sriov_ep.params import load_params

    from .model import EndpointModel

    job = _load_job()
    params = load_params(job["config"])
    width = job["data_width"]
    report = {"steps": []}

    def step(text):
        report["steps"].append(text)
        dut._log.info(text)

    start_clock(dut)
    await reset_wrapper(dut)
    # The VF-state clear after reset (TotalVFs cycles): config requests meanwhile complete
    # with RRS, which cocotbext's enumerator handles only with CRS visibility; wait it out.
    await ClockCycles(dut.clk, params.total_vfs + 64)

    rc = RootComplex()
    rc.max_payload_size = 0x1
    port = rc.make_port()
    port.pcie_cap.ari_forwarding_supported = True     # the root port can do ARI
    adapter = TlpAdapter(dut, width)
    users = UserMemories(dut, width)
    port.connect(adapter)
    await rc.enumerate()
    step("enumerated: " + rc.host_bridge.to_str().strip().replace("\n", " | "))

    pf = PcieId.from_int(params.pf_rid)
    found = rc.find_device(pf)
    assert found is not None, f"the enumerator did not find {pf}"
    assert found.vendor_id == params.vendor_id, found.vendor_id
    model = EndpointModel(params)

    async def cfg_write(dev, reg, size, value, *, type1=False):
        """A config write through the RC, mirrored into the model."""
        if size == 4:
            await rc.config_write_dword(dev, reg, value)
        elif size == 2:
            await rc.config_write_word(dev, reg, value)
        else:
            await rc.config_write_byte(dev, reg, value)
        shift = 8 * (reg & 3)
        be = ((1 << size) - 1) << (reg & 3)
        model.config(type1, int(dev), reg >> 2, be, True, (value << shift) & 0xFFFFFFFF)

    # The PF: Memory Space and Bus Master Enable (also captures the bus in the model).
    await cfg_write(pf, 0x04, 2, 0x0006)

    # ARI: Linux's pci_configure_ari sets ARI Forwarding Enable in the root port's Device
    # Control 2 when the port supports it and the device has an ARI capability.
    ari = await find_ext_cap(rc, pf, EXT_ARI)
    assert ari is not None, \
        f"the PF has no ARI capability (0x100 reads {await rc.config_read_dword(pf, 0x100):#x})"
    rp = port.pcie_id
    rp_pcie = await find_cap(rc, rp, CAP_PCIE)
    devctl2 = await rc.config_read_word(rp, rp_pcie + 0x28)
    await rc.config_write_word(rp, rp_pcie + 0x28, devctl2 | 1 << 5)
    assert port.pcie_cap.ari_forwarding_enable
    step(f"ARI Forwarding Enable set on root port {rp}")

    # sriov_init: ARI Capable Hierarchy (PF 0 only), then Offset/Stride, TotalVFs, VF BARs.
    sriov = await find_ext_cap(rc, pf, EXT_SRIOV)
    assert sriov is not None, "the PF has no SR-IOV capability"
    await cfg_write(pf, sriov + 0x08, 2, 1 << 4)
    total = await rc.config_read_word(pf, sriov + 0x0E)
    assert total == params.total_vfs, total
    page_sizes = await rc.config_read_dword(pf, sriov + 0x1C)
    assert page_sizes & 1, "4 KiB pages not supported"
    await cfg_write(pf, sriov + 0x20, 4, 1)                 # System Page Size: 4 KiB
    bars = await size_vf_bars(rc, pf, sriov)
    assert bars, "no VF BAR"
    step(f"VF BARs (index, size, 64-bit, prefetchable): {bars}")

    # sriov_enable(NumVFs): NumVFs first (Offset and Stride may change with it).
    num = job["num_vfs"] or params.initial_vfs
    await cfg_write(pf, sriov + 0x10, 2, num)
    offset = await rc.config_read_word(pf, sriov + 0x14)
    stride = await rc.config_read_word(pf, sriov + 0x16)
    vf_rids = [(params.pf_rid + offset + n * stride) & 0xFFFF for n in range(num)]
    beyond = (params.pf_rid + offset + num * stride) & 0xFFFF
    last_bus = max(r >> 8 for r in vf_rids)
    step(f"NumVFs {num}: First VF Offset {offset:#x}, VF Stride {stride}, VF buses "
         f"{sorted({r >> 8 for r in vf_rids})}")

    # Buses and windows: widen the root port's subordinate bus (pci_iov_bus_range) and its
    # windows to cover the VF BARs (TotalVFs apertures each, as Linux sizes them).
    pf_bus = params.pf_rid >> 8
    buses = await rc.config_read_dword(rp, 0x18)
    sub = max(last_bus, buses >> 16 & 0xFF)
    await rc.config_write_dword(rp, 0x18, (buses & 0xFF00FFFF) | sub << 16)
    rc.upstream_bridge.sub_bus_num = max(rc.upstream_bridge.sub_bus_num, sub)

    pref_base = 0x8000_0000_1000_0000
    mem_base = 0xE000_0000
    assigned = []
    for index, size, is64, prefetch in bars:
        total_size = size * total
        if is64 and prefetch:
            base = pref_base
            pref_base += max(total_size, 1 << 20)
        else:
            base = mem_base
            mem_base += max(total_size, 1 << 20)
        reg = sriov + 0x24 + 4 * index
        await cfg_write(pf, reg, 4, base & 0xFFFFFFFF)
        if is64:
            await cfg_write(pf, reg + 4, 4, base >> 32)
        assigned.append((index, base, size))
    # Root port windows (bridge registers 0x20-0x2C, 1 MiB granules) and the host bridge.
    await rc.config_write_dword(rp, 0x20, ((mem_base - 1) >> 16 & 0xFFF0) << 16
                                | (0xE000_0000 >> 16 & 0xFFF0))
    pref_lo = 0x8000_0000_1000_0000
    await rc.config_write_dword(rp, 0x24, ((pref_base - 1) >> 16 & 0xFFF0 | 1) << 16
                                | (pref_lo >> 16 & 0xFFF0 | 1))
    await rc.config_write_dword(rp, 0x28, pref_lo >> 32)
    await rc.config_write_dword(rp, 0x2C, (pref_base - 1) >> 32)
    await rc.config_write_word(rp, 0x04, 0x0006)
    hb = rc.upstream_bridge
    hb.mem_base, hb.mem_limit = min(hb.mem_base, 0xE000_0000), max(hb.mem_limit, mem_base - 1)
    hb.prefetchable_mem_base = min(hb.prefetchable_mem_base, pref_lo)
    hb.prefetchable_mem_limit = max(hb.prefetchable_mem_limit, pref_base - 1)
    step(f"VF BARs assigned (index, base, size per VF): "
         f"{[(i, hex(b), s) for i, b, s in assigned]}")

    # Before VF Enable no VF answers.
    first_vf = PcieId.from_int(vf_rids[0])
    assert await rc.config_read_dword(first_vf, 0) == 0xFFFFFFFF

    # VF Enable and VF MSE (with ARI Capable Hierarchy kept), as sriov_enable writes them.
    await cfg_write(pf, sriov + 0x08, 2, 1 << 4 | 1 << 3 | 1 << 0)
    await ClockCycles(dut.clk, 16)

    # Every VF's configuration space, against the model; the whole 4 KiB of the first and the
    # last VF, the first 512 bytes (header, capabilities, ARI) of the others.
    compared = 0
    for n, vrid in enumerate(vf_rids, 1):
        vf = PcieId.from_int(vrid)
        type1 = (vrid >> 8) != pf_bus
        span = 0x1000 if n in (1, num) else 0x200
        got = await rc.config_read_dwords(vf, 0, span // 4)
        for k, value in enumerate(got):
            status, want = model.config(type1, vrid, k, 0xF, False, 0)
            want = want if status == "SC" else 0xFFFFFFFF
            assert value == want, (f"VF{n} {vf} offset {4 * k:#x}: read {value:#010x}, "
                                   f"model {want:#010x}")
            compared += 1
        assert got[0] == 0xFFFFFFFF, "a VF's Vendor/Device ID must read FFFFh"
    step(f"read {compared} dwords of {num} VFs' configuration spaces: all as the model")

    # Past NumVFs: UR (all ones) for config.
    assert await rc.config_read_dword(PcieId.from_int(beyond), 0) == 0xFFFFFFFF

    # VF Bus Master/Memory: MMIO to several VFs' first BAR, then read everything back.
    bar0_index, bar0_base, bar0_size = assigned[0]
    chosen = sorted({1, 2, num} | ({num // 2} if num > 3 else set()))
    for n in chosen:
        addr = bar0_base + (n - 1) * bar0_size + 0x40
        await rc.mem_write(addr, bytes([n, 0xA5, n, 0x5A, 0x10 + n, 0, 0, n]))
    for n in chosen:
        addr = bar0_base + (n - 1) * bar0_size + 0x40
        data = await rc.mem_read(addr, 8)
        assert bytes(data) == bytes([n, 0xA5, n, 0x5A, 0x10 + n, 0, 0, n]), (n, data)
    # Isolation: each VF's memory holds only its own bytes, at its own offset.
    for n in chosen:
        store = users.mem.get((0, n, bar0_index), {})
        assert {k: v for k, v in store.items()} == {
            0x40 + i: b for i, b in enumerate([n, 0xA5, n, 0x5A, 0x10 + n, 0, 0, n])}, n
    assert not users.mem.get((0, 0, bar0_index)), "the PF's memory was written"
    # An unwritten VF reads zeros.
    unwritten = [n for n in range(1, num + 1) if n not in chosen]
    if unwritten:
        n = unwritten[0]
        data = await rc.mem_read(bar0_base + (n - 1) * bar0_size + 0x40, 8)
        assert bytes(data) == bytes(8)
    # Past NumVFs: the aperture of VF NumVFs+1 is unclaimed, a read completes with UR.
    if num < total:
        try:
            await rc.mem_read(bar0_base + num * bar0_size + 0x40, 4)
        except Exception as exc:        # cocotbext raises on a non-SC completion
            assert "Unsuccessful" in str(exc), exc
        else:
            raise AssertionError("a read past NumVFs did not fail")
    step(f"MMIO to VFs {chosen}: data, isolation and UR past NumVFs as expected")

    # VF MSE off: nothing decodes in the VF BARs any more.
    await cfg_write(pf, sriov + 0x08, 2, 1 << 4 | 1 << 0)
    try:
        await rc.mem_read(bar0_base + 0x40, 4)
    except Exception as exc:
        assert "Unsuccessful" in str(exc), exc
    else:
        raise AssertionError("a VF BAR decoded with VF MSE clear")
    step("VF MSE clear: VF BAR reads complete with UR")

    report["tlps_down"] = len(adapter.sent_down)
    report["tlps_up"] = len(adapter.sent_up)
    report["user_requests"] = len(users.seen)
    report["vf_rids"] = vf_rids
    report["chosen"] = chosen
    with open(job["report"], "w") as f:
        json.dump(report, f)
