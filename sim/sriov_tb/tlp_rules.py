"""What :class:`sriov_ep.tlp.SriovTlpEndpoint` must do with one raw TLP, predicted from the rules.

The prediction is written from the tables of ``docs/tlp.md`` §2 ("Receive side, TLP by TLP",
"Malformed memory requests", "Error status") and §3 (memory requests), which restate PCIe Base
§2.2 and §2.7.2.2, not from the wrapper's code. What a well-formed configuration or memory
request does to the endpoint's state comes from :class:`sriov_tb.model.EndpointModel`, called as
the other drivers call it (``model.config``, ``model.memory``), and a UR the rules say sets
Unsupported Request Detected is told to the model (``model.unsupported_request``) because the
rules say so.

:func:`raw_beats` cuts the raw bytes into stream beats; :func:`predict_reaction` classifies
them and returns a :class:`Reaction`; :func:`compare_reactions` says how an observed one differs.
"""

import struct
from dataclasses import dataclass, field

from . import tlp as T
from .tlp import CplStatus, Tlp, TlpType

__all__ = ["Reaction", "raw_beats", "header_dwords", "payload_problem", "predict_reaction",
           "compare_reactions", "expectation_problem", "EVENT_NAMES", "MAX_PAYLOAD_DW"]

#: ``rx_event.kind`` values (docs/tlp.md §1).
MALFORMED, UR, POISONED, MSIX_ABORT = 1, 2, 3, 5
EVENT_NAMES = {MALFORMED: "MALFORMED", UR: "UR", POISONED: "POISONED", 4: "UNEXPECTED_CPL",
               MSIX_ABORT: "MSIX_ABORT"}
#: Max_Payload_Size Supported 000b: 128 bytes (docs/tlp.md §2).
MAX_PAYLOAD_DW = 32
#: Messages the endpoint accepts (``rx_msg``): Unlock, PM_Active_State_Nak, PM_PME_Turn_Off,
#: Set_Slot_Power_Limit.
ACCEPTED_MESSAGES = (0x00, 0x14, 0x19, 0x50)
#: Ignored Messages (§2.2.8.6) and Vendor_Defined Type 1 (§2.2.8.7): silently dropped.
SILENT_MESSAGES = (0x40, 0x41, 0x43, 0x44, 0x45, 0x47, 0x48, 0x7F)


@dataclass
class Reaction:
    """What a TLP caused (or must cause).

    ``rule``: why (the row of docs/tlp.md §2 that applies). ``completions``: TLPs on ``tx``
    with the request's tag (a prediction holds at most one). ``events``: ``rx_event``s as
    ``(kind, pf, vf)``. ``messages``: ``rx_msg`` codes. ``user``: what reached ``req`` as
    ``(Tlp, {"bar_id", "pf", "vf", "offset"})``. ``forwarded``: TLPs on ``rx_cpl``.
    ``cfg_ur``: Routing IDs ``cfg_ur`` named. ``data_bytes``: for each completion, the byte
    range of its payload that is compared (``None``: all of it). ``tx_other``: other TLPs on
    ``tx`` (MSI-X messages; observed only: the host compares them with the model's messages).
    """
    rule: str = ""
    completions: list = field(default_factory=list)
    events: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    user: list = field(default_factory=list)
    forwarded: list = field(default_factory=list)
    cfg_ur: list = field(default_factory=list)
    data_bytes: list = field(default_factory=list)
    tx_other: list = field(default_factory=list)

    def describe(self):
        """One line: what came back and what was reported."""
        parts = []
        for cpl in self.completions:
            parts.append(f"tx {cpl}")
        if not self.completions:
            parts.append("no completion")
        for kind, pf, vf in self.events:
            who = f"PF {pf}" + (f" VF {vf}" if vf else "")
            parts.append(f"rx_event {EVENT_NAMES.get(kind, kind)} {who}")
        for code in self.messages:
            parts.append(f"rx_msg {code:#04x}")
        for tlp, side in self.user:
            who = f"PF {side['pf']}" + (f" VF {side['vf']}" if side["vf"] else "")
            parts.append(f"req {tlp.type.name} to {who} BAR{side['bar_id']}+{side['offset']:#x}")
        for tlp in self.forwarded:
            parts.append(f"rx_cpl {tlp}")
        for rid in self.cfg_ur:
            parts.append(f"cfg_ur {T.rid_str(rid)}")
        for tlp in self.tx_other:
            parts.append(f"tx {tlp}")
        return "; ".join(parts)

    def as_dict(self):
        return {
            "completions": [c.to_bytes().hex() for c in self.completions],
            "events": [{"kind": EVENT_NAMES.get(k, k), "pf": pf, "vf": vf}
                       for k, pf, vf in self.events],
            "rx_msg": list(self.messages),
            "user": [dict(side, tlp=tlp.to_bytes().hex()) for tlp, side in self.user],
            "forwarded": [t.to_bytes().hex() for t in self.forwarded],
            "cfg_ur": [T.rid_str(r) for r in self.cfg_ur],
            "tx_other": [t.to_bytes().hex() for t in self.tx_other],
        }


