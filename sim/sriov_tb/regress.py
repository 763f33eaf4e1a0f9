"""Random regressions: seeded config, memory and MSI-X traffic against the reference model.

:func:`run_regression` runs ``count`` random operations on one configuration through the
script runner (:func:`sriov_tb.runner.execute`), so every config completion, memory decode,
MSI-X table access, interrupt and message is checked against a fresh
:class:`~sriov_tb.model.EndpointModel`, exactly as a script's are. The stimulus
(:class:`RandomStimulus`) is made during the run: each operation is chosen from the state the
ones before it left in the model (never from the design), so the sequence depends on the
configuration and the seed alone and a failing seed replays exactly, on any backend, with or
without waveforms.

What the stimulus does (``docs/regressions.md`` has the weights and the reasons):

* **Set-up**, as Linux would: every PF enables VFs (``enable``: enumeration, BARs, NumVFs, VF
  Enable, the first reads of each VF), the PF and a few VFs get MSI-X vectors
  (``msix_enable``). Large PFs enable a random part of their VFs here (Linux reads every VF it
  enables); the random NumVFs writes below reach the rest.
* **Config reads** of the PFs, of enabled VFs (first, last, either side of a bus boundary, any),
  of VFs past NumVFs and of absent functions, Type 0 and Type 1: inside a structure of the
  function's chain, in the header, or anywhere.
* **Config writes** to the registers that change behaviour (Command, BARs, Device Control with
  and without Initiate FLR, PMCSR power states, MSI-X Message Control, SR-IOV Control, NumVFs,
  System Page Size, VF BARs, ACS Control, user windows) with biased values, and anywhere with
  any value.
* **Memory reads and writes** of 1, 2, 4 or 8 bytes: PF BARs, VF apertures (enabled VFs, the
  first VF past NumVFs, the last of TotalVFs), the MSI-X tables and PBAs, just outside every
  aperture, and random addresses.
* **Interrupt requests** (``msix``) from the PF and from VFs Linux knows, any vector.
* **Restores**: a PF FLR as Linux does it (``flr``: saved state written back) or the PF's
  programming written again, so most functions stay alive.
"""

import bisect
import ctypes
import gc
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from sriov_ep.params import format_bdf

from .cfg import Mismatch, split_access
from .cli_support import (
    BACKENDS,
    CliError,
    Progress,
    load_config,
    print_waves,
    progress_wanted,
    runner_for,
    wave_bound,
)
from .host import (
    HostError,
    MemAccessResult,
    _describe_access,
    access_result,
    decode_result,
    qword_parts,
)
from .script import Op

__all__ = ["RandomStimulus", "RegressionResult", "run_regression", "SEEDS", "DEFAULT_COUNT",
           "add_regress_parser"]

#: The fixed seed of each configuration's run in the test suite (``tests/test_regress.py``):
#: one per configuration so that they differ; printed with every failure.
SEEDS = {
    "igb-82576": 0x5EED_1201,
    "many-vfs": 0x5EED_1202,
    "nvme": 0x5EED_1203,
    "user-caps": 0x5EED_1204,
    "cpm5-16pf": 0x5EED_1205,
    "igb-82576-dual": 0x5EED_1206,
    "quad-pf": 0x5EED_1207,
    "max-vfs": 0x5EED_1208,
}

#: Random operations per configuration: ``sriov-ep regress``'s default and the test suite's.
#: Each makes at least one transaction (a restore, an FLR or an armed interrupt several): more
#: than a million after the set-up's.
DEFAULT_COUNT = 1_000_000

#: Operation kinds and their weights in the random part.
WEIGHTS = {"cfgrd": 40, "cfgwr": 20, "memrd": 16, "memwr": 14, "msix": 6, "restore": 1,
           "flr": 1}

#: Largest number of VFs one PF enables through Linux in the set-up (each costs Linux's reads).
SETUP_VFS = 256

#: Clock cycles of VF state clearing the stimulus may cause per random operation, on average.
#: A PF reset (FLR, D3hot -> D0) or VF Enable clearing makes the PF clear one VF state entry
#: every other cycle (its requests answered with Request Retry Status meanwhile): 510 cycles
#: with 255 VFs, 131,070 with 65,535. Left free, random restores, FLRs and Control writes do
#: that every 40 operations or so, which is nothing with 255 VFs and most of the run's time
#: with 65,535. Above the budget such an operation becomes a harmless one (a read of the same
#: register, or a write that keeps VF Enable), so large PFs still get a reset every few thousand
#: operations.
CLEAR_BUDGET = 40

#: VFs per PF that get MSI-X vectors in the set-up.
MSIX_VFS = 3

# Register offsets inside the structures (PCIe Base 7.5.3, 7.5.2, 7.7.2, 9.3.3, 7.7.11).
_PCI_COMMAND, _CACHE_LINE, _INT_LINE = 0x04, 0x0C, 0x3C
_DEVCTL, _DEVSTA, _LNKCTL = 0x08, 0x0A, 0x10
_PMCSR = 0x04
_MSIX_CTRL = 0x02
_SRIOV_CTRL, _SRIOV_NUMVFS, _SRIOV_PAGE, _SRIOV_BAR = 0x08, 0x10, 0x20, 0x24
_ACS_CTRL = 0x06
_INITIATE_FLR = 0x8000
_DEVCAP, _DEVCAP_FLR = 0x04, 1 << 28


class _Weighted:
    """Draw a key of ``table`` with probability proportional to its value (one ``random()``
    and a bisection: ``Random.choices`` costs several times more)."""

    def __init__(self, table):
        self.keys = list(table)
        total, self.bounds = 0, []
        for weight in table.values():
            total += weight
            self.bounds.append(total)
        self.total = total

    def draw(self, rng):
        return self.keys[bisect.bisect_right(self.bounds, rng.random() * self.total)]


