"""Transaction scripts: the text format that ``sriov-ep sim CONFIG SCRIPT`` runs, parsed into data.

One operation per line. ``#`` starts a comment anywhere on a line; blank lines are ignored.
Operation names are lowercase::

    cfgrd BDF OFFSET SIZE [== VALUE]   config read of SIZE (1, 2 or 4) bytes at OFFSET (0..0xfff)
    cfgwr BDF OFFSET SIZE VALUE        config write
    enable BDF N                       the Linux enumerate-and-enable sequence, N VFs (0..65535)
                                       of the PF at BDF (as its sriov_numvfs file)
    disable BDF                        the Linux SR-IOV disable sequence of the PF at BDF
    flr BDF                            Function Level Reset of BDF (a PF or a VF)
    idle CYCLES                        let CYCLES clock cycles pass (0..10_000_000)
    memrd ADDR SIZE [== VALUE]         memory read of SIZE (1, 2, 4 or 8) bytes at 64-bit ADDR
    memwr ADDR SIZE VALUE              memory write
    msix BDF VECTOR [== OUTCOME]       user logic raises MSI-X vector VECTOR (0..2047) of the PF
                                       or VF at BDF; OUTCOME, if given, is what must happen:
                                       sent, pending or dropped
    msix_enable BDF N                  the function's driver enables N MSI-X vectors (1..2048) as
                                       Linux does (msix_capability_init) and requests them
    msix_count BDF COUNT               the PF side sets the VF at BDF's MSI-X Table Size to COUNT
                                       vectors (0..2048; 0: the device's default)
    suspend                            system suspend: Linux saves every function's state and
                                       puts the VFs, then the PF, in D3hot
    resume                             system resume: D0, and Linux's state restore
    tlp HEX... [== EXPECT]             send one raw TLP (the ``tlp`` backend only) and check
                                       what comes back; EXPECT is ``none`` (no TLP comes back),
                                       a completion status ``SC``, ``UR``, ``CA`` or ``RRS``,
                                       or ``HEX...`` (exactly these bytes come back, one TLP)

BDFs are written as lspci writes them: ``BB:DD.F`` with a hex bus (1-2 digits), a hex device
0..1f and a function 0-7, optionally preceded by the domain ``0000:``. An ARI function number
``f`` is written as device ``f >> 3``, function ``f & 7`` (``01:10.6`` is Routing ID 0x0186).

Numbers are unsigned, in C notation: decimal, ``0x`` hex (digits in either case) or ``0b``
binary. A leading zero (``010``, C octal) and underscores are refused.

Config accesses must be naturally aligned (OFFSET a multiple of SIZE), as every access Linux
makes is. A VALUE, written or expected, must fit in SIZE bytes. Memory accesses are parsed but not
checked for alignment: that is the executor's business.

A raw TLP's ``HEX...`` is its bytes in wire order (DW0 byte 0, Fmt/Type, first), written as
hex digits in whitespace-separated words of any grouping (``04000001 0000010f 01000000``,
``04 00 00 01 ...``); each word an even number of digits, optionally ``0x``-prefixed (the
prefix changes nothing: ``0x04000001`` is the bytes 04 00 00 01). The TLP is a whole number of
DWs: a 3 DW header (4 DW when Fmt bit 0, byte 0 bit 5, is set), then at most 1024 payload DWs.
An expected ``HEX...`` obeys the same rules. Whether the payload matches Length is checked when
the TLP is sent (a run failure), not here.

The parser stops at the first malformed line and raises :class:`ScriptError`, whose message
names the file, the line and what is wrong with it. :func:`check_pf_targets` refuses, the same
way, an ``enable`` or ``disable`` of a function that is not one of the device's PFs.
"""

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sriov_ep.params import format_bdf, parse_bdf

__all__ = ["KINDS", "TLP_OUTCOMES", "Op", "ScriptError", "parse_script", "load_script",
           "check_pf_targets"]


#: Operation names, in the order error messages list them.
KINDS = ("cfgrd", "cfgwr", "enable", "disable", "flr", "idle", "memrd", "memwr", "msix",
         "msix_enable", "msix_count", "suspend", "resume", "tlp")

