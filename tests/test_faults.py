"""The fault battery's fast part: kills, signals, full disks, NaN/Inf, divergence, fp16 overflow,
corrupt files and hostile input against a tiny CPU run (see tests/faults.py, docs/RELIABILITY.md).

`python scripts/fault_battery.py --full` runs the same faults with more trials.
"""

import pytest

from faults import FAULTS, run_fault


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(name, tmp_path):
    result = run_fault(name, tmp_path, seed=0)
    assert result.ok, f"{result.fault}: {result.survived}/{result.trials} survived, {result.data_lost} lost:\n" + \
        "\n".join(result.failures[:10])
