"""The host side: endpoint port drivers, a scoreboard, a root port and a Linux-like host.

Layers, bottom up:

* an *endpoint port* has ``async config(type1, rid, reg, be, write, data)`` returning a
  :class:`Completion` record: :class:`EndpointDriver` drives the RTL's channels in an Amaranth
  testbench, :class:`ModelEndpointPort` asks the reference model, :class:`Scoreboard` does both
  and compares every completion;
* :class:`RootPort` turns accesses to a BDF into Type 0 (the endpoint's bus) or Type 1 (buses
  beyond it) requests, records a transcript, and hands out per-function :class:`ConfigSpace`
  objects for 1/2/4-byte accesses;
* :class:`LinuxHost` enumerates the device as Linux's pci_scan_slot does (one PF, or several:
  the ARI Next Function Number chain or functions 1..7 of a multi-function device), assigns
  BARs, enables ACS, and drives one :class:`LinuxSriovDriver` per PF (enable, disable, restore)
  and the VF walk; it also sets up MSI-X (msix_capability_init), suspends and resumes every
  function (pci_save_state, D3hot, pci_power_up, pci_restore_state), and tells the IOMMU
  groups Linux would form (pci_device_group).

Besides the config port, two more drivers (each with a model-backed implementation here, and a
checked one comparing a design with the model):

* a *memory port*: ``async decode(addr, write)`` (which function and BAR an address reaches) and
  ``async access(addr, write, data=0, be=0xFF)``, one request on the aligned QWORD containing
  ``addr`` (``data``/``be``: byte ``i`` at bits ``8i+7:8i`` / bit ``i``; a DWORD access uses
  ``be`` 0x0F or 0xF0), returning a result with ``claimed`` (for the user's logic),
  ``internal`` (answered by the endpoint: an MSI-X table or PBA access), ``is_vf``, ``vf``,
  ``bar``, ``offset``, ``data`` (an internal read's QWORD) and ``pf`` (the PF index):
  :class:`ModelMemoryPort`, :class:`MemoryPort`;
* an *interrupt port*: ``async interrupt(function, vector, pf=0)`` -> ``"sent"``,
  ``"pending"`` or ``"dropped"``; ``messages()`` -> the ``(function, address, data)`` MSI-X
  messages delivered since the last call (an interrupt, or a config or table write that
  unmasked a pending vector), ``(function, address, data, pf)`` on a device of several PFs;
  ``async vf_msix_count(vf, count, pf=0)`` -> bool: :class:`ModelInterruptPort`,
  :class:`InterruptPort`. Function 0 is the PF, n is VF n (of PF ``pf``: a PF index, 0..P-1).
"""

from dataclasses import dataclass, field

from sriov_ep.endpoint import CompletionStatus
from sriov_ep.params import format_bdf

from .cfg import ConfigSpace, Mismatch
from .linux import LinuxSriovDriver

__all__ = ["Completion", "stream_transaction", "EndpointDriver", "ModelEndpointPort",
           "Scoreboard", "RootPort",
           "MemDecodeResult", "decode_result", "MemoryDriver", "MemTransaction", "BarMemories",
           "MemoryPort", "MemAccessResult", "ModelMemoryPort",
           "ModelInterruptPort", "InterruptPort", "MsixTransaction", "MsiMessage",
           "MsixVector", "MsixFunction", "SavedState", "InterruptDriver", "SettledDriver",
           "MSG_QUIET", "access_result", "UserRegisters", "user_config_responder",
           "user_config_call",
           "Transaction", "LinuxHost", "PfState", "HostError", "status_name",
           "RRS_RETRY_LIMIT", "reissue_on_rrs"]


@dataclass(frozen=True)
class Completion:
    status: str             # "SC" or "UR" ("RRS" only from a driver that does not retry)
    data:   int
    cycles: int | None = None


def status_name(value):
    """``"SC"``, ``"UR"`` or ``"RRS"`` for a Completion Status (a :class:`CompletionStatus` or
    its integer value)."""
    return CompletionStatus(value).name


#: How many Request Retry Status completions in a row a driver takes before giving up.
RRS_RETRY_LIMIT = 1_000_000


async def reissue_on_rrs(driver, attempt, rid):
    """What a config driver does with ``attempt()`` (one request on the wire, returning
    ``(payload, cycles)``): reissue it while it completes with Request Retry Status, as a Root
    Complex does with CRS Software Visibility off, counting in ``driver.rrs_retries`` (and per
    Routing ID in ``driver.rrs_by_rid``, a dict, if the driver has one); or
    return the RRS completion when ``driver.retry_rrs`` is false."""
    for _ in range(RRS_RETRY_LIMIT):
        payload, cycles = await attempt()
        status = status_name(payload.status)
        if status != "RRS" or not driver.retry_rrs:
            return Completion(status, payload.data, cycles)
        driver.rrs_retries += 1
        by_rid = getattr(driver, "rrs_by_rid", None)
        if by_rid is not None:
            by_rid[rid] = by_rid.get(rid, 0) + 1
    raise TimeoutError(f"config request to {format_bdf(rid)}: Request Retry Status "
                       f"{RRS_RETRY_LIMIT} times in a row")


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

    A completion with Request Retry Status (the PF is clearing its VF state after a reset) is
    reissued at once, as a Root Complex does with CRS Software Visibility off; ``rrs_retries``
    counts them, ``rrs_by_rid`` per Routing ID. With ``retry_rrs=False`` it is returned as
    status ``"RRS"``.
    """

    def __init__(self, ctx, dut, *, timeout=1_000_000, retry_rrs=True):
        self.ctx     = ctx
        self.dut     = dut
        self.timeout = timeout
        self.retry_rrs = retry_rrs
        self.rrs_retries = 0
        self.rrs_by_rid = {}

    async def config(self, type1, rid, reg, be, write, data):
        def attempt():
            return stream_transaction(
                self.ctx, self.dut.cfg_req, self.dut.cfg_cpl,
                {"type1": type1, "rid": rid, "reg": reg, "be": be, "write": write,
                 "data": data},
                timeout=self.timeout, what="config request")
        return await reissue_on_rrs(self, attempt, rid)


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
            kind = f"CfgWr{int(type1)}" if write else f"CfgRd{int(type1)}"
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
    """Which function and BAR a memory request reached (``function`` 0 is the PF, n its VF n;
    ``pf`` the PF index)."""
    claimed:  bool
    function: int
    bar:      int
    offset:   int
    cycles:   int | None = None
    pf:       int = 0

    def key(self):
        return (self.claimed, self.function, self.bar, self.offset)


def _model_decode(model, addr):
    """The model's decode of ``addr`` as a :class:`MemDecodeResult` (any number of PFs)."""
    claimed, k, function, bar, offset = model.route_memory(addr)
    return MemDecodeResult(claimed, function, bar, offset, pf=k)


def decode_result(res, addr, write, tag, cycles):
    """A :class:`MemDecodeResult` from a ``mem_res`` payload (anything with its field names as
    attributes), checked against the request it must answer."""
    if (res.addr, res.write, res.tag) != (addr, int(write), tag):
        raise Mismatch(f"decode result for {res.addr:#x} (tag {res.tag}) returned for the "
                       f"request at {addr:#x} (tag {tag})")
    claimed = bool(res.claimed) or bool(getattr(res, "internal", 0))
    if claimed and res.is_vf and res.vf == 0:
        raise Mismatch(f"decode of {addr:#x} claims VF 0")
    if not claimed:
        return MemDecodeResult(False, 0, 0, 0, cycles)
    return MemDecodeResult(True, res.vf if res.is_vf else 0, res.bar, res.offset, cycles,
                           int(getattr(res, "pf", 0)))


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
        """Which function and BAR ``addr`` reaches (a :class:`MemDecodeResult`; an access the
        endpoint serves itself, to an MSI-X table or PBA, counts as claimed). Sent with byte
        enables 0: a write changes nothing, even in an MSI-X table."""
        res, cycles = await self._request(addr, write, 0, 0)
        return decode_result(res, addr, write, self.tag, cycles)

    async def access(self, addr, write, data=0, be=0xFF):
        """One request on the aligned QWORD containing ``addr`` (``data``: its bytes, byte i at
        bits 8i+7:8i; ``be``: their enables): a :class:`MemAccessResult` (``data``: the QWORD an
        internal read returned, else 0)."""
        res, cycles = await self._request(addr, write, data, be)
        decode_result(res, addr, write, self.tag, cycles)         # checks the echo
        return access_result(res, write, cycles)

    async def _request(self, addr, write, data, be):
        self.tag = (self.tag + 1) % (1 << len(self.dut.mem_req.payload.tag))
        return await stream_transaction(
            self.ctx, self.dut.mem_req, self.dut.mem_res,
            {"addr": addr, "write": write, "tag": self.tag, "data": data, "be": be},
            timeout=self.timeout, what="memory request")


def access_result(res, write, cycles):
    """A :class:`MemAccessResult` from a ``mem_res`` payload (``data`` kept only for an internal
    read: otherwise the payload carries the request's write data)."""
    if res.claimed and res.internal:
        raise Mismatch(f"memory request at {res.addr:#x} both claimed and internal")
    data = int(res.data) if res.internal and not write else 0
    return MemAccessResult(bool(res.claimed), bool(res.internal), bool(res.is_vf), int(res.vf),
                           int(res.bar), int(res.offset), data, cycles,
                           int(getattr(res, "pf", 0)))


