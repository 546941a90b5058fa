import numpy as np
import pytest

import psyphy_pp as pp


def test_trial_data_round_trips_through_npz(p_small, tmp_path):
    data = p_small.data
    path = tmp_path / "trials.npz"
    data.save(path)
    back = pp.TrialData.load(path)
    np.testing.assert_array_equal(back.refs, data.refs)
    np.testing.assert_array_equal(back.comparisons, data.comparisons)
    np.testing.assert_array_equal(back.responses, data.responses)


@pytest.mark.parametrize(
    "refs, comps, y, message",
    [
        (np.zeros((3,)), np.zeros((3,)), [0, 1, 0], r"refs must have shape \(N, D\)"),
        (np.zeros((3, 2)), np.zeros((2, 2)), [0, 1, 0], "comparisons must have the same shape"),
        (np.zeros((3, 2)), np.zeros((3, 2)), [0, 1], r"responses must have shape \(3,\)"),
        (np.zeros((3, 2)), np.zeros((3, 2)), [0, 1, 2], "responses must be 0 or 1, got 2 at index 2"),
        (np.zeros((3, 2)), np.zeros((3, 2)), [0, 0.5, 1], "responses must be 0 or 1"),
        (np.full((3, 2), np.inf), np.zeros((3, 2)), [0, 1, 0], "refs must be finite, got inf"),
        (np.zeros((3, 2)), np.full((3, 2), -1.01), [0, 1, 0], r"comparisons must lie in \[-1, 1\]"),
        (np.zeros((0, 2)), np.zeros((0, 2)), [], "at least one trial"),
    ],
)
def test_trial_data_rejects_bad_input(refs, comps, y, message):
    with pytest.raises(ValueError, match=message):
        pp.TrialData(refs, comps, np.asarray(y))


def test_dimension_mismatch_is_reported_before_fitting(p_small):
    model3 = pp.WPPM(input_dim=3, basis_degree=1)
    with pytest.raises(ValueError, match="data has input_dim 2 but the model expects input_dim=3"):
        pp.fit_map(model3, p_small.data, num_steps=1, progress_bar=False)


def test_grid_design_shapes_and_box(p_small):
    import jax

    model, truth, _ = p_small
    refs, comps = pp.designs.grid_design(model, truth, grid_size=4, trials_per_ref=7,
                                         key=jax.random.PRNGKey(0))
    assert refs.shape == comps.shape == (4 * 4 * 7, 2)
    assert np.all(np.abs(comps) <= 1.0)
    assert len(np.unique(refs, axis=0)) == 16
