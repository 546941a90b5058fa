"""benchmarks/bench_nuts.py: the observer option is parsed before anything runs."""

import pytest

from benchmarks import bench_nuts


@pytest.mark.parametrize("name", ["sobol", "sobol:x", "halton:3", "grid:-1"])
def test_observer_option_names_the_accepted_forms(name):
    with pytest.raises(SystemExit, match=r"--observer must be bench, sobol:SEED or grid:SEED"):
        bench_nuts.pick_observer(name, 240)