class MemoryPort:
    """Decode on the design and on the model (``model.decode_memory``); they must agree.

    A driver whose link logs an unclaimed request as an Unsupported Request in PF 0's Device
    Status (the TLP wrapper does, docs/tlp.md §2 "Error status"; the bare endpoint has no link)
    says so with a true ``unclaimed_sets_urd`` attribute: the model is then told of every
    request its own decode leaves unclaimed (``model.unsupported_request(0, 0)``).
    """

    def __init__(self, dut, model):
        self.dut      = dut
        self.model    = model
        self.compared = 0
        self._urd     = bool(getattr(dut, "unclaimed_sets_urd", False))

    def _unclaimed(self, expected):
        if self._urd and not (expected.claimed or getattr(expected, "internal", False)):
            self.model.unsupported_request(0, 0)

    async def decode(self, addr, write):
        got = await self.dut.decode(addr, write)
        expected = _model_decode(self.model, addr)
        self._unclaimed(expected)
        self.compared += 1
        if (got.key(), got.pf) != (expected.key(), expected.pf):
            raise Mismatch(f"memory {'write' if write else 'read'} at {addr:#018x}: design "
                           f"{_describe(got)}, model {_describe(expected)}")
        return got

    @property
    def has_access(self):
        """The design's driver has ``access`` (serves MSI-X tables); else only ``decode``."""
        return hasattr(self.dut, "access")

    async def access(self, addr, write, data=0, be=0xFF):
        """One request on the design and on the model (``model.memory``); the decode, and an
        internal read's data, must agree."""
        got = await self.dut.access(addr, write, data, be)
        expected = MemAccessResult.of(self.model.memory(addr, bool(write), data, be))
        self._unclaimed(expected)
        self.compared += 1
        if (got.key(write=write), got.pf) != (expected.key(write=write), expected.pf):
            raise Mismatch(f"memory {'write' if write else 'read'} at {addr:#018x} be {be:#04x}"
                           f": design {_describe_access(got)}, model "
                           f"{_describe_access(expected)}")
        return got


@dataclass(frozen=True)
class MemAccessResult:
    """What one memory request (``access``) did: the decode, and the data of an internal read.

    ``claimed``: a BAR claimed it for the user's logic. ``internal``: the endpoint answered it
    itself (MSI-X table or PBA); then ``claimed`` is False. ``vf`` is 0 for the PF. ``data``: an
    internal read's aligned QWORD (byte ``i`` at bits ``8i+7:8i``), else 0. ``pf``: the PF
    index (compared separately from :meth:`key`).
    """
    claimed:  bool
    internal: bool
    is_vf:    bool
    vf:       int
    bar:      int
    offset:   int
    data:     int = 0
    cycles:   int | None = None
    #: The PF index (0 with one PF).
    pf:       int = 0

    @classmethod
    def of(cls, res, cycles=None):
        """From anything with the result's field names as attributes (a model result, a
        ``mem_res`` payload)."""
        return cls(bool(res.claimed), bool(res.internal), bool(res.is_vf), int(res.vf),
                   int(res.bar), int(res.offset), int(res.data), cycles,
                   int(getattr(res, "pf", 0)))

    @property
    def answered(self):
        """Someone completes it: the user's logic or the endpoint (else: UR)."""
        return self.claimed or self.internal

    @property
    def function(self):
        """0 for the PF, n for VF n."""
        return self.vf if self.is_vf else 0

    def key(self, *, write):
        """What a design and the model must agree on (the data of internal reads only)."""
        if not self.answered:
            return (False, False)
        return (self.claimed, self.internal, self.function, self.bar, self.offset,
                self.data if self.internal and not write else None)


class ModelMemoryPort:
    """The reference model behind the memory port calls (``model.decode_memory``,
    ``model.memory``)."""

    def __init__(self, model):
        self.model = model

    async def decode(self, addr, write):
        return _model_decode(self.model, addr)

    async def access(self, addr, write, data=0, be=0xFF):
        return MemAccessResult.of(self.model.memory(addr, bool(write), data, be))


class ModelInterruptPort:
    """The reference model behind the interrupt port: ``model.interrupt``,
    ``model.messages`` (drained from where the last call left off) and
    ``model.set_vf_msix_count``."""

    def __init__(self, model):
        self.model = model
        self._seen = len(model.messages)

    async def interrupt(self, function, vector, pf=0):
        return self.model.interrupt(function, vector, pf=pf)

    def messages(self):
        """New messages: ``(function, address, data)``, with the PF index as a fourth element
        when the device has several PFs."""
        width = 3 if len(self.model.pfs) == 1 else 4
        new = [tuple(m[:width]) for m in self.model.messages[self._seen:]]
        self._seen += len(new)
        return new

    async def vf_msix_count(self, vf, count, pf=0):
        return bool(self.model.set_vf_msix_count(vf, count, pf=pf))


class InterruptPort:
    """Raise every interrupt on the design and the model; outcomes and delivered messages must
    match (messages compared in order, each time both are drained)."""

    def __init__(self, dut, model):
        self.dut      = dut
        self.model    = model
        self.compared = 0

    async def interrupt(self, function, vector, pf=0):
        got = await self.dut.interrupt(function, vector, **_pf_keyword(pf))
        expected = await self.model.interrupt(function, vector, pf=pf)
        self.compared += 1
        if got != expected:
            of = f" of PF {pf}" if pf else ""
            raise Mismatch(f"interrupt function {function}{of} vector {vector}: design {got}, "
                           f"model {expected}")
        return got

    def messages(self):
        got, expected = self.dut.messages(), self.model.messages()
        if got != expected:
            raise Mismatch(f"MSI-X messages: design {_messages(got)}, model "
                           f"{_messages(expected)}")
        return got

    async def vf_msix_count(self, vf, count, pf=0):
        got = await self.dut.vf_msix_count(vf, count, **_pf_keyword(pf))
        expected = await self.model.vf_msix_count(vf, count, pf=pf)
        self.compared += 1
        if got != expected:
            of = f" of PF {pf}" if pf else ""
            raise Mismatch(f"VF {vf}{of} MSI-X Table Size {count}: design "
                           f"{'accepted' if got else 'refused'}, model "
                           f"{'accepted' if expected else 'refused'}")
        return got


def _pf_keyword(pf):
    """``pf=`` for a driver call: left out for PF 0, so drivers without it still work."""
    return {"pf": pf} if pf else {}


#: Clock cycles without an MSI-X message after which the MSI-X engine is taken to be quiet (the
#: scan a config or table write starts sends its first message at most 13 cycles after the
#: engine takes the request, the next ones 6 cycles apart; an interrupt's message comes 6 cycles
#: after it is accepted (``MSG_LATENCY``), a drop is known after 5): :class:`InterruptDriver`
#: waits this long after an interrupt and in :meth:`InterruptDriver.settle`.
MSG_QUIET = 16


def _fits(value, width):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << width


class InterruptDriver:
    """Drive :class:`sriov_ep.SriovEndpoint`'s interrupt channels from an Amaranth testbench:
    ``irq`` (interrupt requests), ``msg`` (the MSI-X messages out), ``irq_dropped``,
    ``vf_msix_size`` / ``vf_msix_size_done``.

    Messages are taken (``msg.ready`` high) only while one of this driver's calls runs:
    :meth:`interrupt`, :meth:`vf_msix_count` and :meth:`settle`, which waits until the engine
    has been quiet for ``quiet`` cycles. Whoever writes to the design (config writes, table
    writes, which may unmask pending vectors) must call :meth:`settle` after each write before
    asking for :meth:`messages`; :class:`SettledDriver` does it for a config or memory driver.
    Until then a message waits in the design (nothing is lost).

    ``await interrupt(function, vector)``: ``"dropped"`` if ``irq_dropped`` pulsed, ``"sent"`` if
    a message from ``function`` came, else ``"pending"``, decided ``quiet`` cycles after the
    last message (or after acceptance). ``messages()``: every ``(function, address, data)``
    taken since the last call (``(function, address, data, pf)`` when the design has several
    PFs). ``await vf_msix_count(vf, count)``: whether the design took the Table Size
    (``vf_msix_size_done.ok``). Both calls take ``pf=k`` when the ports carry a ``pf`` field.
    """

    def __init__(self, ctx, dut, *, quiet=MSG_QUIET, timeout=100_000):
        self.ctx     = ctx
        self.dut     = dut
        self.quiet   = quiet
        self.timeout = timeout
        self._log    = []
        self._seen   = 0
        self._fn_width  = len(dut.irq.payload.function)
        self._vec_width = len(dut.irq.payload.vector)
        self._vf_width  = len(dut.vf_msix_size.payload.vf)
        self._cnt_width = len(dut.vf_msix_size.payload.count)
        self._multi = len(getattr(dut, "pfs", ())) > 1
        self._pf_width = len(dut.irq.payload.pf) if hasattr(dut.irq.payload, "pf") else 0

    async def _tick(self, *signals):
        """One clock edge with ``msg.ready`` high: logs a message taken at it; returns
        ``(message or None, irq_dropped, *signals)`` as sampled at the edge."""
        msg = self.dut.msg
        _, _, valid, payload, dropped, *values = await self.ctx.tick().sample(
            msg.valid, msg.payload, self.dut.irq_dropped, *signals)
        message = None
        if valid:
            message = (int(payload.function), int(payload.addr), int(payload.data))
            if self._multi:
                message += (int(payload.pf),)
            self._log.append(message)
        return (message, dropped, *values)

    async def _until_quiet(self, waited=0, on_tick=None):
        quiet = 0
        while quiet < self.quiet:
            message, dropped = await self._tick()
            if on_tick is not None:
                on_tick(message, dropped)
            quiet = 0 if message is not None else quiet + 1
            waited += 1
            if waited > self.timeout:
                raise TimeoutError(f"MSI-X messages still coming after {self.timeout} cycles")

    async def settle(self):
        """Take messages until none came for ``quiet`` cycles."""
        self.ctx.set(self.dut.msg.ready, 1)
        await self._until_quiet()
        self.ctx.set(self.dut.msg.ready, 0)

    def _pf_fits(self, pf):
        return pf == 0 or (self._pf_width and _fits(pf, self._pf_width))

    async def interrupt(self, function, vector, pf=0):
        if not (_fits(function, self._fn_width) and _fits(vector, self._vec_width)
                and self._pf_fits(pf)):
            return "dropped"            # not expressible on the port: no such function/vector
        irq, ctx = self.dut.irq, self.ctx
        ctx.set(self.dut.msg.ready, 1)
        payload = {"function": function, "vector": vector}
        if self._pf_width:
            payload["pf"] = pf
        ctx.set(irq.payload, payload)
        ctx.set(irq.valid, 1)
        outcome = {"dropped": False, "sent": False}

        def note(message, dropped):
            outcome["dropped"] |= bool(dropped)
            if message is not None and message[0] == function \
                    and (not self._multi or message[3] == pf):
                outcome["sent"] = True

        waited = 0
        while True:
            message, dropped, ready = await self._tick(irq.ready)
            note(message, dropped)
            waited += 1
            if ready:
                break
            if waited > self.timeout:
                raise TimeoutError(f"interrupt request not accepted after {self.timeout} cycles")
        ctx.set(irq.valid, 0)
        await self._until_quiet(on_tick=note)
        ctx.set(self.dut.msg.ready, 0)
        if outcome["dropped"]:
            return "dropped"
        return "sent" if outcome["sent"] else "pending"

    def messages(self):
        new = self._log[self._seen:]
        self._seen = len(self._log)
        return list(new)

    async def vf_msix_count(self, vf, count, pf=0):
        if not (_fits(vf, self._vf_width) and _fits(count, self._cnt_width)
                and self._pf_fits(pf)):
            return False                # not expressible on the port: refused
        port, ctx = self.dut.vf_msix_size, self.ctx
        done = self.dut.vf_msix_size_done
        payload = {"vf": vf, "count": count}
        if hasattr(port.payload, "pf"):
            payload["pf"] = pf
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        accepted = False
        waited = 0
        while True:
            _, _, ready, done_valid, done_ok = await ctx.tick().sample(
                port.ready, done.valid, done.ok)
            if accepted and done_valid:
                return bool(done_ok)
            if ready and not accepted:
                accepted = True
                ctx.set(port.valid, 0)
            waited += 1
            if waited > self.timeout:
                raise TimeoutError(f"VF Table Size request not done after {self.timeout} "
                                   f"cycles")