#: Argument list of each operation, as error messages show it. ``[== VALUE]`` is optional.
_USAGE = {
    "cfgrd":   ("BDF", "OFFSET", "SIZE"),
    "cfgwr":   ("BDF", "OFFSET", "SIZE", "VALUE"),
    "enable":  ("BDF", "N"),
    "disable": ("BDF",),
    "flr":     ("BDF",),
    "idle":    ("CYCLES",),
    "memrd":   ("ADDR", "SIZE"),
    "memwr":   ("ADDR", "SIZE", "VALUE"),
    "msix":    ("BDF", "VECTOR"),
    "msix_enable": ("BDF", "N"),
    "msix_count":  ("BDF", "COUNT"),
    "suspend": (),
    "resume":  (),
    "tlp":     ("HEX...",),
}
#: Operations that take an optional ``== VALUE`` expectation.
_READS = ("cfgrd", "memrd", "msix")
#: What the optional expectation of an operation is called (default VALUE).
_EXPECTED = {"msix": "OUTCOME"}
#: The outcomes of an interrupt request (``msix ... == OUTCOME``).
MSIX_OUTCOMES = ("sent", "pending", "dropped")

CONFIG_SPACE_END = 0xfff
MAX_VFS          = 0xffff
MAX_IDLE_CYCLES  = 10_000_000
ADDRESS_END      = (1 << 64) - 1
CFG_SIZES        = (1, 2, 4)
#: Largest MSI-X vector number and vector count (Table Size is 11 bits: N = 1..2048).
MAX_MSIX_VECTOR  = 2047
MAX_MSIX_COUNT   = 2048
MEM_SIZES        = (1, 2, 4, 8)
#: What a raw TLP's ``== EXPECT`` may name besides bytes: nothing back, or a completion status.
TLP_OUTCOMES     = ("none", "SC", "UR", "CA", "RRS")
#: Most payload DWs a TLP carries (Length 0 encodes 1024).
MAX_TLP_PAYLOAD_DW = 1024

_HEX_RE     = re.compile(r"0[xX][0-9a-fA-F]+")
_BIN_RE     = re.compile(r"0[bB][01]+")
_DEC_RE     = re.compile(r"0|[1-9][0-9]*")
_LEADING_0  = re.compile(r"0[0-9]+")
_OCTAL_RE   = re.compile(r"0[oO][0-7]+")
# Splits a line into words; "==" is a word of its own even when written against its neighbours.
_TOKEN_RE   = re.compile(r"==|=+|[^\s=]+")
# A loose BDF shape: finds the domain, and says what is wrong with a BDF parse_bdf refuses.
_BDF_PARTS  = re.compile(r"(?:([^:]*):)?([^:]*):([^:.]*)\.(.*)")
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+")
_ARI_HINT   = "(ARI function f is written as device f>>3, function f&7)"


@dataclass(frozen=True)
class Op:
    """One operation of a script.

    Only the fields an operation uses are set; the others are ``None``.

    Parameters
    ----------
    kind : str
        ``"cfgrd"``, ``"cfgwr"``, ``"enable"``, ``"disable"``, ``"flr"``, ``"idle"``,
        ``"memrd"``, ``"memwr"``, ``"msix"``, ``"msix_enable"``, ``"msix_count"``,
        ``"suspend"``, ``"resume"`` or ``"tlp"``.
    line : int
        1-based line number in the script.
    text : str
        The source line, comment removed, stripped.
    rid : int or None
        Routing ID of the target function (cfgrd, cfgwr, enable, disable, flr, msix,
        msix_enable, msix_count).
    offset : int or None
        Config-space byte offset (cfgrd, cfgwr).
    size : int or None
        Access size in bytes (cfgrd, cfgwr, memrd, memwr).
    value : int or None
        The value written (cfgwr, memwr), or the value a read expects (cfgrd, memrd; ``None``
        when the read expects nothing).
    count : int or None
        Number of VFs (enable), of clock cycles (idle) or of MSI-X vectors (msix_enable,
        msix_count).
    addr : int or None
        Memory address (memrd, memwr).
    vector : int or None
        MSI-X vector number (msix).
    outcome : str or None
        What the interrupt request must do (msix): ``"sent"``, ``"pending"`` or ``"dropped"``;
        what must come back for a raw TLP (tlp): ``"none"``, ``"SC"``, ``"UR"``, ``"CA"`` or
        ``"RRS"``; ``None`` when the script expects nothing (or expects bytes).
    raw : bytes or None
        The raw TLP's bytes in wire order (tlp).
    expect_raw : bytes or None
        The bytes of the one TLP that must come back (tlp ``== HEX...``), else ``None``.
    """
    kind:   str
    line:   int
    text:   str
    rid:    int | None = None
    offset: int | None = None
    size:   int | None = None
    value:  int | None = None
    count:  int | None = None
    addr:   int | None = None
    vector: int | None = None
    outcome: str | None = None
    raw:    bytes | None = None
    expect_raw: bytes | None = None