def expectation_problem(outcome, expect_raw, got):
    """Why the observed :class:`Reaction` ``got`` does not meet a script's ``== EXPECT``
    (``outcome``: ``"none"`` or a status name; ``expect_raw``: bytes), or None."""
    back = got.completions + got.tx_other
    seen = ", ".join(f"{t} [{t.to_bytes().hex()}]" for t in back) or "nothing"
    if expect_raw is not None:
        if len(back) != 1 or back[0].to_bytes() != expect_raw:
            return f"expected {expect_raw.hex()} to come back, came {seen}"
        return None
    if outcome is None:
        return None
    if outcome == "none":
        return None if not back else f"expected nothing to come back, came {seen}"
    status = {"SC": 0, "UR": 1, "RRS": 2, "CA": 4}[outcome]
    if len(got.completions) != 1 or got.completions[0].status != status:
        return f"expected a completion with status {outcome}, came {seen}"
    return None


# -- the raw bytes -----------------------------------------------------------------------------

def header_dwords(raw):
    """The header DWs of ``raw`` (3, or 4 when Fmt bit 0 is set)."""
    n = 4 if raw[0] >> 5 & 1 else 3
    return list(struct.unpack(f">{n}I", raw[:4 * n]))


def _fmt_type(raw):
    return raw[0] >> 5, raw[0] & 0x1F


def payload_problem(raw):
    """Why the payload of ``raw`` does not fit its header, or None: a TLP with data (Fmt bit
    1) carries exactly Length DWs (0 meaning 1024); one without carries none (§2.2.2)."""
    dws = header_dwords(raw)
    fmt, _ = _fmt_type(raw)
    payload = (len(raw) - 4 * len(dws)) // 4
    if fmt & 0b010:
        words = dws[0] & 0x3FF or 1024
        if payload != words:
            return (f"its payload is {payload} DW but Length says {words} (Fmt {fmt:03b}b: a "
                    f"TLP with data); the wrapper does not check this, the transaction layer "
                    f"does before delivering a TLP (docs/tlp.md §2), so the bench cannot send it")
    elif payload:
        return (f"Fmt {fmt:03b}b says no data, but {payload} payload DW follow the header; the "
                f"bench cannot send it")
    return None


