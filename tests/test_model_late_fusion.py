"""What late fusion means, beyond the registry contract: the prediction is the mean of the unimodal
predictions over the present modalities, and the learned bias when none is present."""
from __future__ import annotations

import itertools

import torch

from robustmsa.models.late_fusion import LateFusion

from helpers import ModelKit, run

KIT = ModelKit({"text": 6, "audio": 4, "vision": 5}, {"text": 8, "audio": 8, "vision": 8})


def test_prediction_is_the_mean_over_present_modalities() -> None:
    model = KIT.build("late_fusion")
    assert isinstance(model, LateFusion)
    with torch.no_grad():
        model.empty_bias.fill_(0.5)
    combos = torch.tensor(list(itertools.product([False, True], repeat=3)))
    out = run(model, KIT.batch(8, seed=1, missing=combos))
    uni, present = out["extras"]["unimodal"], out["extras"]["present"]
    assert torch.equal(present, ~combos)
    count = present.sum(1)
    expected = (uni * present).sum(1) / count.clamp(min=1)
    torch.testing.assert_close(out["pred"][count > 0], expected[count > 0])
    assert (out["pred"][count == 0] == 0.5).all()