class ScriptError(Exception):
    """A script cannot be read or has a malformed line.

    ``str(error)`` is ``"{filename}:{line}: {problem}"``.

    Parameters
    ----------
    filename : str
        The script's file name (``"<script>"`` for text that came from no file).
    line : int
        1-based number of the offending line; 0 when the file itself cannot be read.
    problem : str
        What is wrong.
    """

    def __init__(self, filename: str, line: int, problem: str):
        self.filename = filename
        self.line     = line
        self.problem  = problem
        super().__init__(f"{filename}:{line}: {problem}")


class _Problem(Exception):
    """What is wrong with the line being parsed; :func:`parse_script` adds file and line."""


def _short(token):
    """A token as error messages quote it: shortened if long."""
    return token if len(token) <= 40 else token[:37] + "..."


def _show(token):
    """``repr`` of a token, shortened if long, for error messages."""
    return repr(_short(token))


def _number(name, token):
    """Parse ``token`` as an unsigned number in C notation, or raise a _Problem naming ``name``."""
    if _HEX_RE.fullmatch(token) or _BIN_RE.fullmatch(token):
        return int(token, 0)
    if _DEC_RE.fullmatch(token):
        if len(token) > 40:         # beyond every limit; int() would refuse > 4300 digits
            raise _Problem(f"{name} {_show(token)} is too large")
        return int(token)
    if _LEADING_0.fullmatch(token):
        hint = f"write {int(token)} for decimal"
        if set(token) <= set("01234567"):
            hint += f", or {int(token, 8):#x} if you meant C octal"
        raise _Problem(f"{name} {_show(token)} has a leading zero, which C reads as octal; "
                       f"{hint}")
    if _OCTAL_RE.fullmatch(token):
        raise _Problem(f"{name} {_show(token)}: octal is not accepted; write it in decimal, "
                       f"0x hex or 0b binary ({int(token, 8):#x})")
    if "_" in token and _number_shape(token.replace("_", "")):
        raise _Problem(f"{name} {_show(token)}: underscores are not allowed in numbers")
    if token.startswith("-") and _number_shape(token[1:]):
        raise _Problem(f"{name} {_show(token)} is negative; numbers are unsigned")
    raise _Problem(f"{name} {_show(token)} is not a number (expected decimal, 0x hex or "
                   f"0b binary)")


def _number_shape(token):
    return any(r.fullmatch(token) for r in (_HEX_RE, _BIN_RE, _DEC_RE))


def _bdf(token):
    """Parse a BDF into a Routing ID with :func:`sriov_ep.params.parse_bdf`."""
    try:
        rid = parse_bdf(token)
    except ValueError as exc:
        raise _Problem(_bdf_problem(token) or f"{_show(token)} is not a BDF: {exc}") from None
    domain = _BDF_PARTS.fullmatch(token).group(1)
    if domain is not None and int(domain, 16) != 0:
        raise _Problem(f"{_show(token)}: domain {domain} is not 0000 (the testbench has one PCI "
                       f"domain)")
    return rid


