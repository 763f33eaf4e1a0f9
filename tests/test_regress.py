"""Random regressions on the native backend (issue 12, part 2), and Linux's whole SR-IOV life
cycle at TotalVFs 65535.

* ``test_random_transactions``: for every example configuration and the 65535-VF one,
  1,000,000 random config, memory and MSI-X operations (:mod:`sriov_tb.regress`), at least
  1,000,000 transactions after the set-up, every result checked against the reference model,
  with the seeds ``sriov-ep regress`` uses (its default count too). Marked ``slow`` (CI runs
  it): about 1,350 s of CPU for the 8 configurations, 540 s of it the 16-PF device
  (``docs/regressions.md`` has the figures).
* ``test_linux_life_cycle_65535_vfs``: the Linux host model enumerates the PF, runs
  ``sriov_init`` (65,535 NumVFs writes, descending), enables all 65,535 VFs (Linux's first reads
  of each), walks every VF's header and capabilities, and disables them; every completion
  checked against the model. Marked ``slow``.
* The cheap tests show the checks can fail (a corrupted completion), that a seed replays
  exactly on both backends, and that the stimulus reaches the states that matter.

A failure names the configuration, the seed and the operation (number and text); rerun one seed
with ``sriov-ep regress CONFIG --seed SEED --count N --vcd FILE`` (the message says so).
"""

import json

import pytest

from sriov_ep.params import load_params
from sriov_tb import regress
from sriov_tb.cli import main
from sriov_tb.formal import EXAMPLES, builtin_configs, example_configs
from sriov_tb.host import UserRegisters
from sriov_tb.native import run_ops_native
from sriov_tb.regress import SEEDS, run_regression
from sriov_tb.runner import RunFailure
from sriov_tb.script import Op

#: Random operations per configuration in the test run, and the transactions (config requests,
#: memory requests, interrupt requests, messages) they must make after the set-up: every
#: operation makes at least one.
COUNT = 1_000_000


def _configs():
    found = {path.stem: path for path in example_configs()}
    return {**found, "max-vfs": None}


def _params(name):
    if name == "max-vfs":
        return builtin_configs()["max-vfs"]
    return load_params(_configs()[name])


@pytest.fixture(scope="session")
def tools(native_tools):
    return native_tools


def test_every_configuration_has_a_seed():
    """The long run covers every example and the 65535-VF configuration, each with its own
    fixed seed."""
    assert EXAMPLES.is_dir()
    assert set(_configs()) == set(SEEDS)
    assert len(set(SEEDS.values())) == len(SEEDS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEEDS))
def test_random_transactions(tools, name):
    result = run_regression(_params(name), seed=SEEDS[name], count=COUNT, name=name)
    assert result.counts["cfgrd"] + result.counts["cfgwr"] > COUNT // 2
    assert result.counts["memrd"] + result.counts["memwr"] > COUNT // 4
    assert result.transactions - result.setup_transactions >= COUNT
    print(f"{name}: {result.transactions} transactions checked in {result.seconds:.1f} s "
          f"({result.rate:.0f} operations/s), seed {result.seed:#x}")


@pytest.mark.parametrize("name", ["igb-82576-dual", "user-caps", "max-vfs"])
def test_lean_loop_checks_what_the_runner_checks(tools, name):
    """The regression's own loop on the native backend (config reads and writes and memory
    requests straight to the two models) makes the operations, records, comparisons and
    outcomes of the same seed run through the script runner (``run_ops_native``)."""
    params = _params(name)
    lean = run_regression(params, seed=SEEDS[name], count=1_500, name=name)
    stimulus = regress.RandomStimulus(params, SEEDS[name], 1_500)
    user = UserRegisters() if name == "user-caps" else None
    run = run_ops_native(params, stimulus, filename=f"<{name}>", user=user)
    assert (lean.operations, lean.setup_ops) == (stimulus.line, stimulus.setup_ops)
    assert lean.outcomes == stimulus.outcomes
    assert lean.states == stimulus.states
    assert lean.transactions == len(run.transactions)
    assert lean.setup_transactions == stimulus.setup_records
    assert lean.compared == run.compared


def test_a_corrupted_completion_fails_the_run_naming_seed_and_operation(tools):
    """The checks can fail: the 500th config completion after reset gets one data bit flipped
    (the native harness's mutation hook); the run stops there, naming the seed and the
    operation."""
    params = _params("nvme")
    with pytest.raises(RunFailure) as info:
        run_regression(params, seed=0x5EED, count=5_000, name="nvme", mutate=(500, 1 << 7, 0))
    message = str(info.value)
    assert message.startswith("<nvme seed 0x5eed>:")
    assert "design SC" in message and "model SC" in message


def test_late_completion_is_no_failure(tools):
    """A completion taken late (the harness holds ``cfg_cpl.ready`` low) changes nothing the
    host sees: the same run passes."""
    run_regression(_params("igb-82576"), seed=3, count=2_000, name="igb-82576",
                   mutate=(300, 0, 40))


def test_a_seed_replays_exactly(tools):
    """The stimulus depends on the configuration and the seed only: two runs make the same
    operations with the same outcomes, another seed makes others."""
    params = _params("igb-82576-dual")
    first = run_regression(params, seed=11, count=3_000, name="dual")
    again = run_regression(params, seed=11, count=3_000, name="dual")
    other = run_regression(params, seed=12, count=3_000, name="dual")
    assert (first.operations, first.outcomes) == (again.operations, again.outcomes)
    assert first.outcomes != other.outcomes