class SettledDriver:
    """A config or memory driver whose writes are followed by ``settle()`` (an interrupt
    driver's): the MSI-X messages a write caused (unmasking pending vectors) are taken before
    the call returns. Everything else is the wrapped driver's."""

    def __init__(self, driver, settle):
        self._driver = driver
        self._settle = settle

    def __getattr__(self, name):
        if name == "access":        # settled, if the driver has it (else AttributeError)
            getattr(self._driver, name)
            return self._access
        return getattr(self._driver, name)

    async def config(self, type1, rid, reg, be, write, data):
        cpl = await self._driver.config(type1, rid, reg, be, write, data)
        if write:
            await self._settle()
        return cpl

    async def decode(self, addr, write):
        return await self._driver.decode(addr, write)

    async def _access(self, addr, write, data=0, be=0xFF):
        res = await self._driver.access(addr, write, data, be)
        if write:
            await self._settle()
        return res


class UserRegisters:
    """A handler of user configuration windows (the interface :class:`EndpointModel` and
    :func:`user_config_responder` take): one dword register per ``(function, window, dword)``,
    ``values`` its initial contents (absent: 0), written byte by byte under the byte enables
    unless ``(function, window, dword)`` is in ``read_only``. Every call is appended to
    :attr:`calls`: ``("read", function, window, dword)`` or ``("write", function, window,
    dword, be, data)``.
    """

    def __init__(self, values=None, *, read_only=()):
        self.values = dict(values or {})
        self.read_only = set(read_only)
        self.calls = []

    def read(self, function, window, dword):
        self.calls.append(("read", function, window, dword))
        return self.values.get((function, window, dword), 0)

    def write(self, function, window, dword, be, data):
        self.calls.append(("write", function, window, dword, be, data))
        if (function, window, dword) in self.read_only:
            return
        mask = sum(0xFF << (8 * i) for i in range(4) if be >> i & 1)
        old = self.values.get((function, window, dword), 0)
        self.values[(function, window, dword)] = (old & ~mask) | (data & mask)