def _bdf_problem(token):
    """Say what is wrong with a BDF that parse_bdf refused, or return None if unsure."""
    head = f"{_show(token)} is not a BDF"
    match = _BDF_PARTS.fullmatch(token)
    if match is None:
        return f"{head} (expected BB:DD.F as lspci writes it, e.g. 01:00.0)"
    domain, bus, dev, fn = match.groups()
    if domain is not None and not (len(domain) == 4 and _HEX_DIGITS.fullmatch(domain)):
        return f"{head}: domain {domain!r} is not 4 hex digits (0000)"
    if not (1 <= len(bus) <= 2 and _HEX_DIGITS.fullmatch(bus)):
        return f"{head}: bus {bus!r} is not 1-2 hex digits (00..ff)"
    if not (1 <= len(dev) <= 2 and _HEX_DIGITS.fullmatch(dev)):
        return f"{head}: device {dev!r} is not 1-2 hex digits (00..1f)"
    if int(dev, 16) > 0x1f:
        return f"{head}: device {int(dev, 16):#x} is above 0x1f {_ARI_HINT}"
    if re.fullmatch(r"[0-9]+", fn) and int(fn) > 7:
        return f"{head}: function {fn} is above 7 {_ARI_HINT}"
    if not re.fullmatch(r"[0-7]", fn):
        return f"{head}: function {fn!r} is not a single digit 0-7"
    return None


def _check_fit(name, token, value, size):
    if value >> (8 * size):
        unit = "byte" if size == 1 else "bytes"
        raise _Problem(f"{name} {token} does not fit in {size} {unit} "
                       f"(0..{(1 << 8 * size) - 1:#x})")


def _size(token, allowed):
    size = _number("SIZE", token)
    if size not in allowed:
        names = ", ".join(str(s) for s in allowed[:-1]) + f" or {allowed[-1]}"
        raise _Problem(f"SIZE must be {names}, got {_short(token)}")
    return size


def _split_args(kind, args):
    """Check the number of arguments; return (positional arguments, expected-value token)."""
    names = _USAGE[kind]
    usage = " ".join(names)
    expected_name = _EXPECTED.get(kind, "VALUE")
    if kind in _READS:
        usage += f" [== {expected_name}]"

    def count_problem(got, detail):
        plural = "" if got == 1 else "s"
        takes = usage if names else "no arguments"
        return _Problem(f"{kind} takes {takes}, got {got} argument{plural} ({detail})")

    if "==" in args:
        i = args.index("==")
        if kind not in _READS:
            raise _Problem(f"{kind} takes no expected value ('==' is for reads: "
                           f"{', '.join(_READS)})")
        if i < len(names):
            raise count_problem(i, f"{names[i]} is missing before '=='")
        if i > len(names):
            raise count_problem(i, f"expected '==' after {names[-1]}, "
                                   f"got {_show(args[len(names)])}")
        if i == len(args) - 1:
            raise _Problem(f"'==' must be followed by the expected {expected_name}")
        if i + 2 < len(args):
            raise _Problem(f"unexpected {_show(args[i + 2])} after the expected "
                           f"{expected_name}")
        return args[:i], args[i + 1]

    if len(args) < len(names):
        raise count_problem(len(args), f"{names[len(args)]} is missing")
    if len(args) > len(names):
        if kind in _READS and len(args) <= len(names) + 2:
            raise _Problem(f"expected '==' before the expected value, got "
                           f"{_show(args[len(names)])}")
        after = f" after {names[-1]}" if names else ""
        raise count_problem(len(args), f"unexpected {_show(args[len(names)])}{after}")
    return args, None