def test_same_operations_on_the_amaranth_simulator(tools):
    """The stimulus is backend-independent: a short run of one seed passes on the Amaranth
    simulator with exactly the outcomes the native backend had."""
    params = _params("igb-82576")
    native = run_regression(params, seed=21, count=300, name="igb")
    amaranth = run_regression(params, seed=21, count=300, name="igb", backend="amaranth")
    assert native.outcomes == amaranth.outcomes
    assert native.operations == amaranth.operations


@pytest.mark.parametrize("name", ["nvme", "quad-pf", "user-caps"])
def test_stimulus_reaches_the_states_that_matter(tools, name):
    """20,000 operations reach: VF Enable on and off, all TotalVFs enabled, ARI on and off
    (where the offsets differ), a PF in D3hot, a larger System Page Size; config URs and
    memory UR, claimed and endpoint-served requests; interrupts sent and pending."""
    result = run_regression(_params(name), seed=SEEDS[name], count=20_000, name=name)
    for state in ("vf-enable", "vf-disable", "all-vfs", "ari", "pf-d3hot", "large-page"):
        assert state in result.states, state
    for outcome in (("cfgrd", "SC"), ("cfgrd", "UR"), ("cfgwr", "SC"), ("cfgwr", "UR"),
                    ("memrd", "SC"), ("memrd", "UR"), ("memwr", "SC"), ("memwr", "UR")):
        assert result.outcomes.get(outcome, 0) > 20, outcome
    if name != "user-caps":             # (no MSI-X there)
        assert result.outcomes.get(("msix", "sent"), 0) > 10
        assert result.outcomes.get(("msix", "pending"), 0) > 10


@pytest.mark.slow
def test_linux_life_cycle_65535_vfs(tools):
    """Linux's whole life cycle at TotalVFs 65535 on the native backend: enumerate,
    ``sriov_init`` (NumVFs written 65535, 65534, ..., 1, offset and stride read after each,
    then 0), enable every VF (each VF's first reads), walk every VF's header, capability list
    and PCI Express capability, disable. Every completion is checked against the model."""
    params = _params("max-vfs")
    ops = [Op("enable", 1, "enable 00:00.0 65535", rid=0x0000, count=65535),
           Op("walk", 2, "walk"),
           Op("disable", 3, "disable 00:00.0", rid=0x0000)]
    result = run_ops_native(params, ops)
    writes = [t for t in result.transactions if t.op == "cfgwr" and t.offset == 0x150]
    numvfs = [t.value for t in writes]
    # sriov_init's descending NumVFs writes, then sriov_enable's and sriov_disable's.
    assert numvfs[:65535] == list(range(65535, 0, -1))
    assert numvfs[65535:] == [0, 65535, 0]
    vf_ids = [t for t in result.transactions
              if t.op == "cfgrd" and t.offset == 0 and t.size == 4 and t.rid != 0]
    assert len({t.rid for t in vf_ids}) == 65535
    assert all(t.status == "SC" for t in vf_ids)
    assert result.compared == len(result.transactions)


# -- Command line ----------------------------------------------------------------------------------

def test_cli_runs_a_seed_and_says_what_it_checked(tools, capsys):
    code = main(["regress", str(EXAMPLES / "igb-82576.toml"), "--count", "1500", "--seed",
                 "0x77"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("PASS igb-82576 seed 0x77: ")
    assert "checked against the model" in out and "operations/s, native)" in out
    code = main(["regress", str(EXAMPLES / "igb-82576.toml"), "--count", "1500", "--json"])
    out, _ = capsys.readouterr()
    record = json.loads(out)
    assert record["status"] == "pass" and record["seed"] == SEEDS["igb-82576"]
    assert record["transactions"] > 1500


def test_cli_failure_names_seed_and_the_command_that_reruns_it(capsys, monkeypatch):
    """A failed check: exit status 1, the check's message, and the rerun command with the
    seed, the count, the backend and a waveform file (the failure is made in the runner's
    place: the message comes from the real one in the tests above)."""
    def fail(params, **options):
        failure = RunFailure(f"<{options['name']} seed {options['seed']:#x}>:42: cfgrd "
                             f"01:00.0 0x000 4: design SC 0x1, model SC 0x2")
        failure.transactions_done = 4321
        raise failure
    monkeypatch.setattr(regress, "run_regression", fail)
    code = main(["regress", "max-vfs", "--count", "10"])
    out, _ = capsys.readouterr()
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (f"FAIL max-vfs seed {SEEDS['max-vfs']:#x}: <max-vfs seed "
                        f"{SEEDS['max-vfs']:#x}>:42: cfgrd 01:00.0 0x000 4: design SC 0x1, "
                        f"model SC 0x2")
    assert lines[1] == (f"# rerun this seed with its waveform: sriov-ep regress max-vfs --seed "
                        f"{SEEDS['max-vfs']:#x} --count 10 --backend native --vcd "
                        f"build/waves/regress-max-vfs.vcd --wave-from 4221 --wave-to 4322")
