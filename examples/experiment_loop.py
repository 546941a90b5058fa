"""An adaptive oddity experiment, the way a PsychoPy script would run it.

    python examples/experiment_loop.py                 # 1,500 trials, a few minutes
    python examples/experiment_loop.py --trials 300    # quicker

The loop asks psyphy_pp for the next block of trials, shows them, and tells it
the responses. Here a simulated observer stands in for the screen and the
keyboard: replace ``show_and_collect`` with your own stimulus code (a PsychoPy
``visual.Window`` drawing three patches, ``event.waitKeys`` for the answer).

Everything is written to the session file as it happens. Stop the script at
any moment (Ctrl-C, a crash, a power cut) and run it again: it resumes where the
file ends, with the trials already answered kept and the same next trials it
would have asked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

import psyphy_pp as pp

# The stimulus box in the experiment's own units (here: two RGB-like axes).
BOX = pp.Normalization(low=[0.0, 0.0], high=[255.0, 255.0], names=["R", "G"])


def make_observer(seed: int):
    """A simulated observer: a noise field drawn from the prior (stands in for a person)."""
    model = pp.WPPM(input_dim=2, basis_degree=2, extra_dims=1, diag_term=1e-9)
    return model, model.sample_prior(jax.random.PRNGKey(seed))


def show_and_collect(trials: pp.AskedTrials, observer, key) -> np.ndarray:
    """Show each trial and return 1 (the odd stimulus was found) or 0.

    In a real experiment: for each ``ref, comp`` in ``zip(trials.user_refs,
    trials.user_comparisons)`` draw the reference twice and the comparison once,
    in a random order, and record whether the observer picked the comparison.
    """
    model, truth = observer
    sim = pp.simulate(model, truth, trials.refs, trials.comparisons, key=key)
    return sim.responses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--session", type=Path, default=Path("session.db"))
    parser.add_argument("--trials", type=int, default=1500, help="stop after this many")
    parser.add_argument("--block", type=int, default=20, help="trials per ask")
    parser.add_argument("--start-trials", type=int, default=300)
    parser.add_argument("--export", type=Path, default=Path("session_trials.csv"))
    args = parser.parse_args(argv)

    model = pp.WPPM(input_dim=2, basis_degree=2, extra_dims=1)
    observer = make_observer(seed=1)
    with pp.Experiment(model, args.session, normalization=BOX,
                       start_trials=args.start_trials) as exp:
        print(f"session {exp.path}: {exp.num_told} trials already told")
        key = jax.random.fold_in(jax.random.PRNGKey(7), exp.num_told)
        while exp.num_told < args.trials:
            trials = exp.ask(min(args.block, args.trials - exp.num_told))
            key, sub = jax.random.split(key)
            responses = show_and_collect(trials, observer, sub)
            exp.tell(trials, responses)
            if exp.num_told % 100 < args.block:
                print(f"  {exp!r}")
        data = exp.export(args.export, overwrite=True)
        log = exp.ask_log()
        adaptive = np.isin(log["strategy"], pp.experiment.ADAPTIVE)
        print(f"done: {exp!r}")
        if adaptive.any():
            print(f"time per adaptive ask: median {np.median(log['seconds'][adaptive]):.3f} s")
    print(f"wrote {data.num_trials} trials to {args.export}; fit them with "
          f"`psyphy-pp fit {args.export}` or pp.fit_map")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