def _tlp_bytes(name, words):
    """The bytes of a raw TLP written as hex ``words`` (``name``: HEX or EXPECT)."""
    if not words:
        raise _Problem(f"{name} is missing (the TLP's bytes in hex, e.g. 04000001 0000010f "
                       f"01000000)")
    raw = bytearray()
    for word in words:
        digits = word[2:] if word[:2] in ("0x", "0X") else word
        if not digits or not _HEX_DIGITS.fullmatch(digits):
            raise _Problem(f"{name} word {_show(word)} is not hex digits (a TLP's bytes in hex, "
                           f"optionally 0x-prefixed)")
        if len(digits) % 2:
            raise _Problem(f"{name} word {_show(word)} has an odd number of hex digits ("
                           f"{len(digits)}); each byte is two digits")
        raw += bytes.fromhex(digits)
    n = len(raw)
    if n % 4:
        raise _Problem(f"{name} is {n} byte{'s' if n != 1 else ''}, not a whole number of DWs "
                       f"(a multiple of 4 bytes)")
    if n < 12:
        raise _Problem(f"{name} is {n // 4} DW{'s' if n != 4 else ''}; a TLP header is at least "
                       f"3 DWs")
    header = 4 if raw[0] >> 5 & 1 else 3
    if n < 4 * header:
        raise _Problem(f"{name} is 3 DWs, but Fmt {raw[0] >> 5:03b}b (bit 0 set) says a 4 DW "
                       f"header")
    if n // 4 - header > MAX_TLP_PAYLOAD_DW:
        raise _Problem(f"{name} has {n // 4 - header} payload DWs after its {header} DW header; "
                       f"a TLP carries at most {MAX_TLP_PAYLOAD_DW}")
    return bytes(raw)


def _parse_tlp(args, line, text):
    if "==" in args:
        i = args.index("==")
        sent, expect = args[:i], args[i + 1:]
        if not expect:
            raise _Problem(f"'==' must be followed by EXPECT: {', '.join(TLP_OUTCOMES)} or "
                           f"the bytes in hex")
        if "==" in expect:
            raise _Problem("'==' appears twice")
    else:
        sent, expect = args, None
    raw = _tlp_bytes("HEX", sent)
    fields = {}
    if expect is not None:
        if len(expect) == 1 and expect[0] in TLP_OUTCOMES:
            fields["outcome"] = expect[0]
        elif len(expect) == 1 and (expect[0].upper() in TLP_OUTCOMES
                                   or expect[0].lower() == "none"):
            right = "none" if expect[0].lower() == "none" else expect[0].upper()
            raise _Problem(f"EXPECT {_show(expect[0])}: write {right} ({', '.join(TLP_OUTCOMES)}"
                           f" are written so)")
        else:
            fields["expect_raw"] = _tlp_bytes("EXPECT", expect)
    return Op(kind="tlp", line=line, text=text, raw=raw, **fields)


def _parse_op(kind, args, line, text):
    """Build the Op for one line whose first word is ``kind``; raise _Problem if malformed."""
    if kind == "tlp":
        return _parse_tlp(args, line, text)
    args, expect = _split_args(kind, args)
    fields = {}
    if kind in ("cfgrd", "cfgwr"):
        bdf, off_tok, size_tok = args[:3]
        fields["rid"] = _bdf(bdf)
        offset = _number("OFFSET", off_tok)
        if offset > CONFIG_SPACE_END:
            raise _Problem(f"OFFSET {_short(off_tok)} is outside config space "
                           f"(0..{CONFIG_SPACE_END:#x})")
        size = _size(size_tok, CFG_SIZES)
        if offset % size:
            raise _Problem(f"OFFSET {_short(off_tok)} with SIZE {size} is not naturally aligned "
                           f"(config accesses are; OFFSET must be a multiple of SIZE)")
        fields.update(offset=offset, size=size)
        if kind == "cfgwr":
            expect = args[3]
    elif kind in ("memrd", "memwr"):
        addr_tok, size_tok = args[:2]
        addr = _number("ADDR", addr_tok)
        if addr > ADDRESS_END:
            raise _Problem(f"ADDR {_short(addr_tok)} does not fit in 64 bits "
                           f"(0..{ADDRESS_END:#x})")
        size = _size(size_tok, MEM_SIZES)
        if addr + size - 1 > ADDRESS_END:
            raise _Problem(f"{kind} of {size} bytes at ADDR {_short(addr_tok)} runs past the "
                           f"end of the 64-bit address space")
        fields.update(addr=addr, size=size)
        if kind == "memwr":
            expect = args[2]
    elif kind == "enable":
        fields["rid"] = _bdf(args[0])
        fields["count"] = _number("N", args[1])
        if fields["count"] > MAX_VFS:
            raise _Problem(f"N {_short(args[1])} is out of range (0..{MAX_VFS})")
    elif kind in ("disable", "flr"):
        fields["rid"] = _bdf(args[0])
    elif kind == "idle":
        fields["count"] = _number("CYCLES", args[0])
        if fields["count"] > MAX_IDLE_CYCLES:
            raise _Problem(f"CYCLES {_short(args[0])} is out of range (0..{MAX_IDLE_CYCLES})")
    elif kind == "msix":
        fields["rid"] = _bdf(args[0])
        fields["vector"] = _number("VECTOR", args[1])
        if fields["vector"] > MAX_MSIX_VECTOR:
            raise _Problem(f"VECTOR {_short(args[1])} is out of range (0..{MAX_MSIX_VECTOR}: "
                           f"an MSI-X table has at most {MAX_MSIX_COUNT} entries)")
        if expect is not None:
            if expect not in MSIX_OUTCOMES:
                hint = "; outcomes are lowercase" if expect.lower() in MSIX_OUTCOMES else ""
                raise _Problem(f"OUTCOME {_show(expect)} is not one of "
                               f"{', '.join(MSIX_OUTCOMES)}{hint}")
            fields["outcome"] = expect
            expect = None
    elif kind in ("msix_enable", "msix_count"):
        name = _USAGE[kind][1]
        fields["rid"] = _bdf(args[0])
        fields["count"] = _number(name, args[1])
        low = 1 if kind == "msix_enable" else 0
        if not low <= fields["count"] <= MAX_MSIX_COUNT:
            raise _Problem(f"{name} {_short(args[1])} is out of range ({low}..{MAX_MSIX_COUNT})")
    if expect is not None:
        value = _number("VALUE", expect)
        _check_fit("VALUE", _short(expect), value, fields["size"])
        fields["value"] = value
    return Op(kind=kind, line=line, text=text, **fields)