def user_config_responder(dut, handler, *, latency=0):
    """An Amaranth testbench (run it with ``background=True``) playing the user logic behind
    ``ucfg_req``/``ucfg_res``: each request calls ``handler.read(function, window, dword)`` or
    ``handler.write(function, window, dword, be, data)``, the interface of the reference
    model's user handler (:class:`sriov_tb.model.EndpointModel`); the response, with the
    request's tag, follows ``latency`` cycles later."""
    async def testbench(ctx):
        req, res = dut.ucfg_req, dut.ucfg_res
        ctx.set(req.ready, 1)
        while True:
            _, _, valid, p = await ctx.tick().sample(req.valid, req.payload)
            if not valid:
                continue
            ctx.set(req.ready, 0)
            data = user_config_call(handler, p)
            if latency:
                await ctx.tick().repeat(latency)
            ctx.set(res.payload, {"data": data, "tag": int(p.tag)})
            ctx.set(res.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(res.ready)
                if ready:
                    break
            ctx.set(res.valid, 0)
            ctx.set(req.ready, 1)
    return testbench


def user_config_call(handler, p):
    """Call ``handler`` for one ``ucfg_req`` payload ``p``; returns the response data."""
    function, window, dword = int(p.function), int(p.window), int(p.offset)
    if p.write:
        handler.write(function, window, dword, int(p.be), int(p.data))
        return 0
    return handler.read(function, window, dword) & 0xFFFF_FFFF


def _messages(messages):
    def one(m):
        of = f" of PF {m[3]}" if len(m) > 3 else ""
        return f"(function {m[0]}{of}, {m[1]:#x}, {m[2]:#x})"
    return "[" + ", ".join(one(m) for m in messages) + "]" if messages else "none"


def _who(function, pf):
    who = f"VF{function}" if function else "PF"
    return f"{who} of PF {pf}" if pf else who


def _describe(result):
    if not result.claimed:
        return "not claimed"
    return f"{_who(result.function, result.pf)} BAR{result.bar} + {result.offset:#x}"


def _describe_access(result):
    if not result.answered:
        return "not claimed"
    who = _who(result.function, result.pf)
    what = f"internal, data {result.data:#018x}" if result.internal else "claimed"
    return f"{who} BAR{result.bar} + {result.offset:#x} ({what})"


class BarMemories:
    """The user logic of a testbench: a sparse byte memory behind every (PF, function, BAR)
    (``pf`` the PF index, ``function`` 0 the PF, n its VF n): :attr:`mem` maps ``(pf,
    function, bar)`` to ``{offset: byte}``."""

    def __init__(self):
        self.mem = {}

    def write(self, function, bar, offset, size, value, pf=0):
        store = self.mem.setdefault((pf, function, bar), {})
        for i in range(size):
            store[offset + i] = (value >> (8 * i)) & 0xff

    def read(self, function, bar, offset, size, pf=0):
        store = self.mem.get((pf, function, bar), {})
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
    #: Answered by the endpoint itself (an MSI-X table or PBA access), not the user's logic.
    internal: bool = False
    #: The PF index of the function (0 with one PF, and when unclaimed).
    pf:       int = 0
    #: The PF's BDF, set only on a device of several PFs: texts then name the PF.
    pf_bdf:   str | None = None

    def as_dict(self):
        record = {"op": self.op, "addr": self.addr, "size": self.size, "status": self.status,
                  "value": self.value, "cycles": self.cycles, "function": self.function,
                  "bar": self.bar, "offset": self.offset, "step": self.step,
                  "internal": self.internal}
        if self.pf_bdf is not None:
            record["pf"] = self.pf_bdf
        return record

    def __str__(self):
        where = "-"
        if self.function is not None:
            who = f"VF{self.function}" if self.function else "PF"
            if self.pf_bdf is not None:
                who += f" of {self.pf_bdf}" if self.function else f" {self.pf_bdf}"
            where = f"{who} BAR{self.bar}+{self.offset:#x}" + (" MSI-X" if self.internal else "")
        return (f"{self.op} {self.addr:#018x} {self.size} {self.status} "
                f"0x{self.value:0{2 * self.size}x} {where}"
                + (f" {self.cycles} cycles" if self.cycles is not None else "")
                + (f"  [{self.step}]" if self.step else ""))


def _function_label(bdf, function, pf_bdf=None):
    """``01:10.2 (VF 2)``; on a device of several PFs (``pf_bdf`` set) ``01:10.2 (VF 2 of
    01:00.1)``."""
    if function is None:
        return bdf
    if function == 0:
        return f"{bdf} (PF)"
    return f"{bdf} (VF {function}" + (f" of {pf_bdf})" if pf_bdf is not None else ")")


def _message_text(addr, data, requester):
    return f"MWr {addr:#018x} data {data:#010x} from {requester}"


@dataclass
class MsiMessage:
    """An MSI-X message the endpoint delivered (after an interrupt, or when a config or table
    write unmasked a pending vector)."""
    function:  int          # 0 PF, n VF n
    bdf:       str          # the function as the host knows it ("?" if it does not)
    addr:      int
    data:      int
    step:      str = ""
    op:        str = "msg"
    #: The vector whose message the host programmed as addr/data, if it knows one.
    vector:    int | None = None
    #: The PF index, and the PF's BDF on a device of several PFs (else None).
    pf:        int = 0
    pf_bdf:    str | None = None

    @property
    def requester(self):
        """Requester ID of the MWr: the sending function's."""
        return self.bdf

    def as_dict(self):
        record = {"op": self.op, "bdf": self.bdf, "function": self.function,
                  "vector": self.vector, "addr": self.addr, "data": self.data,
                  "requester": self.requester, "step": self.step}
        if self.pf_bdf is not None:
            record["pf"] = self.pf_bdf
        return record

    def __str__(self):
        vector = f" vector {self.vector}" if self.vector is not None else ""
        return (f"msg {_function_label(self.bdf, self.function, self.pf_bdf)}{vector}: "
                f"{_message_text(self.addr, self.data, self.requester)}"
                + (f"  [{self.step}]" if self.step else ""))


@dataclass
class MsixTransaction:
    """User logic raised MSI-X ``vector`` of ``function``: ``result`` is ``"sent"`` (then
    ``addr``/``data`` are the message's), ``"pending"`` or ``"dropped"``. Also records a VF
    Table Size request (``op`` ``"msix_count"``, ``vector`` the count, ``result``
    ``"accepted"``/``"refused"``)."""
    function:  int
    bdf:       str
    vector:    int
    result:    str
    addr:      int | None = None
    data:      int | None = None
    step:      str = ""
    op:        str = "msix"
    #: The PF index, and the PF's BDF on a device of several PFs (else None).
    pf:        int = 0
    pf_bdf:    str | None = None

    def as_dict(self):
        record = {"op": self.op, "bdf": self.bdf, "function": self.function,
                  "status": self.result, "step": self.step}
        if self.pf_bdf is not None:
            record["pf"] = self.pf_bdf
        if self.op == "msix_count":
            record["count"] = self.vector
        else:
            record["vector"] = self.vector
            record.update(addr=self.addr, data=self.data,
                          requester=self.bdf if self.result == "sent" else None)
        return record

    def __str__(self):
        who = _function_label(self.bdf, self.function, self.pf_bdf)
        if self.op == "msix_count":
            text = f"msix_count {who} {self.vector}: {self.result}"
        elif self.result == "sent":
            message = _message_text(self.addr, self.data, self.bdf)
            text = f"msix {who} vector {self.vector}: {message}"
        else:
            text = f"msix {who} vector {self.vector}: {self.result}"
        return text + (f"  [{self.step}]" if self.step else "")


class RootPort:
    """A root port whose secondary bus is the endpoint's; higher buses are reached by Type 1.

    Every byte-level access made through :meth:`function` spaces is recorded in
    :attr:`transcript` (one :class:`Transaction` per access) and passed to ``on_transaction``.

    ``mem`` (a memory port) and ``irq`` (an interrupt port) are optional. With ``irq`` set, the
    MSI-X messages delivered because of a transaction are drained after recording it and
    recorded right after it, as :class:`MsiMessage` entries; ``function_rid``,
    ``message_vector`` and ``pf_bdf`` (set by :class:`LinuxHost`) name their functions, vectors
    and, on a device of several PFs, PFs.
    """

    def __init__(self, port, *, secondary_bus, on_transaction=None, mem=None, irq=None):
        self.port = port
        self.secondary_bus  = secondary_bus
        self.on_transaction = on_transaction
        self.mem = mem
        self.irq = irq
        self.function_rid = None
        self.message_vector = None
        #: PF index -> the PF's BDF, or None with one PF (labels then do not name the PF).
        self.pf_bdf = None
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
        if self.irq is not None and not isinstance(txn, MsiMessage):
            self.record_messages(self.irq.messages())

    def bdf_of_function(self, function, pf=0):
        """How the host names function ``function`` (0 PF, n VF n) of PF ``pf``, or "?"."""
        rid = None
        if self.function_rid is not None:
            rid = self.function_rid(function, pf) if pf else self.function_rid(function)
        return format_bdf(rid) if rid is not None else "?"

    def record_messages(self, messages):
        """Record delivered ``(function, address, data[, pf])`` messages as
        :class:`MsiMessage`."""
        for function, addr, data, *rest in messages:
            pf = rest[0] if rest else 0
            vector = None
            if self.message_vector is not None:
                vector = (self.message_vector(function, addr, data, pf) if pf
                          else self.message_vector(function, addr, data))
            pf_bdf = self.pf_bdf(pf) if self.pf_bdf is not None else None
            self.record(MsiMessage(function, self.bdf_of_function(function, pf), addr, data,
                                   self.step, vector=vector, pf=pf, pf_bdf=pf_bdf))


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
PCI_EXT_CAP_ID_ACS = 0x000d
PCI_ARI_CAP        = 0x04           # ARI Capability register; Next Function Number in 15:8
# ACS (PCI_ACS_*): Capability and Control registers, and their bits.
PCI_ACS_CAP        = 0x04
PCI_ACS_CTRL       = 0x06
PCI_ACS_SV, PCI_ACS_TB, PCI_ACS_RR, PCI_ACS_CR, PCI_ACS_UF = 0x01, 0x02, 0x04, 0x08, 0x10
#: What pci_std_enable_acs enables when implemented (Translation Blocking only for external
#: or untrusted devices), and REQ_ACS_FLAGS of drivers/iommu/iommu.c.
PCI_ACS_STD_ENABLE = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF
PCI_ACS_REQ        = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF
PCI_EXP_DEVCAP     = 0x04
PCI_EXP_DEVCAP_FLR = 1 << 28
PCI_EXP_DEVCTL     = 0x08
PCI_EXP_DEVCTL_BCR_FLR = 0x8000
PCI_COMMAND_INTX_DISABLE = 0x400
PCI_CAP_ID_PM      = 0x01
PCI_CAP_ID_MSIX    = 0x11
PCI_EXP_FLAGS      = 0x02
PCI_EXP_FLAGS_VERS = 0x000f
PCI_EXP_LNKCTL     = 0x10
PCI_EXP_DEVCTL2    = 0x28
PCI_EXP_LNKCTL2    = 0x30
# Power Management (PCI_PM_*).
PCI_PM_CTRL        = 0x04
PCI_PM_CTRL_STATE_MASK    = 0x0003
PCI_PM_CTRL_NO_SOFT_RESET = 0x0008
PCI_D0, PCI_D3HOT  = 0, 3
# MSI-X (PCI_MSIX_*).
PCI_MSIX_FLAGS     = 0x02
PCI_MSIX_FLAGS_QSIZE   = 0x07ff
PCI_MSIX_FLAGS_MASKALL = 0x4000
PCI_MSIX_FLAGS_ENABLE  = 0x8000
PCI_MSIX_TABLE     = 0x04
PCI_MSIX_PBA       = 0x08
PCI_MSIX_TABLE_BIR = 0x7
PCI_MSIX_ENTRY_SIZE        = 16
PCI_MSIX_ENTRY_LOWER_ADDR  = 0x0
PCI_MSIX_ENTRY_UPPER_ADDR  = 0x4
PCI_MSIX_ENTRY_DATA        = 0x8
PCI_MSIX_ENTRY_VECTOR_CTRL = 0xc
PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1
#: x86 MSI address: 0xFEE0_0000 | destination APIC ID << 12.
MSI_ADDRESS_BASE   = 0xFEE0_0000
#: First interrupt vector the host hands out (x86 FIRST_EXTERNAL_VECTOR).
FIRST_VECTOR       = 0x20


@dataclass
class FunctionInfo:
    """What enumeration learned about a function."""
    rid:      int
    vendor:   int = 0
    device:   int = 0
    caps:     dict = field(default_factory=dict)      # capability ID -> offset
    ext_caps: dict = field(default_factory=dict)      # extended capability ID -> offset
    bars:     dict = field(default_factory=dict)      # BAR index -> (address, size)

    @property
    def pm(self):
        """Offset of the Power Management capability (dev->pm_cap), or None."""
        return self.caps.get(PCI_CAP_ID_PM)

    @property
    def msix(self):
        """Offset of the MSI-X capability (dev->msix_cap), or None."""
        return self.caps.get(PCI_CAP_ID_MSIX)

    @property
    def pcie(self):
        """Offset of the PCI Express capability (dev->pcie_cap), or None."""
        return self.caps.get(PCI_CAP_ID_EXP)


@dataclass
class MsixVector:
    """One allocated MSI-X vector as Linux keeps it (struct msi_desc): the message it wrote
    and ``ctrl``, its copy of Vector Control (desc->pci.msix_ctrl)."""
    index:   int
    addr_lo: int
    addr_hi: int
    data:    int
    ctrl:    int


@dataclass
class MsixFunction:
    """A function whose MSI-X Linux enabled (dev->msix_enabled, dev->msix_base)."""
    rid:        int
    cap:        int
    table_size: int         # tsize from Message Control
    table_addr: int         # the table's host address (BAR address + Table Offset)
    pba_addr:   int
    vectors:    list = field(default_factory=list)      # MsixVector, by index


@dataclass
class SavedState:
    """What pci_save_state keeps of one function: config dwords 0x00..0x3C
    (dev->saved_config_space) and the PCI Express control registers (PCI_EXP_DEVCTL, LNKCTL and,
    for a version 2 capability, DEVCTL2, LNKCTL2), by capability-relative offset. The MSI-X
    state lives in :class:`MsixFunction` (msi_desc) and the SR-IOV state in
    :class:`sriov_tb.linux.SriovInfo` (struct pci_sriov), as in Linux."""
    config: list
    pcie:   dict


@dataclass
class PfState:
    """What the host keeps of one PF it enumerated (struct pci_dev of a PF and its
    struct pci_sriov)."""
    index:    int                       # scan order k (ascending function number)
    rid:      int
    info:     FunctionInfo
    sriov:    LinuxSriovDriver | None = None
    #: The VFs created by the last enable (FunctionInfo each).
    vfs:      list = field(default_factory=list)
    #: Header Type's Multi-Function bit (dev->multifunction; Linux also sets it on every
    #: function above 0 that the scan finds).
    multi_function: bool = False
    #: ACS Capability and the ACS Control value written (pci_enable_acs), when it has ACS.
    acs_cap:  int | None = None
    acs_ctrl: int | None = None

    @property
    def bdf(self):
        return format_bdf(self.rid)


class LinuxHost:
    """Enumerate, enable, walk and reset an SR-IOV endpoint as Linux does.

    Enumeration follows pci_scan_slot from ``pf_rid`` (function 0 of a multi-function device):
    with ARI (the root port has ARI Forwarding and the function has an ARI capability) it
    follows the Next Function Number chain, without it probes functions 1..7 when the
    Multi-Function bit of Header Type is set; a function that answers UR, or reads Vendor ID
    0xFFFF (a VF), is skipped. Each PF found is set up (BAR sizing, capability walk), runs
    sriov_init (only the first sets ARI Capable Hierarchy) and pci_enable_acs; then every PF's
    VF BARs are assigned. A single-function device (Multi-Function bit clear) is scanned no
    further: Linux would read its Next Function Number 0 and stop; the model skips that read.

    ``pfs`` lists the PFs found (:class:`PfState`); ``pf``, ``sriov`` are PF 0's, ``vfs`` every
    PF's enabled VFs (PF order). Per-PF calls take the PF's Routing ID (``pf=rid``), or PF 0's
    when left out.

    Parameters
    ----------
    root : RootPort
    pf_rid : int
        Where the PF is (function 0 of a multi-function device).
    ari : bool
        The root port has ARI Forwarding (Linux then sets ARI Capable Hierarchy).
    mmio32, mmio64 : int
        Start of the host's 32-bit and 64-bit prefetchable memory windows for BARs.
    """

    def __init__(self, root, pf_rid, *, ari=True, mmio32=0x8000_0000, mmio64=0x1_0000_0000,
                 page_size=4096, mem=None, irq=None, cpus=4):
        self.root   = root
        self.pf_rid = pf_rid
        self.ari    = ari
        self.page_size = page_size
        self._next32 = mmio32
        self._next64 = mmio64
        #: The PFs enumeration found, in scan order (:class:`PfState`).
        self.pfs    = []
        #: The bus is ARI-enabled (pci_configure_ari succeeded on function 0).
        self.ari_enabled = False
        #: Last bus reserved below the root port for the VFs (pci_iov_bus_range over every PF).
        self.subordinate_bus = None
        #: Memory port for MMIO (``access``); default: the root port's ``mem``.
        self.mem    = mem
        #: Interrupt port (``vf_msix_count``); default: the root port's ``irq``.
        self.irq    = irq
        #: CPUs MSI-X vectors are spread over (destination APIC IDs 0..cpus-1).
        self.cpus   = cpus
        #: Functions whose MSI-X is enabled: Routing ID -> :class:`MsixFunction`.
        self.msix   = {}
        #: pci_save_state results: Routing ID -> :class:`SavedState`.
        self.saved  = {}
        #: Things Linux would only log ("Refused to change power state ...").
        self.warnings = []
        self.suspended = False
        self._next_vector = FIRST_VECTOR
        self._pcie_flags = {}
        root.function_rid = self.function_rid
        root.message_vector = self._message_vector
        root.pf_bdf = self.pf_bdf

    # PF 0's state under the single-PF names.
    @property
    def pf(self):
        """PF 0's :class:`FunctionInfo` (None before enumeration)."""
        return self.pfs[0].info if self.pfs else None

    @property
    def sriov(self):
        """PF 0's :class:`LinuxSriovDriver` (None before enumeration)."""
        return self.pfs[0].sriov if self.pfs else None

    @property
    def vfs(self):
        """Every PF's enabled VFs (:class:`FunctionInfo`), PF by PF."""
        return [vf for state in self.pfs for vf in state.vfs]

    def pf_bdf(self, k):
        """PF ``k``'s BDF on a device of several PFs; None with one (labels name no PF)."""
        if len(self.pfs) < 2 or not 0 <= k < len(self.pfs):
            return None
        return self.pfs[k].bdf

    def pf_state(self, pf=None):
        """The :class:`PfState` of the PF at Routing ID ``pf`` (default: PF 0)."""
        if pf is None:
            if not self.pfs:
                raise HostError("no PF enumerated yet")
            return self.pfs[0]
        for state in self.pfs:
            if state.rid == pf:
                return state
        found = ", ".join(s.bdf for s in self.pfs) or "none yet"
        raise HostError(f"{format_bdf(pf)} is not a PF (PFs: {found})")

    def _alloc(self, size, is_64bit, align=None):
        """Bump allocation from the 32- or 64-bit window, aligned to ``align`` (default
        ``size``). Linux aligns a VF BAR's whole TotalVFs block to one VF's aperture."""
        attr = "_next64" if is_64bit else "_next32"
        align = align or size
        base = -(-getattr(self, attr) // align) * align
        setattr(self, attr, base + size)
        return base

    async def _walk_caps(self, space, info):
        """Fill ``info``'s capability offsets; return False (having read only the Status
        register) when nothing answers at the function."""
        answer, status = await space.status_of_read(0x06, 2)
        if answer == "UR":
            return False
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
        return True

    async def _setup_function(self, rid, *, required):
        """pci_scan_device + pci_setup_device + BAR sizing and assignment + pci_enable_device
        on one function. Returns ``(info, header_type)``, or None when nothing is there (Vendor
        ID dword all ones, 0, 0x0000FFFF or 0xFFFF0000, as pci_bus_generic_read_dev_vendor_id:
        a Device ID of 0xFFFF alone is a function)."""
        space = self.root.function(rid)
        info = FunctionInfo(rid)
        ident = await space.read32(0x00)
        if ident in (0xffff_ffff, 0, 0x0000_ffff, 0xffff_0000):
            if required:
                raise HostError(f"no function at {format_bdf(rid)} (read {ident:#010x})")
            return None
        info.vendor, info.device = ident & 0xffff, ident >> 16
        await space.read32(0x08)
        header_type = await space.read8(0x0e)
        if header_type & 0x7f != 0:
            raise HostError(f"{format_bdf(rid)}: header type {header_type:#x} is not 0")
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
        return info, header_type

    async def _add_pf(self, rid, info, header_type):
        """pci_init_capabilities of a PF: sriov_init, then pci_enable_acs."""
        state = PfState(len(self.pfs), rid, info, multi_function=bool(header_type & 0x80))
        cap = info.ext_caps.get(PCI_EXT_CAP_ID_SRIOV)
        if cap is None:
            raise HostError(f"{format_bdf(rid)} has no SR-IOV capability")
        space = self.root.function(rid)
        self.root.step = "sriov_init"
        # sriov_init sets ARI Capable Hierarchy only when no PF is on the bus yet.
        state.sriov = LinuxSriovDriver(space, cap, pf_rid=rid,
                                       ari=self.ari_enabled and not self.pfs,
                                       page_size=self.page_size)
        await state.sriov.init()
        acs = info.ext_caps.get(PCI_EXT_CAP_ID_ACS)
        if acs is not None:             # pci_acs_init -> pci_enable_acs -> pci_std_enable_acs
            self.root.step = "enable ACS"
            state.acs_cap = await space.read16(acs + PCI_ACS_CAP)
            ctrl = await space.read16(acs + PCI_ACS_CTRL)
            state.acs_ctrl = ctrl | (state.acs_cap & PCI_ACS_STD_ENABLE)
            await space.write16(acs + PCI_ACS_CTRL, state.acs_ctrl)
        self.pfs.append(state)
        return state

    async def enumerate(self):
        """pci_scan_slot from ``pf_rid``: each PF set up (BARs, capabilities), sriov_init and
        ACS enabled, in scan order; then every PF's VF BARs assigned (room for TotalVFs VFs
        each). Returns PF 0's :class:`FunctionInfo`."""
        self.root.step = "enumerate"
        self.pfs = []
        info, header_type = await self._setup_function(self.pf_rid, required=True)
        ari_cap = info.ext_caps.get(PCI_EXT_CAP_ID_ARI)
        # pci_configure_ari (function 0 only): ARI Forwarding and an ARI capability.
        self.ari_enabled = self.ari and ari_cap is not None
        await self._add_pf(self.pf_rid, info, header_type)
        if header_type & 0x80:          # a multi-function device: go on scanning
            bus_devfn = self.pf_rid
            if self.ari_enabled:
                current, cap = self.pf_rid & 0xff, ari_cap
                while True:             # next_ari_fn
                    self.root.step = "enumerate"
                    space = self.root.function(bus_devfn & 0xff00 | current)
                    nfn = await space.read16(cap + PCI_ARI_CAP) >> 8
                    if nfn <= current:
                        break
                    rid = bus_devfn & 0xff00 | nfn
                    found = await self._setup_function(rid, required=False)
                    if found is None:
                        break
                    await self._add_pf(rid, *found)
                    cap = found[0].ext_caps.get(PCI_EXT_CAP_ID_ARI)
                    if cap is None:
                        break
                    current = nfn
            else:
                for fn in range((self.pf_rid & 7) + 1, 8):
                    self.root.step = "enumerate"
                    rid = self.pf_rid & 0xfff8 | fn
                    found = await self._setup_function(rid, required=False)
                    if found is not None:
                        await self._add_pf(rid, *found)
        if len(self.pfs) > 1:
            # pci_iov_bus_range: the bridge keeps every PF's VF buses; Function Dependency
            # Link may name any PF on the bus.
            self.subordinate_bus = max([self.pf_rid >> 8]
                                       + [s.sriov.info.max_vf_buses for s in self.pfs])
            links = {s.rid & 0xff for s in self.pfs}
            for state in self.pfs:
                state.sriov.bus_limit = self.subordinate_bus
                state.sriov.pf_functions = links
        for state in self.pfs:
            # Resource assignment: room for TotalVFs VFs per VF BAR.
            sriov = state.sriov
            addresses = {}
            for bar in sriov.info.bars:
                addresses[bar.index] = self._alloc(bar.size * sriov.info.total_vfs,
                                                   bar.is_64bit and bar.prefetchable,
                                                   align=bar.size)
            self.root.step = "assign VF BARs"
            await sriov.assign_bars(addresses)
        self.root.step = ""
        return self.pf

    def _step_name(self, what, state):
        """A step's name, naming the PF on a device of several PFs."""
        return f"{what} {state.bdf}" if len(self.pfs) > 1 else what

    async def enable(self, nr, pf=None):
        """``echo nr > sriov_numvfs`` on PF ``pf`` (its Routing ID; default PF 0):
        sriov_enable, then the first accesses to each VF. Returns the VFs' Routing IDs."""
        if not self.pfs:
            await self.enumerate()
        state = self.pf_state(pf)
        self.root.step = self._step_name(f"enable {nr}", state)
        rids = await state.sriov.enable(nr)
        state.vfs = []
        for vf_id, rid in enumerate(rids):
            state.vfs.append(await self.setup_vf(rid, first=vf_id == 0))
        self.root.step = ""
        return rids

    async def set_numvfs(self, rid, nr):
        """What a write of ``nr`` to the sriov_numvfs file of the function at ``rid`` does:
        0 disables, another value enables (EBUSY while VFs are enabled). Raises
        :class:`HostError` when ``rid`` is not a PF."""
        if not self.pfs:
            await self.enumerate()
        state = self.pf_state(rid)
        if nr == 0:
            await self.disable(rid)
        elif state.sriov.enabled:
            raise HostError(f"{state.bdf}: VFs are already enabled (Linux answers EBUSY); "
                            f"disable first")
        else:
            await self.enable(nr, pf=rid)

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
        if not await self._walk_caps(space, info):
            raise HostError(f"VF {format_bdf(rid)} did not answer (UR)")
        pcie = info.caps.get(PCI_CAP_ID_EXP)
        if pcie is None:
            raise HostError(f"VF {format_bdf(rid)} has no PCI Express capability")
        for offset in range(pcie, pcie + 0x3c, 4):
            await space.read32(offset)
        self.root.step = ""
        return info

    async def disable(self, pf=None):
        """sriov_disable on PF ``pf`` (its Routing ID; default PF 0)."""
        state = self.pf_state(pf)
        self.root.step = self._step_name("disable", state)
        await state.sriov.disable()
        state.vfs = []
        self.root.step = ""

    async def flr(self, rid):
        """pcie_flr: set Initiate FLR in Device Control (read-modify-write). On a PF, as
        pci_reset_function: Command saved before, BARs, Command and the SR-IOV state (that
        PF's) restored after."""
        self.root.step = f"flr {format_bdf(rid)}"
        space = self.root.function(rid)
        caps = FunctionInfo(rid)
        if not await self._walk_caps(space, caps):
            raise HostError(f"{format_bdf(rid)} did not answer (UR): no function there")
        pcie = caps.caps.get(PCI_CAP_ID_EXP)
        if pcie is None:
            raise HostError(f"{format_bdf(rid)} has no PCI Express capability")
        devcap = await space.read32(pcie + PCI_EXP_DEVCAP)
        if not devcap & PCI_EXP_DEVCAP_FLR:
            raise HostError(f"{format_bdf(rid)} is not FLR capable")
        state = next((s for s in self.pfs if s.rid == rid), None)
        is_pf = state is not None or (not self.pfs and rid == self.pf_rid)
        if is_pf:       # pci_reset_function saves the state it will restore
            saved_cmd = await space.read16(PCI_COMMAND)
        devctl = await space.read16(pcie + PCI_EXP_DEVCTL)
        await space.write16(pcie + PCI_EXP_DEVCTL, devctl | PCI_EXP_DEVCTL_BCR_FLR)
        if state is not None:
            self.root.step = f"restore {format_bdf(rid)}"
            for slot, (base, _size) in state.info.bars.items():
                orig = await space.read32(0x10 + 4 * slot)
                await space.write32(0x10 + 4 * slot, (base & 0xffff_fff0) | (orig & 0xf))
                if (orig & 0x7) == 0x4:
                    await space.write32(0x14 + 4 * slot, base >> 32)
            await space.write16(PCI_COMMAND, saved_cmd)
            if state.sriov is not None:
                await state.sriov.restore()
        self.root.step = ""

    # -- Functions, BARs, MMIO ---------------------------------------------------------------------

    def function_rid(self, function, pf=0):
        """Routing ID of function ``function`` (0 the PF, n its VF n) of PF ``pf`` (a PF index)
        as the host sees it, or None when VF n is not enabled."""
        if not self.pfs:
            return self.pf_rid if function == 0 and pf == 0 else None
        if not 0 <= pf < len(self.pfs):
            return None
        state = self.pfs[pf]
        if function == 0:
            return state.rid
        sriov = state.sriov
        if sriov is None or sriov.info is None or not sriov.enabled:
            return None
        if not 1 <= function <= sriov.info.num_vfs:
            return None
        return sriov.vf_rid(function - 1)

    def pf_function_of(self, rid):
        """``(pf, function)`` of Routing ID ``rid``: the PF index and 0 for the PF itself or n
        for its VF n; None if it is neither a PF nor an enabled VF."""
        if not self.pfs:
            return (0, 0) if rid == self.pf_rid else None
        for state in self.pfs:
            if rid == state.rid:
                return state.index, 0
        for state in self.pfs:
            sriov = state.sriov
            if sriov is None or sriov.info is None or not sriov.enabled:
                continue
            info = sriov.info
            delta = (rid - state.rid - info.offset) & 0xffff
            if info.stride:
                n, rest = divmod(delta, info.stride)
            else:
                n, rest = 0, delta
            if not rest and n < info.num_vfs:
                return state.index, n + 1
        return None

    def function_of(self, rid):
        """Function number (0 a PF, n VF n of its PF) of Routing ID ``rid``, or None if it is
        neither a PF nor an enabled VF. :meth:`pf_function_of` also names the PF."""
        found = self.pf_function_of(rid)
        return None if found is None else found[1]

    def info_of(self, rid):
        """The :class:`FunctionInfo` enumeration made for ``rid`` (a PF or a created VF)."""
        for state in self.pfs:
            if rid == state.rid:
                return state.info
        for state in self.pfs:
            for vf in state.vfs:
                if vf.rid == rid:
                    return vf
        raise HostError(f"{format_bdf(rid)} is not a function the host enumerated")

    def bar_address(self, rid, bir):
        """Host address of BAR ``bir`` of function ``rid`` (pci_resource_start): a PF BAR, or
        for VF n the VF BAR's base + (n-1) * its per-VF size (pci_iov_resource)."""
        found = self.pf_function_of(rid)
        if found is None:
            raise HostError(f"{format_bdf(rid)} is not a PF or an enabled VF")
        pf, function = found
        state = self.pfs[pf] if self.pfs else None
        if function == 0:
            if state is None or bir not in state.info.bars:
                raise HostError(f"{format_bdf(rid)} has no BAR{bir}")
            return state.info.bars[bir][0]
        for bar in state.sriov.info.bars:
            if bar.index == bir and bir in state.sriov.bar_addresses:
                return state.sriov.bar_addresses[bir] + (function - 1) * bar.size
        raise HostError(f"{format_bdf(rid)} has no VF BAR{bir}")

    def iommu_groups(self):
        """The IOMMU groups Linux's pci_device_group forms for the functions enumerated (PFs
        and enabled VFs), as sorted lists of Routing IDs, ordered by their first member.

        The root port is taken to have ACS (the walk up the hierarchy stops at it), and no
        function has a DMA alias. A VF is then alone (pci_acs_enabled is true for a VF). A PF
        is alone unless it is multi-function and pci_acs_enabled fails: it has no ACS
        capability, or ACS Control lacks a bit of Source Validation, Request Redirect,
        Completion Redirect, Upstream Forwarding that ACS Capability has
        (pci_acs_flags_enabled counts the bits a capability lacks as enabled, so Capability 0
        passes). Such PFs share one group per slot (bus, device number:
        get_pci_function_alias_group)."""
        groups, shared = [], {}
        for state in self.pfs:
            isolated = not state.multi_function or (
                state.acs_cap is not None
                and (state.acs_ctrl & state.acs_cap & PCI_ACS_REQ) == state.acs_cap & PCI_ACS_REQ)
            if isolated:
                groups.append([state.rid])
            else:
                slot = state.rid >> 3
                if slot not in shared:
                    shared[slot] = []
                    groups.append(shared[slot])
                shared[slot].append(state.rid)
            groups.extend([vf.rid] for vf in state.vfs)
        return sorted((sorted(g) for g in groups), key=lambda g: g[0])

    def _memory(self):
        port = self.mem if self.mem is not None else self.root.mem
        if port is None or not hasattr(port, "access") \
                or not getattr(port, "has_access", True):
            raise HostError("MMIO needs a memory port with access() (MSI-X table accesses); "
                            "this backend's memory driver only decodes")
        return port

    async def mmio(self, op, addr, size, value=0):
        """One MMIO read (``op`` "memrd") or write ("memwr") of ``size`` bytes, recorded in the
        transcript; returns the :class:`MemTransaction`. See :func:`memory_transaction`."""
        txn = await memory_transaction(self._memory(), op, addr, size, value,
                                       memories=getattr(self.root, "memories", None),
                                       step=self.root.step, pf_bdf=self.pf_bdf)
        self.root.record(txn)
        return txn

    async def readl(self, addr):
        return (await self.mmio("memrd", addr, 4)).value

    async def writel(self, value, addr):
        await self.mmio("memwr", addr, 4, value)

    def _step(self, step):
        previous, self.root.step = self.root.step, step
        return previous

    # -- MSI-X -------------------------------------------------------------------------------------

    async def _intx_for_msi(self, space):
        """pci_intx_for_msi(dev, 0) -> pci_intx: set Command.Interrupt Disable if clear."""
        cmd = await space.read16(PCI_COMMAND)
        if not cmd & PCI_COMMAND_INTX_DISABLE:
            await space.write16(PCI_COMMAND, cmd | PCI_COMMAND_INTX_DISABLE)

    async def _msix_clear_and_set_ctrl(self, space, cap, clear, set_):
        """pci_msix_clear_and_set_ctrl: R16 Message Control, W16 (ctrl & ~clear) | set."""
        ctrl = await space.read16(cap + PCI_MSIX_FLAGS)
        await space.write16(cap + PCI_MSIX_FLAGS, (ctrl & ~clear | set_) & 0xffff)

    async def _write_msi_msg(self, state, vec):
        """__pci_write_msi_msg for an MSI-X entry: mask it around the update if the cached
        Vector Control says unmasked (pci_msix_write_vector_ctrl), write address lo/hi and
        data, then read Message Data back to flush the posted writes."""
        base = state.table_addr + PCI_MSIX_ENTRY_SIZE * vec.index
        unmasked = not vec.ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT
        if unmasked:
            await self.writel(vec.ctrl | PCI_MSIX_ENTRY_CTRL_MASKBIT,
                              base + PCI_MSIX_ENTRY_VECTOR_CTRL)
        await self.writel(vec.addr_lo, base + PCI_MSIX_ENTRY_LOWER_ADDR)
        await self.writel(vec.addr_hi, base + PCI_MSIX_ENTRY_UPPER_ADDR)
        await self.writel(vec.data, base + PCI_MSIX_ENTRY_DATA)
        if unmasked:
            await self.writel(vec.ctrl, base + PCI_MSIX_ENTRY_VECTOR_CTRL)
        await self.readl(base + PCI_MSIX_ENTRY_DATA)

    async def msix_setup(self, rid, nvec, *, master=True):
        """A driver's probe enabling ``nvec`` MSI-X vectors of ``rid`` and requesting them:
        pci_set_master (with ``master``), pci_alloc_irq_vectors(dev, 1, nvec, PCI_IRQ_MSIX)
        -> __pci_enable_msix_range -> msix_capability_init, then request_irq for each vector.

        msix_capability_init: Message Control |= Enable | Function Mask; read Table Size;
        msix_map_region (Table Offset/BIR -> the BAR's host address); msix_setup_msi_descs
        (msix_prepare_msi_desc reads each entry's Vector Control); each vector's message
        written (__pci_write_msi_msg; address 0xFEE0_0000 | cpu << 12, data a host-wide unique
        vector number); pci_intx_for_msi; msix_mask_all (every entry's Vector Control = Mask);
        Function Mask cleared. request_irq -> pci_msix_unmask: Vector Control = the cached value
        with Mask clear. Returns the :class:`MsixFunction`; fewer than ``nvec`` vectors when the
        table is smaller (min_vecs 1).
        """
        info = self.info_of(rid)
        bdf = format_bdf(rid)
        cap = info.msix
        if cap is None:
            raise HostError(f"{bdf} has no MSI-X capability")
        if rid in self.msix:
            raise HostError(f"{bdf}: MSI-X is already enabled (Linux: -EINVAL)")
        if nvec < 1:
            raise HostError(f"{bdf}: cannot enable {nvec} MSI-X vectors")
        previous = self._step(f"msix_setup {bdf}")
        space = self.root.function(rid)
        if master:      # pci_set_master -> __pci_set_master
            cmd = await space.read16(PCI_COMMAND)
            if not cmd & PCI_COMMAND_MASTER:
                await space.write16(PCI_COMMAND, cmd | PCI_COMMAND_MASTER)
        # pci_msix_vec_count
        hwsize = (await space.read16(cap + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_QSIZE) + 1
        nvec = min(nvec, hwsize)
        # msix_capability_init
        await self._msix_clear_and_set_ctrl(space, cap, 0,
                                            PCI_MSIX_FLAGS_MASKALL | PCI_MSIX_FLAGS_ENABLE)
        control = await space.read16(cap + PCI_MSIX_FLAGS)
        tsize = (control & PCI_MSIX_FLAGS_QSIZE) + 1
        table = await space.read32(cap + PCI_MSIX_TABLE)           # msix_map_region
        table_addr = self.bar_address(rid, table & PCI_MSIX_TABLE_BIR) + (table & ~0x7)
        state = MsixFunction(rid, cap, tsize, table_addr, pba_addr=None)
        for i in range(nvec):                                       # msix_prepare_msi_desc
            ctrl = await self.readl(table_addr + PCI_MSIX_ENTRY_SIZE * i
                                    + PCI_MSIX_ENTRY_VECTOR_CTRL)
            state.vectors.append(MsixVector(i, 0, 0, 0, ctrl))
        self.msix[rid] = state
        for vec in state.vectors:                                   # irq domain activation
            number = self._next_vector
            self._next_vector += 1
            cpu = (number - FIRST_VECTOR) % self.cpus
            vec.addr_lo, vec.addr_hi, vec.data = MSI_ADDRESS_BASE | cpu << 12, 0, number
            await self._write_msi_msg(state, vec)
        await self._intx_for_msi(space)
        for i in range(tsize):                                      # msix_mask_all
            await self.writel(PCI_MSIX_ENTRY_CTRL_MASKBIT,
                              table_addr + PCI_MSIX_ENTRY_SIZE * i + PCI_MSIX_ENTRY_VECTOR_CTRL)
        await self._msix_clear_and_set_ctrl(space, cap, PCI_MSIX_FLAGS_MASKALL, 0)
        for vec in state.vectors:                                   # request_irq: unmask
            vec.ctrl &= ~PCI_MSIX_ENTRY_CTRL_MASKBIT
            await self.writel(vec.ctrl, table_addr + PCI_MSIX_ENTRY_SIZE * vec.index
                              + PCI_MSIX_ENTRY_VECTOR_CTRL)
        self.root.step = previous
        return state

    async def msix_mask(self, rid, index, masked=True):
        """disable_irq / enable_irq on one vector: pci_msix_mask (Vector Control with Mask set,
        then a flushing read) or pci_msix_unmask (Mask clear)."""
        state = self.msix.get(rid)
        if state is None or not 0 <= index < len(state.vectors):
            raise HostError(f"{format_bdf(rid)}: no MSI-X vector {index} enabled")
        vec = state.vectors[index]
        previous = self._step(f"{'mask' if masked else 'unmask'} {format_bdf(rid)} {index}")
        entry = state.table_addr + PCI_MSIX_ENTRY_SIZE * index
        if masked:
            vec.ctrl |= PCI_MSIX_ENTRY_CTRL_MASKBIT
            await self.writel(vec.ctrl, entry + PCI_MSIX_ENTRY_VECTOR_CTRL)
            await self.readl(state.table_addr)
        else:
            vec.ctrl &= ~PCI_MSIX_ENTRY_CTRL_MASKBIT
            await self.writel(vec.ctrl, entry + PCI_MSIX_ENTRY_VECTOR_CTRL)
        self.root.step = previous

    def msix_vector_of(self, function, addr, data, pf=0):
        """The (Routing ID, vector index) whose message Linux programmed as ``addr``/``data`` in
        ``function`` of PF ``pf`` (index), or None: how the host's interrupt handler
        dispatches a message."""
        rid = self.function_rid(function, pf)
        state = self.msix.get(rid)
        if state is None:
            return None
        for vec in state.vectors:
            if (vec.addr_hi << 32 | vec.addr_lo, vec.data) == (addr, data):
                return rid, vec.index
        return None

    def _message_vector(self, function, addr, data, pf=0):
        found = self.msix_vector_of(function, addr, data, pf)
        return found[1] if found is not None else None

    async def _restore_msix_state(self, rid):
        """__pci_restore_msix_state: pci_intx_for_msi; Message Control = Enable | Function
        Mask; for each vector its message (__pci_write_msi_msg: arch_restore_msi_irqs is true
        on x86) and its Vector Control (pci_msix_write_vector_ctrl); Function Mask cleared."""
        state = self.msix.get(rid)
        if state is None:
            return
        space = self.root.function(rid)
        await self._intx_for_msi(space)
        await self._msix_clear_and_set_ctrl(space, state.cap, 0,
                                            PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL)
        for vec in state.vectors:
            await self._write_msi_msg(state, vec)
            await self.writel(vec.ctrl, state.table_addr + PCI_MSIX_ENTRY_SIZE * vec.index
                              + PCI_MSIX_ENTRY_VECTOR_CTRL)
        await self._msix_clear_and_set_ctrl(space, state.cap, PCI_MSIX_FLAGS_MASKALL, 0)

    # -- Power management: suspend and resume ------------------------------------------------------

    async def _pcie_version(self, rid, space, pcie):
        """PCI Express Capability version (Linux reads PCI_EXP_FLAGS once, in
        set_pcie_port_type at probe; the host model reads it the first time it needs it)."""
        if rid not in self._pcie_flags:
            self._pcie_flags[rid] = await space.read16(pcie + PCI_EXP_FLAGS)
        return self._pcie_flags[rid] & PCI_EXP_FLAGS_VERS

    async def _pcie_regs(self, rid, space, pcie):
        """The PCI Express control registers an endpoint implements
        (pcie_capability_reg_implemented): Device Control, Link Control, and Device Control 2 /
        Link Control 2 for a version 2 capability (Slot and Root Control: not an endpoint's)."""
        regs = [PCI_EXP_DEVCTL, PCI_EXP_LNKCTL]
        if await self._pcie_version(rid, space, pcie) > 1:
            regs += [PCI_EXP_DEVCTL2, PCI_EXP_LNKCTL2]
        return regs

    async def save_state(self, rid):
        """pci_save_state: R32 config dwords 0x00..0x3C, then pci_save_pcie_state (R16 of each
        implemented control register). MSI-X and SR-IOV need no reads: Linux restores them from
        msi_desc and struct pci_sriov."""
        info = self.info_of(rid)
        space = self.root.function(rid)
        config = [await space.read32(4 * i) for i in range(16)]
        pcie = {}
        if info.pcie is not None:
            for reg in await self._pcie_regs(rid, space, info.pcie):
                pcie[reg] = await space.read16(info.pcie + reg)
        self.saved[rid] = SavedState(config, pcie)
        return self.saved[rid]

    async def set_low_power_state(self, rid, state=PCI_D3HOT):
        """pci_prepare_to_sleep -> pci_set_power_state -> pci_set_low_power_state: R16 PMCSR,
        W16 with PowerState = ``state``, (10 ms), R16 PMCSR to check. Without a PM capability
        the function is not power manageable and nothing happens."""
        info = self.info_of(rid)
        if info.pm is None:
            return None
        space = self.root.function(rid)
        pmcsr = await space.read16(info.pm + PCI_PM_CTRL)
        await space.write16(info.pm + PCI_PM_CTRL, pmcsr & ~PCI_PM_CTRL_STATE_MASK | state)
        now = await space.read16(info.pm + PCI_PM_CTRL) & PCI_PM_CTRL_STATE_MASK
        if now != state:
            self.warnings.append(f"{format_bdf(rid)}: Refused to change power state from D0 "
                                 f"to D{state} (PowerState reads D{now})")
        return now

    async def power_up(self, rid):
        """pci_power_up then pci_update_current_state: R16 PMCSR; unless in D0, W16 PMCSR = 0
        (PowerState D0, PME_En 0); R16 PMCSR. Returns whether the function lost its state
        (was in D3hot with No_Soft_Reset 0: "need_restore")."""
        info = self.info_of(rid)
        if info.pm is None:
            return False
        space = self.root.function(rid)
        pmcsr = await space.read16(info.pm + PCI_PM_CTRL)
        state = pmcsr & PCI_PM_CTRL_STATE_MASK
        need_restore = state == PCI_D3HOT and not pmcsr & PCI_PM_CTRL_NO_SOFT_RESET
        if state != PCI_D0:
            await space.write16(info.pm + PCI_PM_CTRL, 0)
        now = await space.read16(info.pm + PCI_PM_CTRL) & PCI_PM_CTRL_STATE_MASK
        if now != PCI_D0:
            self.warnings.append(f"{format_bdf(rid)}: still in D{now} after pci_power_up")
        return need_restore

    async def _restore_config_dword(self, space, index, saved, retry):
        """pci_restore_config_dword: R32; if it differs, W32 the saved value and, with
        ``retry``, read back and write again (up to ``retry`` times) until it sticks."""
        value = await space.read32(4 * index)
        if value == saved:
            return
        while True:
            await space.write32(4 * index, saved)
            if retry <= 0:
                return
            retry -= 1
            if await space.read32(4 * index) == saved:
                return

    async def restore_state(self, rid):
        """pci_restore_state on one function: pci_restore_pcie_state (W16 each saved control
        register), pci_restore_config_space (a Type 0 header: dwords 15..10, then the BARs 9..4
        with 10 retries, then 3..0 so that Command comes last), __pci_restore_msix_state, and
        for the PF pci_restore_iov_state -> sriov_restore_state."""
        saved = self.saved.get(rid)
        if saved is None:
            return
        info = self.info_of(rid)
        space = self.root.function(rid)
        for reg, value in saved.pcie.items():
            await space.write16(info.pcie + reg, value)
        for first, last, retry in ((10, 15, 0), (4, 9, 10), (0, 3, 0)):
            for index in range(last, first - 1, -1):
                await self._restore_config_dword(space, index, saved.config[index], retry)
        await self._restore_msix_state(rid)
        state = next((s for s in self.pfs if s.rid == rid), None)
        if state is not None and state.sriov is not None:
            await state.sriov.restore()
        del self.saved[rid]

    async def suspend(self):
        """System suspend (pci_pm_suspend_noirq), devices in reverse order of their addition
        (the PFs in scan order, then the VFs PF by PF): the VFs from the last to the first,
        then the PFs from the last to the first; for each pci_save_state, then
        pci_prepare_to_sleep (D3hot, when it has a PM capability)."""
        if self.pf is None:
            raise HostError("nothing to suspend: the PF was never enumerated")
        if self.suspended:
            raise HostError("already suspended")
        previous = self._step("suspend")
        for rid in [vf.rid for vf in reversed(self.vfs)] + [s.rid for s in reversed(self.pfs)]:
            await self.save_state(rid)
            await self.set_low_power_state(rid, PCI_D3HOT)
        self.suspended = True
        self.root.step = previous

    async def resume(self):
        """System resume (pci_pm_resume_noirq -> pci_pm_default_resume_early), the PFs first,
        then each VF: pci_power_up, pci_update_current_state, pci_restore_state (for the PF
        this re-enables the VFs through sriov_restore_state when the D3hot -> D0 transition
        reset it). pci_pme_restore does nothing without PME support."""
        if not self.suspended:
            raise HostError("not suspended")
        previous = self._step("resume")
        for rid in [s.rid for s in self.pfs] + [vf.rid for vf in self.vfs]:
            await self.power_up(rid)
            await self.restore_state(rid)
        self.suspended = False
        self.root.step = previous

    # -- Checks ------------------------------------------------------------------------------------

    async def function_state(self, rid):
        """What software can see of a function's state, read through config space and MMIO:
        Command, Device Control, PowerState (with PM), MSI-X Message Control and every table
        entry's (address low, address upper, data, Vector Control) and the PBA (with MSI-X,
        while the function decodes memory). For comparing before suspend and after resume."""
        info = self.info_of(rid)
        space = self.root.function(rid)
        previous = self._step(f"check {format_bdf(rid)}")
        state = {"command": await space.read16(PCI_COMMAND)}
        if info.pcie is not None:
            state["device_control"] = await space.read16(info.pcie + PCI_EXP_DEVCTL)
        if info.pm is not None:
            state["power_state"] = (await space.read16(info.pm + PCI_PM_CTRL)
                                    & PCI_PM_CTRL_STATE_MASK)
        if info.msix is not None:
            control = await space.read16(info.msix + PCI_MSIX_FLAGS)
            state["msix_control"] = control
            tsize = (control & PCI_MSIX_FLAGS_QSIZE) + 1
            table = await space.read32(info.msix + PCI_MSIX_TABLE)
            pba = await space.read32(info.msix + PCI_MSIX_PBA)
            table_addr = self.bar_address(rid, table & PCI_MSIX_TABLE_BIR) + (table & ~0x7)
            pba_addr = self.bar_address(rid, pba & PCI_MSIX_TABLE_BIR) + (pba & ~0x7)
            entries = []
            for i in range(tsize):
                base = table_addr + PCI_MSIX_ENTRY_SIZE * i
                entries.append(tuple([await self.readl(base + 4 * d) for d in range(4)]))
            state["msix_table"] = entries
            pending = 0
            for d in range(2 * -(-tsize // 64)):
                pending |= await self.readl(pba_addr + 4 * d) << (32 * d)
            state["msix_pba"] = pending
        self.root.step = previous
        return state


def qword_parts(addr, size, value=0):
    """The aligned QWORDs an access of ``size`` bytes at ``addr`` touches, in order: tuples of
    (address, bytes done before it, byte lane of the first byte, bytes in it, byte enables,
    the part of ``value`` that falls in it, unshifted)."""
    done = 0
    while done < size:
        at = addr + done
        lane = at & 7
        n = min(8 - lane, size - done)
        yield (at, done, lane, n, ((1 << n) - 1) << lane,
               (value >> (8 * done)) & ((1 << (8 * n)) - 1))
        done += n


async def memory_transaction(port, op, addr, size, value=0, *, memories=None, step="",
                             pf_bdf=None):
    """One memory read (``op`` "memrd") or write ("memwr") of ``size`` bytes at ``addr``
    through ``port.access``: one request per aligned QWORD it touches, with byte enables.

    Whatever the endpoint answers itself (MSI-X table/PBA) comes from the request's result;
    what a BAR claims for the user's logic is served by ``memories`` (a :class:`BarMemories`;
    reads 0 without one); unclaimed requests are UR (reads all ones). Raises :class:`HostError`
    when the QWORDs land in different functions, BARs, or both inside and outside the
    endpoint's structures. Returns the :class:`MemTransaction` (not recorded). ``pf_bdf`` (PF
    index -> BDF, on a device of several PFs) names the PF in its text.
    """
    write = op == "memwr"
    first = None
    result = 0
    cycles = None
    for at, done, lane, n, be, part in qword_parts(addr, size, value):
        res = await port.access(at, write, part << (8 * lane) if write else 0, be)
        if getattr(res, "cycles", None) is not None:
            cycles = (cycles or 0) + res.cycles
        pf = getattr(res, "pf", 0)
        where = (res.answered, res.internal, pf, res.function, res.bar)
        if first is None:
            first = res
        elif where != (first.answered, first.internal, getattr(first, "pf", 0),
                       first.function, first.bar):
            raise HostError(f"{op} of {size} bytes at {addr:#x} runs past the end of the "
                            f"{'MSI-X structure' if first.internal else 'aperture'} it starts in")
        if res.internal:
            got = (res.data >> (8 * lane)) & ((1 << (8 * n)) - 1)
        elif res.claimed:
            if write:
                if memories is not None:
                    memories.write(res.function, res.bar, res.offset, n, part, pf=pf)
                got = part
            else:
                got = (memories.read(res.function, res.bar, res.offset, n, pf=pf)
                       if memories is not None else 0)
        else:
            got = (1 << (8 * n)) - 1
        if not write:
            result |= got << (8 * done)
    if not first.answered:
        return MemTransaction(op, addr, size, "UR", value if write else result, cycles, None,
                              None, None, step)
    pf = getattr(first, "pf", 0)
    return MemTransaction(op, addr, size, "SC", value if write else result, cycles,
                          first.function, first.bar, first.offset, step, first.internal,
                          pf, pf_bdf(pf) if pf_bdf is not None else None)