class _Pf:
    """What the stimulus knows of PF k that does not change: its structures and parameters."""

    def __init__(self, model, k):
        self.k = k
        self.model = model.pfs[k]
        self.params = self.model.params
        self.rid = self.params.pf_rid
        self.pf_caps = {s.name: s for s in self.model.pf_chain}
        self.vf_caps = {s.name: s for s in self.model.vf_chain}
        pcie = self.pf_caps.get("pcie")
        devcap = self.model.pf_read((pcie.offset + _DEVCAP) // 4) if pcie is not None else 0
        self.flr = bool(devcap & _DEVCAP_FLR)
        self.pages = [b for b in range(32) if self.params.supported_page_sizes >> b & 1]
        self.no_pages = [b for b in range(32) if not self.params.supported_page_sizes >> b & 1]
        self.saved = {}             # register offset -> (size, value): the set-up's programming
        self.linux_vfs = []         # VF numbers Linux enabled
        self.msix_functions = []    # functions (0 the PF) that have MSI-X vectors

    @property
    def sriov(self):
        return self.model.sriov

    def enabled_vfs(self):
        """NumVFs while VF Enable is set, else 0."""
        return self.sriov.num_vfs if self.sriov.vf_enable else 0


class RandomStimulus:
    """The operations of one random run: ``RandomStimulus(params, seed, count)`` is the
    ``ops`` argument of :func:`sriov_tb.runner.execute` (a callable of the host and root port
    that yields :class:`~sriov_tb.script.Op`). ``count`` counts the random operations after the
    set-up (a restore is one, however many writes it makes). :attr:`counts` tells how many of
    each kind were made, :attr:`setup_ops` how many the set-up took."""

    def __init__(self, params, seed, count, *, setup_vfs=SETUP_VFS):
        self.params = params
        self.seed = seed
        self.count = count
        self.setup_vfs = setup_vfs
        self.counts = dict.fromkeys(WEIGHTS, 0)
        #: Operations that would have made a PF clear its VF state, made harmless instead
        #: (:data:`CLEAR_BUDGET`), and those let through.
        self.clears_refused = 0
        self.clears = 0
        self.budget = 0
        self.budget_cap = 4 * max(2 * pf.total_vfs for pf in params.pfs)
        self.setup_ops = 0
        self.setup_records = 0
        self.line = 0
        #: What the run reached (see :meth:`_observe`): outcome counts by kind, and states.
        self.outcomes = {}
        self.states = set()
        #: Called after each random operation, or None.
        self.on_operation = None

    def __call__(self, host, root):
        return self._ops(host, root)

    # -- Making operations -----------------------------------------------------------------
    def _op(self, kind, text, **fields):
        self.line += 1
        return Op(kind, self.line, text, **fields)

    def _cfgrd(self, rid, offset, size):
        return self._op("cfgrd", f"cfgrd {format_bdf(rid)} {offset:#05x} {size}", rid=rid,
                        offset=offset, size=size)

    def _cfgwr(self, rid, offset, size, value):
        value &= (1 << 8 * size) - 1
        return self._op("cfgwr", f"cfgwr {format_bdf(rid)} {offset:#05x} {size} {value:#x}",
                        rid=rid, offset=offset, size=size, value=value)

    def _ops(self, host, root):
        rng = random.Random(self.seed)
        model = root.model
        pfs = [_Pf(model, k) for k in range(len(self.params.pfs))]
        yield from self._setup(rng, host, pfs)
        self.setup_ops = self.line
        self.setup_records = len(root.transcript)
        self._observed = 0
        self.budget = 0
        weighted = _Weighted(WEIGHTS)
        make = {"cfgrd": self._random_read, "cfgwr": self._random_write,
                "memrd": self._random_memory, "memwr": self._random_memory,
                "msix": self._random_interrupt, "restore": self._restore, "flr": self._flr}
        for _ in range(self.count):
            kind = weighted.draw(rng)
            self.counts[kind] += 1
            self.budget = min(self.budget + CLEAR_BUDGET, self.budget_cap)
            pf = pfs[rng.randrange(len(pfs))]
            yield from make[kind](rng, host, pf, kind)
            self._observe(root, pf)
            if self.on_operation is not None:
                self.on_operation()

    def _observe(self, root, pf):
        """Count the outcomes of the records the root port made since the last call (and drop
        them: the run's result keeps its own list), and (every 16th call) note the states the
        PF is in."""
        outcomes = self.outcomes
        for txn in root.transcript:
            key = (txn.op, getattr(txn, "status", None) or getattr(txn, "result", None))
            outcomes[key] = outcomes.get(key, 0) + 1
        root.transcript.clear()
        self._observed += 1
        if self._observed & 15:
            return
        sriov = pf.sriov
        if sriov.vf_enable:
            self.states.add("vf-enable")
            if sriov.num_vfs == pf.params.total_vfs:
                self.states.add("all-vfs")
        else:
            self.states.add("vf-disable")
        self.states.add("ari" if sriov.ari_capable_hierarchy else "no-ari")
        if pf.model.pm_power_state == 3:
            self.states.add("pf-d3hot")
        if len(pf.pages) > 1 and sriov.system_page_size_bytes > 4096:
            self.states.add("large-page")

    # -- Set-up ------------------------------------------------------------------------------
    def _setup(self, rng, host, pfs):
        for pf in pfs:
            total = pf.params.total_vfs
            if total <= self.setup_vfs:
                n = total if rng.random() < 0.6 else rng.randint(1, total)
            else:
                n = rng.randint(self.setup_vfs // 2, self.setup_vfs)
            yield self._op("enable", f"enable {format_bdf(pf.rid)} {n}", rid=pf.rid, count=n)
            pf.linux_vfs = list(range(1, n + 1))
        for pf in pfs:
            functions = []
            if pf.params.msix is not None:
                functions.append(0)
            if pf.params.vf_msix is not None:
                vfs = pf.linux_vfs
                functions += sorted({vfs[0], vfs[-1], rng.choice(vfs)})[:MSIX_VFS]
            for function in functions:
                rid = host.function_rid(function, pf.k)
                vectors = (pf.params.msix if function == 0 else pf.params.vf_msix).vectors
                nvec = rng.randint(1, vectors)
                yield self._op("msix_enable", f"msix_enable {format_bdf(rid)} {nvec}", rid=rid,
                               count=nvec)
            pf.msix_functions = functions
            self._save(pf)

    def _save(self, pf):
        """Remember the PF's programming after the set-up, to write it back now and then."""
        read = pf.model.pf_read
        saved = {_PCI_COMMAND: (2, read(_PCI_COMMAND // 4) & 0xFFFF)}
        for bar in pf.params.pf_bars:
            for slot in (bar.index, bar.index + 1)[:1 + bar.is_64bit]:
                saved[0x10 + 4 * slot] = (4, read(4 + slot))
        sriov = pf.params.sriov_cap_offset
        saved[sriov + _SRIOV_PAGE] = (4, read((sriov + _SRIOV_PAGE) // 4))
        for bar in pf.params.vf_bars:
            for slot in (bar.index, bar.index + 1)[:1 + bar.is_64bit]:
                reg = sriov + _SRIOV_BAR + 4 * slot
                saved[reg] = (4, read(reg // 4))
        saved[sriov + _SRIOV_NUMVFS] = (2, pf.sriov.num_vfs)
        saved[sriov + _SRIOV_CTRL] = (2, read((sriov + _SRIOV_CTRL) // 4) & 0xFFFF)
        pf.saved = saved

    @staticmethod
    def _leaves_d3hot(pf):
        """Whether a PMCSR write of D0 now resets the PF (D3hot -> D0, No_Soft_Reset 0)."""
        pm = pf.params.pm
        return pm is not None and not pm.no_soft_reset and pf.model.pm_power_state == 3

    def _may_clear(self, pf):
        """Whether an operation that makes PF ``pf`` clear its VF state (about two cycles per
        VF) fits the budget; if so, it is spent."""
        cost = 2 * pf.params.total_vfs
        if self.budget >= cost:
            self.budget -= cost
            self.clears += 1
            return True
        self.clears_refused += 1
        return False

    # -- Targets -------------------------------------------------------------------------------
    def _vf_number(self, rng, pf):
        """An enabled VF's number, biased to the first, the last and bus boundaries; 0 when
        none is enabled."""
        n = pf.enabled_vfs()
        if n == 0:
            return 0
        r = rng.random()
        if r < 0.15:
            return 1
        if r < 0.30:
            return n
        if r < 0.40:                    # the last VF of a bus and the first of the next
            first = pf.model.vf_rid(1)
            if first is not None and pf.sriov.vf_stride:
                boundary = ((first >> 8) + rng.randint(1, 1 + (n * pf.sriov.vf_stride >> 8)))
                m = ((boundary << 8) - first) // pf.sriov.vf_stride + rng.randint(0, 1)
                if 1 <= m <= n:
                    return m
        return rng.randint(1, n)

    def _function(self, rng, pf, *, absent=0.12):
        """``(rid, chain)`` of a function to address: the PF, an enabled VF, or (with
        probability ``absent``) a VF past NumVFs or a Routing ID nothing has."""
        r = rng.random()
        if r < absent:
            pick = rng.random()
            if pick < 0.5:
                n = min(pf.sriov.num_vfs + rng.randint(1, 2), pf.params.total_vfs)
                if rng.random() < 0.3:
                    n = pf.params.total_vfs
                rid = pf.model.vf_rid(n)
                if rid is not None:
                    return rid, pf.vf_caps
            return rng.choice([pf.rid ^ 0x0007, pf.rid + 0x0300, rng.getrandbits(16)]), \
                pf.vf_caps
        if r < absent + 0.35:
            return pf.model.pf_rid, pf.pf_caps
        n = self._vf_number(rng, pf)
        rid = pf.model.vf_rid(n) if n else None
        if rid is None:
            return pf.model.pf_rid, pf.pf_caps
        return rid, pf.vf_caps

    # -- Config --------------------------------------------------------------------------------
    def _random_read(self, rng, host, pf, kind):
        rid, caps = self._function(rng, pf)
        size = rng.choice((1, 2, 4, 4))
        where = rng.random()
        if where < 0.6 and caps:
            s = rng.choice(list(caps.values()))
            base, span = s.offset, s.size
        elif where < 0.85:
            base, span = 0, 0x40
        else:
            base, span = 0, 0x1000
        offset = base + rng.randrange(span) // size * size
        yield self._cfgrd(rid, min(offset, 0x1000 - size), size)

    def _random_write(self, rng, host, pf, kind):
        rid, caps = self._function(rng, pf, absent=0.05)
        is_pf = caps is pf.pf_caps
        r = rng.random()
        if r < 0.12:                    # anywhere, any value
            size = rng.choice((1, 2, 4))
            offset = rng.randrange(0x1000) // size * size
            yield self._cfgwr(rid, offset, size, rng.getrandbits(32))
            return
        choices = [self._write_command, self._write_header_byte, self._write_pcie]
        if "pm" in caps:
            choices.append(self._write_pm)
        if "msix" in caps:
            choices.append(self._write_msix_control)
        if any(s.user is not None for s in caps.values()):
            choices.append(self._write_user)
        if is_pf:
            choices += [self._write_pf_bar] * bool(pf.params.pf_bars)
            choices += [self._write_sriov] * 4
            if "acs" in caps:
                choices.append(self._write_acs)
        yield rng.choice(choices)(rng, pf, rid, caps, is_pf)

    def _write_command(self, rng, pf, rid, caps, is_pf):
        value = rng.getrandbits(16)
        if rng.random() < 0.9:
            value |= 0x0006             # Memory Space and Bus Master Enable
        return self._cfgwr(rid, _PCI_COMMAND, 2, value)

    def _write_header_byte(self, rng, pf, rid, caps, is_pf):
        return self._cfgwr(rid, rng.choice((_CACHE_LINE, _INT_LINE)), 1, rng.getrandbits(8))

    def _write_pcie(self, rng, pf, rid, caps, is_pf):
        pcie = caps["pcie"].offset
        r = rng.random()
        if r < 0.5:
            value = rng.getrandbits(16) & ~_INITIATE_FLR
            if rng.random() < 0.04 and (not is_pf or self._may_clear(pf)):
                value |= _INITIATE_FLR      # an FLR without Linux's restore
            return self._cfgwr(rid, pcie + _DEVCTL, 2, value)
        if r < 0.75:
            return self._cfgwr(rid, pcie + _DEVSTA, 2, rng.getrandbits(16))
        return self._cfgwr(rid, pcie + _LNKCTL, 2, rng.getrandbits(16))

    def _write_pm(self, rng, pf, rid, caps, is_pf):
        state = rng.choice((0, 0, 0, 3, 3, 1, 2))
        if is_pf and state == 0 and self._leaves_d3hot(pf) and not self._may_clear(pf):
            state = 3
        value = state | rng.choice((0, 0, 0x0100, 0x8000, rng.getrandbits(16) & ~3))
        return self._cfgwr(rid, caps["pm"].offset + _PMCSR, 2, value)

    def _write_msix_control(self, rng, pf, rid, caps, is_pf):
        value = rng.choice((0x8000, 0x8000, 0xC000, 0x4000, 0, rng.getrandbits(16)))
        return self._cfgwr(rid, caps["msix"].offset + _MSIX_CTRL, 2, value)

    def _write_user(self, rng, pf, rid, caps, is_pf):
        s = rng.choice([s for s in caps.values() if s.user is not None])
        size = rng.choice((1, 2, 4))
        offset = s.offset + rng.randrange(s.size) // size * size
        return self._cfgwr(rid, offset, size, rng.getrandbits(32))

    def _write_acs(self, rng, pf, rid, caps, is_pf):
        return self._cfgwr(rid, caps["acs"].offset + _ACS_CTRL, 2, rng.getrandbits(16))

    def _write_pf_bar(self, rng, pf, rid, caps, is_pf):
        bar = rng.choice(pf.params.pf_bars)
        slot = bar.index + (bar.is_64bit and rng.random() < 0.3)
        reg = 0x10 + 4 * slot
        r = rng.random()
        if r < 0.4:
            value = 0xFFFF_FFFF         # sizing
        elif r < 0.8:
            value = pf.saved.get(reg, (4, 0))[1]
        else:
            value = rng.getrandbits(32)
        return self._cfgwr(rid, reg, 4, value)

    def _write_sriov(self, rng, pf, rid, caps, is_pf):
        sriov = pf.params.sriov_cap_offset
        total = pf.params.total_vfs
        r = rng.random()
        if r < 0.35:                    # Control: VF Enable, VF MSE, ARI Capable Hierarchy
            value = rng.choice((0x19, 0x09, 0x11, 0x01, 0x18, 0x10, 0x08, 0x00,
                                rng.getrandbits(6), rng.getrandbits(16)))
            if pf.sriov.vf_enable and not value & 1 and not self._may_clear(pf):
                value |= 1              # (VF Enable kept: no clearing over the budget)
            return self._cfgwr(rid, sriov + _SRIOV_CTRL, 2, value)
        if r < 0.6:                     # NumVFs
            value = rng.choice((total, total, pf.saved.get(sriov + _SRIOV_NUMVFS, (2, 1))[1],
                                1, 0, total + 1, rng.randint(0, total), rng.getrandbits(16)))
            return self._cfgwr(rid, sriov + _SRIOV_NUMVFS, 2, value)
        if r < 0.75:                    # System Page Size
            pick = rng.random()
            if pick < 0.7 or not pf.no_pages:
                value = 1 << rng.choice(pf.pages)
            elif pick < 0.85:
                value = 1 << rng.choice(pf.no_pages)
            else:
                value = rng.getrandbits(32)
            return self._cfgwr(rid, sriov + _SRIOV_PAGE, 4, value)
        if not pf.params.vf_bars:
            return self._cfgrd(rid, sriov + _SRIOV_BAR, 4)
        bar = rng.choice(pf.params.vf_bars)
        slot = bar.index + (bar.is_64bit and rng.random() < 0.3)
        reg = sriov + _SRIOV_BAR + 4 * slot
        pick = rng.random()
        if pick < 0.3:
            value = 0xFFFF_FFFF
        elif pick < 0.8:
            value = pf.saved.get(reg, (4, 0))[1]
        else:
            value = rng.getrandbits(32)
        return self._cfgwr(rid, reg, 4, value)

    # -- Memory --------------------------------------------------------------------------------
    def _random_memory(self, rng, host, pf, kind):
        size = rng.choice((1, 2, 4, 4, 8, 8))
        addr = self._address(rng, pf) // size * size & (1 << 64) - 1
        if kind == "memrd":
            yield self._op("memrd", f"memrd {addr:#x} {size}", addr=addr, size=size)
        else:
            value = rng.getrandbits(8 * size)
            yield self._op("memwr", f"memwr {addr:#x} {size} {value:#x}", addr=addr, size=size,
                           value=value)

    def _address(self, rng, pf):
        r = rng.random()
        if r < 0.3 and pf.params.pf_bars:
            bar = rng.choice(pf.params.pf_bars)
            base = pf.model.bar_address.get(bar.index, 0)
            return base + self._offset(rng, bar.size, pf.params.msix, bar.index)
        if r < 0.85 and pf.params.vf_bars:
            bar = rng.choice(pf.params.vf_bars)
            base = pf.sriov.vf_bar_base(bar.index) or 0
            aperture = pf.sriov.vf_bar_aperture(bar.index)
            n = self._vf_number(rng, pf) or 1
            pick = rng.random()
            if pick < 0.1:
                n = pf.sriov.num_vfs + 1
            elif pick < 0.15:
                n = pf.params.total_vfs
            return base + (n - 1) * aperture + \
                self._offset(rng, aperture, pf.params.vf_msix, bar.index)
        pick = rng.random()
        if pick < 0.4 and pf.params.vf_bars:        # just outside the VF apertures
            bar = rng.choice(pf.params.vf_bars)
            base = pf.sriov.vf_bar_base(bar.index) or 0
            aperture = pf.sriov.vf_bar_aperture(bar.index)
            return rng.choice((base - 8, base + pf.sriov.num_vfs * aperture,
                               base + pf.params.total_vfs * aperture))
        if pick < 0.6 and pf.params.pf_bars:        # just outside a PF BAR
            bar = rng.choice(pf.params.pf_bars)
            base = pf.model.bar_address.get(bar.index, 0)
            return rng.choice((base - 8, base + bar.size))
        return rng.getrandbits(rng.choice((32, 64)))

    def _offset(self, rng, size, msix, slot):
        """An offset inside a BAR of ``size`` bytes, often in the MSI-X table or PBA when they
        sit in this BAR."""
        if msix is not None and rng.random() < 0.5:
            if msix.table_bar == slot and (msix.pba_bar != slot or rng.random() < 0.75):
                return msix.table_offset + rng.randrange(msix.table_bytes)
            if msix.pba_bar == slot:
                return msix.pba_offset + rng.randrange(msix.pba_bytes)
        return rng.randrange(size)

    # -- Interrupts, restores ------------------------------------------------------------------
    def _random_interrupt(self, rng, host, pf, kind):
        if not pf.msix_functions:
            yield from self._random_read(rng, host, pf, "cfgrd")
            return
        function = rng.choice(pf.msix_functions)
        rid = host.function_rid(function, pf.k)
        if rid is None:                 # (Linux's view: the PF's VFs were disabled by Linux)
            rid = host.function_rid(0, pf.k)
            function = 0
        msix = pf.params.msix if function == 0 else pf.params.vf_msix
        vectors = msix.vectors if msix is not None else 1
        vector = rng.randint(0, vectors) if rng.random() < 0.9 else rng.randrange(2048)
        if rng.random() < 0.4 and vector < vectors:
            yield from self._arm(pf, function, msix, vector)
        yield self._op("msix", f"msix {format_bdf(rid)} {vector}", rid=rid, vector=vector)

    def _arm(self, pf, function, msix, vector):
        """Make the function able to send ``vector`` as the model sees it now (what random
        writes undo): D0, Bus Master Enable, MSI-X enabled and unmasked, the vector's Mask
        clear. Skipped for a VF that is not enabled."""
        if function:
            if not 1 <= function <= pf.enabled_vfs():
                return
            rid, caps = pf.model.vf_rid(function), pf.vf_caps
            base = pf.sriov.vf_bar_base(msix.table_bar)
            base += (function - 1) * pf.sriov.vf_bar_aperture(msix.table_bar)
        else:
            rid, caps = pf.model.pf_rid, pf.pf_caps
            base = pf.model.bar_address.get(msix.table_bar, 0)
        if rid is None:
            return
        if "pm" in caps:
            if not function and self._leaves_d3hot(pf) and not self._may_clear(pf):
                return
            yield self._cfgwr(rid, caps["pm"].offset + _PMCSR, 2, 0)
        yield self._cfgwr(rid, _PCI_COMMAND, 2, 0x0006)
        yield self._cfgwr(rid, caps["msix"].offset + _MSIX_CTRL, 2, 0x8000)
        addr = (base + msix.table_offset + 16 * vector + 12) & (1 << 64) - 1  # Vector Control
        yield self._op("memwr", f"memwr {addr:#x} 4 0x0", addr=addr, size=4, value=0)

    def _restore(self, rng, host, pf, kind):
        """The PF's set-up programming written again: VF Enable cleared first (NumVFs and the
        VF BARs only change while it is clear), then the saved registers, Control last."""
        sriov = pf.params.sriov_cap_offset
        rid = pf.model.pf_rid
        control = pf.saved[sriov + _SRIOV_CTRL][1]
        clears = (pf.sriov.vf_enable or self._leaves_d3hot(pf)) and not self._may_clear(pf)
        if clears:                      # over the budget: what needs no clearing only
            for reg, (size, value) in pf.saved.items():
                if reg < 0x40:
                    yield self._cfgwr(rid, reg, size, value)
            return
        yield self._cfgwr(rid, sriov + _SRIOV_CTRL, 2, control & 0x10)
        for reg, (size, value) in pf.saved.items():
            if reg != sriov + _SRIOV_CTRL:
                yield self._cfgwr(rid, reg, size, value)
        if "pm" in pf.pf_caps:
            yield self._cfgwr(rid, pf.pf_caps["pm"].offset + _PMCSR, 2, 0)
        if 0 in pf.msix_functions:     # MSI-X on, nothing masked: pending vectors go out
            yield self._cfgwr(rid, pf.pf_caps["msix"].offset + _MSIX_CTRL, 2, 0x8000)
        yield self._cfgwr(rid, sriov + _SRIOV_CTRL, 2, control)

    def _flr(self, rng, host, pf, kind):
        """Linux's FLR (``flr``: Initiate FLR, and for a PF its state written back) of the PF
        or of an enabled VF; a plain read where the function cannot be reset."""
        if not pf.flr:
            yield from self._random_read(rng, host, pf, "cfgrd")
            return
        n = self._vf_number(rng, pf) if rng.random() < 0.5 else 0
        rid = pf.model.vf_rid(n) if n else None
        if rid is None:
            if not self._may_clear(pf):
                yield from self._random_read(rng, host, pf, "cfgrd")
                return
            rid = pf.model.pf_rid
        yield self._op("flr", f"flr {format_bdf(rid)}", rid=rid)


@dataclass
class RegressionResult:
    """One random run: what was compared, how long it took, what the stimulus did."""
    name:        str
    seed:        int
    count:       int
    backend:     str
    operations:  int = 0
    compared:    int = 0
    seconds:     float = 0.0
    setup_ops:   int = 0
    counts:      dict = field(default_factory=dict)
    #: ``{(op, outcome): count}`` of what the records said: ``("cfgrd", "UR")``,
    #: ``("memwr", "SC")``, ``("msix", "sent")``, ``("msg", None)``...
    outcomes:    dict = field(default_factory=dict)
    #: States the stimulus saw a PF in: ``vf-enable``, ``all-vfs``, ``ari``, ``pf-d3hot``...
    states:      set = field(default_factory=set)
    #: Records of the run (config transactions, memory requests, interrupt requests, MSI-X
    #: messages), and how many of them the set-up made.
    transactions: int = 0
    setup_transactions: int = 0
    #: PF resets and VF Enable clearings made, and those made harmless (:data:`CLEAR_BUDGET`).
    clears:      int = 0
    clears_refused: int = 0

    @property
    def rate(self):
        """Operations per second."""
        return self.operations / self.seconds if self.seconds else 0.0

    def as_dict(self):
        return {"config": self.name, "seed": self.seed, "count": self.count,
                "backend": self.backend, "operations": self.operations,
                "compared": self.compared, "seconds": round(self.seconds, 3),
                "rate": round(self.rate, 1), "setup_ops": self.setup_ops,
                "transactions": self.transactions,
                "setup_transactions": self.setup_transactions, "clears": self.clears,
                "clears_refused": self.clears_refused, "counts": dict(self.counts),
                "outcomes": {f"{op} {outcome}" if outcome else op: n
                             for (op, outcome), n in sorted(self.outcomes.items(),
                                                            key=lambda kv: str(kv[0]))},
                "states": sorted(self.states)}


def run_regression(params, *, seed, count, name="config", backend="native", user=None,
                   build_dir=None, vcd=None, wave_from=None, wave_to=None,
                   waves_on_failure=False, mutate=None, on_operation=None):
    """Run ``count`` random operations (plus the set-up) on ``params`` with ``seed``, every
    result checked against the reference model; returns a :class:`RegressionResult`.

    ``backend``: ``"native"`` (the default: the exported Verilog compiled by Verilator),
    ``"amaranth"`` or ``"verilator"`` (cocotb). ``on_operation()`` is called after each
    random operation (a progress bar). ``user``: the handler of the user configuration windows
    (default: :class:`sriov_tb.host.UserRegisters` when the configuration has any).
    Waveform arguments as :func:`sriov_tb.runner.run_ops` takes them (transaction numbers).
    A failed check raises :class:`sriov_tb.runner.RunFailure`; its message names the seed and
    the number and text of the operation. ``mutate`` (native backend only, for tests of the
    checks): ``(n, mask, delay)`` as :func:`sriov_tb.native.run_ops_native` takes it."""
    stimulus = RandomStimulus(params, seed, count)
    if user is None and any(pf.user_caps or pf.vf_user_caps for pf in params.pfs):
        from .host import UserRegisters
        user = UserRegisters()          # plain read-write registers behind every window
    filename = f"<{name} seed {seed:#x}>"
    options = dict(filename=filename, user=user, vcd=vcd, wave_from=wave_from,
                   wave_to=wave_to, waves_on_failure=waves_on_failure)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if mutate is not None and backend != "native":
        raise ValueError("mutate is a hook of the native backend only")
    if backend != "amaranth":
        options["build_dir"] = build_dir
    if mutate is not None:
        options["mutate"] = mutate
    if on_operation is not None:
        stimulus.on_operation = on_operation
    start = time.perf_counter()
    if backend == "native" and vcd is None and wave_from is None and wave_to is None:
        compared, transactions = _run_native_lean(
            params, stimulus, filename=filename, user=user, build_dir=build_dir,
            mutate=mutate, waves_on_failure=waves_on_failure)
    else:
        run = runner_for(backend)(params, stimulus, **options)
        compared, transactions = run.compared, len(run.transactions)
    seconds = time.perf_counter() - start
    return RegressionResult(name, seed, count, backend, operations=stimulus.line,
                            compared=compared, seconds=seconds,
                            setup_ops=stimulus.setup_ops, counts=dict(stimulus.counts),
                            outcomes=dict(stimulus.outcomes), states=set(stimulus.states),
                            transactions=transactions,
                            setup_transactions=stimulus.setup_records, clears=stimulus.clears,
                            clears_refused=stimulus.clears_refused)


# -- The lean loop of the native backend -----------------------------------------------------------

def _run_native_lean(params, stimulus, *, filename, user, build_dir, mutate, waves_on_failure):
    """Run ``stimulus`` on the native backend with the checks of
    :func:`sriov_tb.runner.execute`, faster: ``(compared, transactions)``.

    The host, the root port, the scoreboard and the reference model are those ``execute``
    makes, and every operation but the config reads and writes runs through the runner's own
    code (:func:`sriov_tb.runner._run_op`). Config reads and writes, most of a run, go straight
    to the native model and the reference model (:func:`_LeanConfig`): the same requests in the
    same order, every completion compared as :class:`sriov_tb.host.Scoreboard` compares it, the
    MSI-X messages drained and compared after each as :class:`sriov_tb.host.RootPort` does, and
    the same failure messages; what they skip is what only a transcript needs (the
    :class:`~sriov_tb.host.Transaction` records, kept nowhere here: they are counted, and their
    outcomes go to the stimulus's coverage counts). A failure with ``waves_on_failure`` is
    repeated on the traced model through :func:`sriov_tb.native.run_ops_native` (the standard
    path, same operations), as the native backend does for any run."""
    from . import native
    from .cosim import with_failure_waves

    def run(emit, on_transaction, on_dump, vcd, wave_from, wave_to):
        if vcd is None:
            return _lean(params, stimulus, filename=filename, user=user, build_dir=build_dir,
                         mutate=mutate)
        again = RandomStimulus(params, stimulus.seed, stimulus.count,
                               setup_vfs=stimulus.setup_vfs)
        return native.run_ops_native(params, again, filename=filename, user=user,
                                     build_dir=build_dir, mutate=mutate, vcd=vcd,
                                     wave_from=wave_from, wave_to=wave_to)

    return with_failure_waves(run, emit=None, on_transaction=None, on_dump=None, vcd=None,
                              wave_from=None, wave_to=None, waves_on_failure=waves_on_failure)


def _lean(params, stimulus, *, filename, user, build_dir, mutate):
    import copy

    from . import native
    from .cfg import Mismatch
    from .host import (
        BarMemories,
        HostError,
        InterruptPort,
        LinuxHost,
        MemoryPort,
        ModelEndpointPort,
        ModelInterruptPort,
        RootPort,
        Scoreboard,
        SettledDriver,
    )
    from .linux import SriovError
    from .model import EndpointModel
    from .runner import RunFailure, _run_op, _Unexpected

    tools = native.find_native_toolchain()
    with native._built(params, build_dir=build_dir, tools=tools) as folder:
        design = native.NativeModel(folder, params)
        try:
            design.reset()
            if user is not None:        # the design's copy; the model gets another
                design.serve_user(copy.deepcopy(user))
            if mutate is not None:
                design.corrupt_completion(*mutate)
            # What execute() makes, around the same drivers as the native backend's.
            model = EndpointModel(params, user=copy.deepcopy(user))
            irq_driver = native.NativeInterruptDriver(design)
            board = Scoreboard(SettledDriver(native.NativeConfigDriver(design),
                                             irq_driver.settle), ModelEndpointPort(model))
            tally = [0]                 # records made (transactions of the transcript)

            def record(txn):
                tally[0] += 1

            root = RootPort(board, secondary_bus=params.bus, on_transaction=record)
            host = LinuxHost(root, params.pfs[0].pf_rid)
            root.mem = MemoryPort(SettledDriver(native.NativeMemoryDriver(design),
                                                irq_driver.settle), model)
            root.memories = BarMemories()
            root.model = model
            root.irq = InterruptPort(irq_driver, ModelInterruptPort(model))
            lean = _LeanConfig(design, model, root, irq_driver, root.mem.dut._driver,
                               stimulus.outcomes, tally)

            async def idle(cycles):
                design.idle(cycles)

            # The design, the model and the set-up's objects live as long as the run: out of
            # the collector's sight, its full passes no longer walk them (a few % of a run).
            gc.freeze()
            for op in stimulus(host, root):
                try:
                    kind = op.kind
                    if kind == "cfgrd" or kind == "cfgwr":
                        lean.run(op)
                    elif kind == "memrd" or kind == "memwr":
                        lean.memory(op, host.pf_bdf)
                    else:
                        root.step = f"line {op.line}" if op.line else ""
                        native.complete(_run_op(idle, host, root, op))
                except (Mismatch, HostError, SriovError, _Unexpected) as exc:
                    where = f"{filename}:{op.line}: " if op.line else ""
                    failure = RunFailure(f"{where}{op.text}: {exc}")
                    failure.transactions_done = tally[0]
                    raise failure from None
            compared = board.compared + lean.compared + root.mem.compared + root.irq.compared
            return compared, tally[0]
        finally:
            gc.unfreeze()
            design.close()


class _LeanConfig:
    """Config reads and writes of the lean loop: what ``execute`` does for a ``cfgrd`` or
    ``cfgwr`` op (:class:`sriov_tb.cfg.ConfigSpace` over the root port and the scoreboard, the
    write followed by the interrupt driver's ``settle``, the record, the messages drained),
    without the objects in between."""

    def __init__(self, design, model, root, irq_driver, mem_driver, outcomes, tally):
        self.model = model
        self.mem_driver = mem_driver
        self.cfg = design.cfg
        self.settle = design.settle
        self.message_count = design.message_count
        self.quiet, self.timeout = irq_driver.quiet, irq_driver.timeout
        self.model_config = model.config
        self.model_messages = model.messages
        self.irq_driver = irq_driver
        self.model_port = root.irq.model
        self.root = root
        self.bus = root.secondary_bus
        self.outcomes = outcomes
        self.tally = tally
        self.compared = 0
        self._split = {}
        # The native model's C calls, made here without NativeModel's wrappers (which build a
        # tuple or a ctypes array per call); the same return codes, checked by the same
        # NativeModel methods (_check, _cfg_failed), so the same errors.
        self.design = design
        lib, handle = design.lib, design.handle
        self._handle = handle
        self._sn_cfg = design._cfg
        self._out = design._out
        self._sn_settle = lib.sn_settle
        self._sn_messages = lib.sn_messages
        self._sn_mem = lib.sn_mem
        from sriov_ep.endpoint import CompletionStatus
        self._status = {status.value: status.name for status in CompletionStatus}
        # The memory channel: mem_req packed and mem_res unpacked with plain shifts (the
        # fields of NativeMemoryDriver's layouts), into buffers made once.
        req, res = mem_driver._req.where, mem_driver._res.where
        self._req_at = {name: (offset, mask) for name, (offset, _w, mask) in req.items()}
        self._res_at = {name: (offset, mask) for name, (offset, _w, mask) in res.items()}
        self._req_words = design.words["mem_req"]
        self._res_words = design._res_words
        self._res_buffer = (ctypes.c_uint32 * self._res_words)()
        self._cycles = ctypes.c_uint64()
        self._cycles_ref = ctypes.byref(self._cycles)
        self._tag_modulus = 1 << mem_driver.tag_width

    def chunks(self, offset, size):
        key = (offset, size)
        found = self._split.get(key)
        if found is None:
            found = self._split[key] = tuple(
                (c.dword, c.byte_en, 8 * c.lane, (1 << 8 * c.nbytes) - 1, 8 * c.first)
                for c in split_access(offset, size))
        return found

    def run(self, op):
        rid = op.rid
        write = op.kind == "cfgwr"
        type1 = (rid >> 8) != self.bus
        value = op.value
        status = None
        design, handle, out, sn_cfg = self.design, self._handle, self._out, self._sn_cfg
        status_name, quiet, timeout = self._status, self.quiet, self.timeout
        for dword, be, lane, mask, first in self.chunks(op.offset, op.size):
            if write:
                data = ((value >> first) & mask) << lane
            else:
                be, data = 0xF, 0
            rc = sn_cfg(handle, type1, rid, dword, be, write, data, True, out)
            if rc:
                design._cfg_failed(rc, rid)         # raises, as NativeModel.cfg does
            status, got = status_name[out[0]], out[1]
            if write:
                rc = self._sn_settle(handle, quiet, timeout)
                if rc or design._user_error is not None:
                    design._check(rc, timeout=timeout)  # NativeModel.settle's check
            expected = self.model_config(type1, rid, dword, be, write, data)
            self.compared += 1
            if status != expected[0] or got != expected[1]:
                kind = f"CfgWr{int(type1)}" if write else f"CfgRd{int(type1)}"
                raise Mismatch(f"{kind} {format_bdf(rid)} reg {dword:#x} (offset "
                               f"{4 * dword:#05x}) be {be:#x} data {data:#010x}: design "
                               f"{status} {got:#010x}, model {expected[0]} "
                               f"{expected[1]:#010x}")
        if not write and value is not None:
            raise ValueError("the lean loop runs config reads that expect nothing")
        self.tally[0] += 1
        key = (op.kind, status)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        self._drain()

    def _drain(self):
        # RootPort.record: the messages delivered meanwhile, compared and recorded.
        if self._sn_messages(self._handle, 0, 0, None) != self.irq_driver._seen \
                or len(self.model_messages) != self.model_port._seen:
            self.root.record_messages(self.root.irq.messages())

    def memory(self, op, pf_bdf):
        """A memory op as :func:`sriov_tb.runner._run_memory_access` runs it
        (:func:`sriov_tb.host.memory_transaction` through :class:`sriov_tb.host.MemoryPort`'s
        ``access``, a write followed by ``settle``): one request per aligned QWORD, each decode
        and internal read compared with the model's, the user's data from ``root.memories``."""
        kind, addr, size = op.kind, op.addr, op.size
        write = kind == "memwr"
        value = op.value if write else 0
        driver = self.mem_driver
        design = self.design
        handle = self._handle
        memories = self.root.memories
        memory = self.model.memory
        req, res_at = self._req_at, self._res_at
        req_words, res_buffer = self._req_words, self._res_buffer
        first = None                # (answered, internal, pf, function, bar) of the first
        result = 0
        for at, done, lane, n, be, part in qword_parts(addr, size, value):
            data = part << (8 * lane) if write else 0
            # NativeMemoryDriver._request and NativeModel.mem, with the same tag and checks.
            tag = driver.tag = (driver.tag + 1) % self._tag_modulus
            word = 0
            for name, field_value in (("addr", at), ("write", write), ("tag", tag),
                                      ("data", data), ("be", be)):
                offset, mask = req[name]
                word |= (int(field_value) & mask) << offset
            request = (ctypes.c_uint32 * req_words).from_buffer_copy(
                word.to_bytes(4 * req_words, "little"))
            rc = self._sn_mem(handle, request, req_words, res_buffer, self._res_words,
                              driver.timeout, self._cycles_ref)
            if rc or design._user_error is not None:
                design._check(rc, "memory request", driver.timeout)
            cycles = self._cycles.value
            word = int.from_bytes(bytes(res_buffer), "little")
            f = {name: word >> offset & mask for name, (offset, mask) in res_at.items()}
            claimed, internal, is_vf = f["claimed"], f["internal"], f["is_vf"]
            vf, bar, offset, pf = f["vf"], f["bar"], f["offset"], f.get("pf", 0)
            # decode_result's and access_result's checks, in their order.
            if (f["addr"], f["write"], f["tag"]) != (at, int(write), tag) or \
                    ((claimed or internal) and is_vf and vf == 0) or (claimed and internal):
                res = SimpleNamespace(**f)
                decode_result(res, at, write, tag, cycles)
                access_result(res, write, cycles)
            if write:
                rc = self._sn_settle(handle, self.quiet, self.timeout)
                if rc or design._user_error is not None:
                    design._check(rc, timeout=self.timeout)
            expected = memory(at, bool(write), data, be)
            self.compared += 1
            # MemAccessResult.key and .pf, on both sides.
            answered = bool(claimed or internal)
            function = vf if is_vf else 0
            read_data = f["data"] if internal and not write else None
            got_key = (bool(claimed), bool(internal), function, bar, offset, read_data) \
                if answered else (False, False)
            if expected.claimed or expected.internal:
                exp_key = (bool(expected.claimed), bool(expected.internal),
                           int(expected.vf) if expected.is_vf else 0, int(expected.bar),
                           int(expected.offset),
                           int(expected.data) if expected.internal and not write else None)
            else:
                exp_key = (False, False)
            if got_key != exp_key or pf != int(getattr(expected, "pf", 0)):
                got = access_result(SimpleNamespace(**f), write, cycles)
                expected = MemAccessResult.of(expected)
                raise Mismatch(f"memory {'write' if write else 'read'} at {at:#018x} be "
                               f"{be:#04x}: design {_describe_access(got)}, model "
                               f"{_describe_access(expected)}")
            this = (answered, bool(internal), pf, function, bar)
            if first is None:
                first = this
            elif this != first:
                raise HostError(f"{kind} of {size} bytes at {addr:#x} runs past the end of "
                                f"the {'MSI-X structure' if first[1] else 'aperture'} "
                                f"it starts in")
            if internal:
                read = (f["data"] >> (8 * lane)) & ((1 << (8 * n)) - 1)
            elif claimed:
                if write:
                    memories.write(function, bar, offset, n, part, pf=pf)
                    read = part
                else:
                    read = memories.read(function, bar, offset, n, pf=pf)
            else:
                read = (1 << (8 * n)) - 1
            if not write:
                result |= read << (8 * done)
        if not write and op.value is not None and result != op.value:
            raise ValueError("the lean loop runs memory reads that expect nothing")
        self.tally[0] += 1
        key = (kind, "SC" if first[0] else "UR")
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        self._drain()


# -- Command line ------------------------------------------------------------------------------

def add_regress_parser(subparsers):
    """Add ``regress`` to the ``sriov-ep`` subcommands; it runs :func:`cmd_regress`."""
    p = subparsers.add_parser(
        "regress", help="random config, memory and MSI-X operations checked against the "
                        "reference model (a million per configuration by default, on the "
                        "native backend)")
    p.add_argument("config", nargs="*",
                   help="endpoint configurations (TOML) or max-vfs (65535 VFs); default: every "
                        "example of the source tree and max-vfs")
    p.add_argument("--seed", type=_seed, metavar="N",
                   help="the seed (decimal or 0x hex); default: the test suite's seed of each "
                        "example and of max-vfs, 1 for other files")
    p.add_argument("--count", type=_count, default=DEFAULT_COUNT, metavar="N",
                   help=f"random operations after the set-up (default {DEFAULT_COUNT:,})")
    p.add_argument("--backend", choices=BACKENDS, default="native",
                   help="simulation backend (default native)")
    p.add_argument("--vcd", metavar="FILE",
                   help="write the run's waveform (one configuration only; limit it with "
                        "--wave-from/--wave-to, transaction numbers as a failure prints them)")
    p.add_argument("--wave-from", type=wave_bound, metavar="N|TIME",
                   help="the waveform starts at this transaction (or time)")
    p.add_argument("--wave-to", type=wave_bound, metavar="N|TIME",
                   help="the waveform ends at this transaction (or time)")
    p.add_argument("--json", action="store_true", help="one JSON object per configuration")
    p.set_defaults(func=cmd_regress)
    return p


def _seed(text):
    import argparse
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"{text}: a seed is 0..2**64-1")
    return value


def _count(text):
    import argparse
    try:
        value = int(text.replace("_", "").replace(",", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1 operation")
    return value


def _named_configs(args):
    """``[(name, path or None, params)]``: the command line's configurations, each named as
    :data:`SEEDS` names it when it is one of the examples (or max-vfs)."""
    from .formal import EXAMPLES, builtin_configs, example_configs
    names = list(args.config) or [str(p) for p in example_configs()] + ["max-vfs"]
    examples = {EXAMPLES.resolve(), (EXAMPLES / "multi-pf").resolve()}
    configs = []
    for text in names:
        path = Path(text)
        if not path.exists() and text in builtin_configs():
            configs.append((text, None, builtin_configs()[text], True))
        elif not path.exists():
            raise CliError(f"{text}: no such file (and no built-in configuration of that "
                           f"name: {', '.join(builtin_configs())})")
        else:
            configs.append((path.stem, path, load_config(text),
                            path.resolve().parent in examples))
    return configs


def cmd_regress(args):
    """``sriov-ep regress``: one line (or JSON object) per configuration; a failure prints the
    check that failed and the command that reruns that seed with its waveform. Exit status 0
    when every configuration passes, else 1."""
    import json

    from sriov_ep.tools.synth import ToolMissing

    from .runner import RunFailure
    configs = _named_configs(args)
    if args.vcd is not None and len(configs) > 1:
        raise CliError("--vcd: name one configuration")
    if (args.wave_from is not None or args.wave_to is not None) and args.vcd is None:
        raise CliError("--wave-from/--wave-to need --vcd")
    failed = 0
    for name, path, params, known in configs:
        seed = args.seed if args.seed is not None else SEEDS.get(name, 1) if known else 1
        progress = Progress(progress_wanted(args), f"regress {name}", total=args.count,
                             unit=" ops")
        try:
            result = run_regression(
                params, seed=seed, count=args.count, name=name, backend=args.backend,
                vcd=args.vcd, wave_from=args.wave_from, wave_to=args.wave_to,
                waves_on_failure=args.vcd is None and args.backend != "amaranth",
                on_operation=progress.advance if progress.enabled else None)
        except ToolMissing as exc:
            raise CliError(str(exc)) from None
        except RunFailure as exc:
            progress.close()
            failed += 1
            where = str(path) if path is not None else name
            rerun = (f"sriov-ep regress {where} --seed {seed:#x} --count {args.count} "
                     f"--backend {args.backend} --vcd build/waves/regress-{name}.vcd")
            done = getattr(exc, "transactions_done", None)
            if done:                    # the window around the failing transaction
                rerun += f" --wave-from {max(1, done - 100)} --wave-to {done + 1}"
            if args.json:
                print(json.dumps({"op": "regress", "config": name, "seed": seed,
                                  "status": "fail", "message": str(exc), "rerun": rerun}),
                      flush=True)
            else:
                print(f"FAIL {name} seed {seed:#x}: {exc}", flush=True)
                print(f"# rerun this seed with its waveform: {rerun}", flush=True)
            if getattr(exc, "waves", None) is not None:
                print_waves(exc.waves, args.json)
            continue
        finally:
            progress.close()
        if args.json:
            print(json.dumps({"op": "regress", "status": "pass", **result.as_dict()}),
                  flush=True)
        else:
            print(f"PASS {name} seed {seed:#x}: {result.operations:,} operations, "
                  f"{result.compared:,} results checked against the model in "
                  f"{result.seconds:.1f} s ({result.rate:,.0f} operations/s, "
                  f"{args.backend})", flush=True)
    return 1 if failed else 0