def parse_script(text: str, filename: str = "<script>") -> list[Op]:
    """Parse a transaction script.

    Parameters
    ----------
    text : str
        The script.
    filename : str
        Name used in error messages.

    Returns
    -------
    list of Op
        The operations, in script order.

    Raises
    ------
    ScriptError
        At the first malformed line, naming the file, the line and the problem.
    """
    ops = []
    for number, raw in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = _TOKEN_RE.findall(line)
        kind, args = words[0], words[1:]
        try:
            if kind not in KINDS:
                raise _Problem(_unknown(kind))
            ops.append(_parse_op(kind, args, number, line))
        except _Problem as exc:
            raise ScriptError(filename, number, str(exc)) from None
    return ops


def _unknown(word):
    problem = f"unknown operation {_show(word)} (expected one of {', '.join(KINDS)})"
    if word.lower() in KINDS:
        return f"{problem}; operation names are lowercase"
    close = difflib.get_close_matches(word, KINDS, n=1)
    if close:
        return f"{problem}; did you mean {close[0]!r}?"
    return problem


def load_script(path: str | os.PathLike) -> list[Op]:
    """Read and parse a transaction script file.

    Parameters
    ----------
    path : str or os.PathLike
        The script file (UTF-8).

    Returns
    -------
    list of Op
        The operations, in script order.

    Raises
    ------
    ScriptError
        If the file cannot be read (line 0, with the operating system's reason), is not UTF-8
        (the line of the first bad byte) or has a malformed line.
    """
    filename = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ScriptError(filename, 0, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ScriptError(filename, line, f"not UTF-8 text: byte {data[exc.start]:#04x} cannot "
                                          f"be decoded") from None
    return parse_script(text, filename)


def check_pf_targets(ops, pf_rids, filename="<script>"):
    """Refuse an ``enable`` or ``disable`` whose BDF is not one of ``pf_rids`` (the device's
    PFs): SR-IOV is enabled per PF, as with each PF's sriov_numvfs file. Raises
    :class:`ScriptError` naming the file and the line."""
    pf_rids = list(pf_rids)
    for op in ops:
        if op.kind in ("enable", "disable") and op.rid not in pf_rids:
            names = ", ".join(format_bdf(rid) for rid in pf_rids)
            raise ScriptError(filename, op.line,
                              f"{op.kind} {format_bdf(op.rid)}: not a PF of this device (its "
                              f"PFs: {names}); {op.kind} takes a PF's BDF")
