"""Evaluation and the gallery draw from a side stream: the training stream is untouched."""

from __future__ import annotations

import torch

from pgnm.data.synthetic import synthetic_batch
from pgnm.method.step import PGNMModel
from pgnm.train.distributed import setup
from pgnm.train.evaluate import evaluate, mask_gallery


def test_evaluation_and_gallery_leave_the_training_stream_untouched(tiny_config, tmp_path):
    world = setup("cpu")
    model = PGNMModel(tiny_config)
    data = torch.Generator().manual_seed(0)
    batches = [synthetic_batch(4, 5, 32, data) for _ in range(2)]
    torch.manual_seed(11)
    before = torch.get_rng_state()
    first = evaluate(model, batches, world, seed=3, keep_images=2)
    gallery = mask_gallery(model, first.first_images, tmp_path / "g.png", "t", 0.3, 0.3, seed=3)
    assert gallery is not None and gallery.is_file()
    assert torch.equal(torch.get_rng_state(), before)
    again = evaluate(model, batches, world, seed=3)
    assert again.metrics == first.metrics  # its own stream, the same every time