def raw_beats(raw, data_width):
    """Stream beats of the raw TLP: ``hdr`` the header DWs with DW0 in bits 127:96 (a 3 DW
    header leaves bits 31:0 zero), on the ``sop`` beat only; the payload cut into beats of
    ``data_width`` bits, payload DW i of a beat in bits 32i+31:32i with its byte 0 in bits 7:0
    (the beat's ``data`` is the little-endian integer of its bytes), one ``strb`` bit per DW."""
    dws = header_dwords(raw)
    hdr = 0
    for i, dw in enumerate(dws):
        hdr |= dw << (96 - 32 * i)
    payload = raw[4 * len(dws):]
    per_beat = data_width // 8
    chunks = [payload[i:i + per_beat] for i in range(0, len(payload), per_beat)] or [b""]
    return [{"hdr": hdr if i == 0 else 0, "data": int.from_bytes(chunk, "little"),
             "strb": (1 << (len(chunk) // 4)) - 1, "sop": int(i == 0),
             "eop": int(i == len(chunks) - 1)} for i, chunk in enumerate(chunks)]


# -- the prediction ----------------------------------------------------------------------------

def _contiguous_first(be):
    return be in (0b1000, 0b1100, 0b1110, 0b1111)


def _contiguous_last(be):
    return be in (0b0001, 0b0011, 0b0111, 0b1111)


def _memory_malformed(tlp, words):
    """The rule of "Malformed memory requests" (docs/tlp.md §2) ``tlp`` breaks, or None."""
    if tlp.type.has_data and words > MAX_PAYLOAD_DW:
        return f"payload of {words} DW beyond Max_Payload_Size ({MAX_PAYLOAD_DW} DW, §2.2.2)"
    if (tlp.address >> 2 & 0x3FF) + words > 1024:
        return f"{words} DW at {tlp.address:#x} cross a 4 KiB boundary (§2.2.7)"
    if words == 1:
        if tlp.last_be:
            return "Length 1 with Last DW BE not 0000b (§2.2.5)"
        return None
    if tlp.first_be == 0 or tlp.last_be == 0:
        return "Length > 1 with a zero First or Last DW BE (§2.2.5)"
    if (words > 2 or tlp.address & 7) and not (_contiguous_first(tlp.first_be)
                                               and _contiguous_last(tlp.last_be)):
        return "byte enables not contiguous (§2.2.5)"
    return None


def _pf_rid(model, k):
    """PF ``k``'s Routing ID: the captured bus and its function number."""
    return model.pf(k).pf_rid


def _function_rid(model, k, vf):
    return _pf_rid(model, k) if vf == 0 else model.vf_rid(vf, pf=k)


def _ur(reaction, model, rule):
    """A UR the receive side detects: ``rx_event`` UR naming PF 0, and PF 0's Unsupported
    Request Detected set (docs/tlp.md §2, "Error status")."""
    reaction.events.append((UR, 0, 0))
    model.unsupported_request(0, 0)
    reaction.rule = rule


def _complete(reaction, request, completer, status, data=None, data_bytes=None):
    reaction.completions.append(T.completion(request, completer, status, data))
    reaction.data_bytes.append(data_bytes)


def predict_reaction(raw, model, memories=None):
    """What the wrapper must do with the raw TLP ``raw`` (bytes, payload matching Length), as
    a :class:`Reaction`; the model's state is brought in step with what the TLP does (a config
    request executed, an MSI-X table written, Unsupported Request Detected set). ``memories``
    (a :class:`sriov_tb.host.BarMemories`) is the user logic's memory as the host knows it: a
    claimed read's data comes from it and a claimed write goes into it."""
    fmt, type_field = _fmt_type(raw)
    reaction = Reaction()
    try:
        TlpType.decode(fmt, type_field)
    except ValueError:
        reaction.events.append((MALFORMED, 0, 0))
        reaction.rule = (f"Fmt {fmt:03b}b Type {type_field:05b}b is no TLP an endpoint "
                         f"receives: malformed")
        return reaction
    tlp = Tlp.from_bytes(raw)
    t = tlp.type
    dw0 = header_dwords(raw)[0]
    words = dw0 & 0x3FF or 1024
    if t.is_config:
        return _config(tlp, words, model, reaction)
    if t.is_memory:
        return _memory(tlp, words, model, reaction, memories)
    if t.is_io:
        if words != 1 or tlp.last_be or tlp.tc or tlp.attr:
            reaction.events.append((MALFORMED, 0, 0))
            reaction.rule = "IO request with Length != 1, Last DW BE, TC or Attr: malformed"
            return reaction
        _complete(reaction, tlp, _pf_rid(model, 0), CplStatus.UR)
        if t == TlpType.IOWR and tlp.ep:
            reaction.events.append((POISONED, 0, 0))
            reaction.rule = "poisoned IOWr: Cpl UR, poisoned"
        else:
            _ur(reaction, model, "IO request (no I/O BARs): Cpl UR")
        return reaction
    if t.is_atomic:
        _complete(reaction, tlp, _pf_rid(model, 0), CplStatus.UR)
        if tlp.ep:
            reaction.events.append((POISONED, 0, 0))
            reaction.rule = "poisoned AtomicOp: Cpl UR, poisoned"
        else:
            _ur(reaction, model, "AtomicOp (not supported): Cpl UR")
        return reaction
    if t.is_message:
        if t == TlpType.MSGD and words > MAX_PAYLOAD_DW:
            reaction.events.append((MALFORMED, 0, 0))
            reaction.rule = f"MsgD of {words} DW beyond Max_Payload_Size: malformed"
        elif t == TlpType.MSGD and tlp.ep:
            reaction.events.append((POISONED, 0, 0))
            reaction.rule = "poisoned MsgD: dropped"
        elif tlp.message_code in ACCEPTED_MESSAGES:
            reaction.messages.append(tlp.message_code)
            reaction.rule = f"message {tlp.message_code:#04x} accepted: rx_msg"
        elif tlp.message_code in SILENT_MESSAGES:
            reaction.rule = f"message {tlp.message_code:#04x} ignored: silently dropped"
        else:
            _ur(reaction, model, f"message {tlp.message_code:#04x} unsupported: dropped, UR")
        return reaction
    # Completions.
    if t.has_data and words > MAX_PAYLOAD_DW:
        reaction.events.append((MALFORMED, 0, 0))
        reaction.rule = f"{t.name} of {words} DW beyond Max_Payload_Size: malformed"
        return reaction
    reaction.forwarded.append(tlp)
    reaction.rule = "completion: forwarded to rx_cpl unchanged"
    return reaction


def _config(tlp, words, model, reaction):
    t = tlp.type
    if words != 1 or tlp.last_be or tlp.tc or tlp.attr:
        reaction.events.append((MALFORMED, 0, 0))
        reaction.rule = "config request with Length != 1, Last DW BE, TC or Attr: malformed"
        return reaction
    type1 = t in (TlpType.CFGRD1, TlpType.CFGWR1)
    write = t in (TlpType.CFGWR0, TlpType.CFGWR1)
    data = int.from_bytes(tlp.data, "little") if write else 0
    if write and tlp.ep:
        status, value = "UR", 0
        reaction.events.append((POISONED, 0, 0))
        reaction.rule = "poisoned CfgWr: not executed, Cpl UR"
    else:
        status, value = model.config(type1, tlp.target_id, tlp.register, tlp.first_be, write,
                                     data)
        reaction.rule = f"config request: the model answers {status}"
        if status == "UR":
            reaction.cfg_ur.append(tlp.target_id)
    # Completer ID: the target ID (Type 1), or the captured bus with its device/function.
    completer = tlp.target_id if type1 else model.captured_bus << 8 | (tlp.target_id & 0xFF)
    if status == "SC" and not write:
        _complete(reaction, tlp, completer, CplStatus.SC, value)
    else:
        _complete(reaction, tlp, completer, CplStatus[status])
    return reaction


def _memory(tlp, words, model, reaction, memories):
    t = tlp.type
    bad = _memory_malformed(tlp, words)
    if bad is not None:
        reaction.events.append((MALFORMED, 0, 0))
        reaction.rule = f"malformed memory request: {bad}"
        return reaction
    write = t in (TlpType.MWR32, TlpType.MWR64)
    if write and tlp.ep:
        reaction.events.append((POISONED, 0, 0))
        reaction.rule = "poisoned MWr: dropped without decoding"
        return reaction
    if t in (TlpType.MRDLK32, TlpType.MRDLK64):
        _complete(reaction, tlp, _pf_rid(model, 0), CplStatus.UR)
        _ur(reaction, model, "MRdLk (locked reads not supported): CplLk UR")
        return reaction
    at = tlp.address
    fits = words == 1 or (words == 2 and at & 7 == 0)
    data, be = 0, 0
    if fits:
        lane = at & 4
        be = (tlp.first_be | tlp.last_be << 4) << lane
        if write:
            data = int.from_bytes(tlp.data, "little") << (8 * lane)
    res = model.memory(at, write, data, be if fits else 0)
    if not (res.claimed or res.internal):
        if not write:
            _complete(reaction, tlp, _pf_rid(model, 0), CplStatus.UR)
        _ur(reaction, model, f"memory request at {at:#x} claimed by no BAR: "
                             f"{'dropped' if write else 'Cpl UR'}")
        return reaction
    k, vf = res.pf, res.vf if res.is_vf else 0
    rid = _function_rid(model, k, vf)
    who = f"PF {k}" + (f" VF {vf}" if vf else "")
    if res.claimed:
        side = {"bar_id": res.bar, "pf": k, "vf": vf, "offset": res.offset}
        reaction.user.append((tlp, side))
        reaction.rule = f"memory request claimed by {who} BAR{res.bar}: to the user (req)"
        if write:
            user_write(memories, tlp, side)
        else:
            first = T.read_lower_address(0, tlp.first_be) & 3
            n = T.read_byte_count(words, tlp.first_be, tlp.last_be)
            value = b""
            if memories is not None:
                value = memories.read(vf, res.bar, res.offset + first, n, pf=k).to_bytes(n,
                                                                                       "little")
            _complete(reaction, tlp, rid, CplStatus.SC, value or bytes(n),
                      (first, first + n) if memories is not None else (0, 0))
        return reaction
    # Internal: the function's MSI-X table or PBA.
    if not fits:
        reaction.rule = (f"{who}'s MSI-X table/PBA access not one aligned DW or QWORD: "
                         f"{'dropped' if write else 'Cpl CA'}")
        if not write:
            _complete(reaction, tlp, rid, CplStatus.CA)
        reaction.events.append((MSIX_ABORT, k, vf))
        return reaction
    reaction.rule = f"{who}'s MSI-X table/PBA: {'written' if write else 'read, CplD'}"
    if not write:
        first = T.read_lower_address(0, tlp.first_be) & 3
        n = T.read_byte_count(words, tlp.first_be, tlp.last_be)
        value = (res.data >> (8 * (at & 4))).to_bytes(8, "little")
        _complete(reaction, tlp, rid, CplStatus.SC, value[first:first + n], (first, first + n))
    return reaction


def user_write(memories, tlp, side):
    """The enabled bytes of a claimed MWr into the user logic's memories (``side``: the
    ``req`` sidebands ``pf``, ``vf``, ``bar_id``, ``offset``): what the bench's user logic does
    with the write, and what the prediction expects it to have done."""
    if memories is None:
        return
    words = len(tlp.data) // 4
    for i in range(words):
        be = tlp.first_be if i == 0 else (tlp.last_be if i == words - 1 else 0xF)
        for b in range(4):
            if be >> b & 1:
                memories.write(side["vf"], side["bar_id"], side["offset"] + 4 * i + b, 1,
                               tlp.data[4 * i + b], pf=side["pf"])


# -- comparing ---------------------------------------------------------------------------------

def _same_completion(got, want, span):
    a, b = got.fields_dict(), want.fields_dict()
    got_data, want_data = a.pop("data"), b.pop("data")
    if a != b:
        return False
    if span is None:
        return got_data == want_data
    lo, hi = span
    return got_data[lo:hi] == want_data[lo:hi]


def compare_reactions(predicted, observed):
    """What differs between ``predicted`` and ``observed`` (:class:`Reaction`\\ s), as a list
    of readable strings (empty: they agree). Completions are compared field by field; of a
    CplD's payload only the bytes the request asked for (``predicted.data_bytes``)."""
    out = []
    if len(observed.completions) != len(predicted.completions) or not all(
            _same_completion(g, w, s) for g, w, s in zip(observed.completions,
                                                         predicted.completions,
                                                         predicted.data_bytes, strict=True)):
        want = ", ".join(str(c) for c in predicted.completions) or "none"
        got = ", ".join(str(c) for c in observed.completions) or "none"
        out.append(f"completion: predicted {want}, came back {got}")
    for name in ("events", "messages", "cfg_ur"):
        if getattr(observed, name) != getattr(predicted, name):
            show = Reaction(**{name: getattr(predicted, name)}).describe()
            seen = Reaction(**{name: getattr(observed, name)}).describe()
            label = {"events": "rx_event", "messages": "rx_msg", "cfg_ur": "cfg_ur"}[name]
            out.append(f"{label}: predicted {_strip(show)}, came {_strip(seen)}")
    if observed.user != predicted.user:
        out.append(f"req: predicted {_strip(Reaction(user=predicted.user).describe())}, came "
                   f"{_strip(Reaction(user=observed.user).describe())}")
    if observed.forwarded != predicted.forwarded:
        out.append(f"rx_cpl: predicted {[str(t) for t in predicted.forwarded] or 'nothing'}, "
                   f"came {[str(t) for t in observed.forwarded] or 'nothing'}")
    return out


def _strip(text):
    """``describe()`` without its "no completion" part, or "nothing"."""
    parts = [p for p in text.split("; ") if p != "no completion"]
    return "; ".join(parts) or "nothing"
