"""Checked SR-IOV writes through the endpoint with several PFs (spec rules, literal values)."""
import pytest
from test_endpoint_multi import dual, run, wait_ready

SRIOV = 0x160           # igb-82576-dual.toml: SR-IOV capability offset, TotalVFs 8


@pytest.mark.parametrize("k", [0, 1])
def test_checked_writes(k):
    async def body(b):
        await wait_ready(b)
        total = (await b.pf_read(k, SRIOV + 0x0C)) >> 16
        assert total == 8
        supported = await b.pf_read(k, SRIOV + 0x1C)
        assert supported & 0x3 == 0x3           # 4K and 8K
        # NumVFs above TotalVFs: ignored (SR-IOV 3.3.10 / docs); at TotalVFs: taken.
        await b.pf_write(k, SRIOV + 0x10, 2, 9)
        assert (await b.pf_read(k, SRIOV + 0x10)) & 0xFFFF == 0
        await b.pf_write(k, SRIOV + 0x10, 2, 8)
        assert (await b.pf_read(k, SRIOV + 0x10)) & 0xFFFF == 8
        # System Page Size: two bits, none, an unsupported bit: ignored; one supported bit: taken.
        for bad in (0x3, 0x0, 0x8000_0000):
            await b.pf_write(k, SRIOV + 0x20, 4, bad)
            assert await b.pf_read(k, SRIOV + 0x20) == 0x1
        await b.pf_write(k, SRIOV + 0x20, 4, 0x2)
        assert await b.pf_read(k, SRIOV + 0x20) == 0x2
        # Reads change nothing.
        for _ in range(3):
            await b.pf_read(k, SRIOV + 0x10)
            await b.pf_read(k, SRIOV + 0x20)
        assert (await b.pf_read(k, SRIOV + 0x10)) & 0xFFFF == 8
        # VF Enable 1: NumVFs and System Page Size writes ignored.
        await b.pf_write(k, SRIOV + 0x08, 2, 0x1)
        await b.pf_write(k, SRIOV + 0x20, 4, 0x1)
        assert await b.pf_read(k, SRIOV + 0x20) == 0x2
        await b.pf_write(k, SRIOV + 0x10, 2, 3)
        assert (await b.pf_read(k, SRIOV + 0x10)) & 0xFFFF == 8
        # The other PF is untouched.
        other = 1 - k
        assert await b.pf_read(other, SRIOV + 0x20) == 0x1
        assert (await b.pf_read(other, SRIOV + 0x10)) & 0xFFFF == 0

    run(dual(), body, name=f"ahead_checks_{k}")
