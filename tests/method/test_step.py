from __future__ import annotations

import torch

from pgnm.config import with_overrides
from pgnm.data.synthetic import synthetic_batch
from pgnm.train import PGNMModel


def batch(config, seed=0):
    g = torch.Generator().manual_seed(seed)
    return synthetic_batch(
        config.data.batch_size, config.model.num_classes, config.data.image_size, g
    )


def test_one_backward_reaches_classifier_and_policy(tiny_config):
    model = PGNMModel(tiny_config).train()
    out = model(*batch(tiny_config), step=0)
    out.loss.backward()
    assert out.mask_values.shape == (4, 64) and out.logits.shape == (4, 5)
    assert out.policy_term.item() > 0
    for name, params in model.param_groups().items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name


def test_paper_objective_scales_the_classifier_gradient_by_s(tiny_config):
    """Same mask, same weights: paper-loss gradient on the classifier = S x plain-CE gradient."""
    model = PGNMModel(tiny_config).train()
    images, labels = batch(tiny_config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    out = model(images, labels)
    out.loss.backward()
    paper_grad = model.classifier.fc.weight.grad.clone()
    model.zero_grad()
    model.load_state_dict(state)
    torch.manual_seed(1)
    again = model(images, labels)
    torch.nn.functional.cross_entropy(again.logits, labels).backward()
    assert torch.equal(again.mask_values, out.mask_values)
    torch.testing.assert_close(paper_grad, out.policy_term * model.classifier.fc.weight.grad)


def test_baseline_has_no_policy_and_trains_on_plain_ce(tiny_config):
    config = with_overrides(tiny_config, {"policy.enabled": False})
    model = PGNMModel(config)
    images, labels = batch(config)
    out = model(images, labels)
    assert model.policy is None and out.mask_values is None and out.policy_term is None
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    assert set(model.param_groups()) == {"classifier"}


def test_seeded_runs_are_identical(tiny_config):
    losses = []
    for _ in range(2):
        torch.manual_seed(42)
        model = PGNMModel(with_overrides(tiny_config, {"objective.name": "reinforce"})).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(2):
            out = model(*batch(tiny_config, seed=step), step=step)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        losses.append(out.loss.item())
        state = model.state_dict()
    assert losses[0] == losses[1]
    assert state["objective.baseline_ready"]


def test_running_state_lives_in_the_joint_state_dict(tiny_config):
    keys = PGNMModel(tiny_config).state_dict()
    assert "policy.base_alpha" in keys and "policy.base_beta" in keys


def test_a_frozen_policy_draws_masks_but_never_changes(tiny_config):
    """policy.learn=false (the random-mask control): the classifier trains through the same
    masked objective; the policy's weights, BatchNorm statistics and running state stay at
    their initial values, and it is not in the optimiser's groups."""
    torch.manual_seed(3)
    model = PGNMModel(with_overrides(tiny_config, {"policy.learn": False})).train()
    start = {k: v.clone() for k, v in model.policy.state_dict().items()}
    classifier = model.classifier.fc.weight.clone()
    assert set(model.param_groups()) == {"classifier"} and not model.policy.training
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):
        out = model(*batch(tiny_config, seed=step), step=step)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert out.mask_values is not None and out.policy_term.item() > 0
    for key, value in model.policy.state_dict().items():
        assert torch.equal(value, start[key]), key
    assert all(p.grad is None for p in model.policy.parameters())
    assert not torch.equal(model.classifier.fc.weight, classifier)
