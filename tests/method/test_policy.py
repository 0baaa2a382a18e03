from __future__ import annotations

import pytest
import torch
from torch import nn

from pgnm.method import Policy, build_policy


@pytest.fixture
def policy() -> Policy:
    return Policy(grid=4, trunk="resnet10t", hidden_dim=16).train()


def test_outputs_one_logit_pair_per_cell(policy):
    logits = policy(torch.randn(3, 3, 32, 32))
    assert logits.alpha.shape == logits.beta.shape == (3, 16)


def test_heads_match_the_official_architecture(policy):
    layers = [type(m) for m in policy.alpha_head]
    assert layers == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
    ]
    assert policy.alpha_head[0].in_features == policy.trunk.num_features == 512
    assert policy.alpha_head[-1].out_features == 16
    assert policy.alpha_head is not policy.beta_head


def test_paper_size_policy_has_about_ten_million_parameters():
    paper = Policy(grid=64)
    # trunk 4.9M + two heads of 2.6M
    assert 10.0e6 < sum(p.numel() for p in paper.parameters()) < 10.4e6


def test_running_state_is_uniform_init_buffers_in_the_state_dict(policy):
    for name in ("base_alpha", "base_beta"):
        state = getattr(policy, name)
        assert state.shape == (1, 16) and not state.requires_grad
        assert 0.0 <= state.min() and state.max() < 1.0
        assert name in policy.state_dict()
    assert policy.running_state()[0] is policy.base_alpha


def _heads(policy, images):
    features = policy.trunk(images)
    return policy.alpha_head(features), policy.beta_head(features)


def test_mixing_and_ema_update(policy):
    images = torch.randn(4, 3, 32, 32)
    base_a, base_b = policy.base_alpha.clone(), policy.base_beta.clone()
    logits = policy(images)
    head_a, head_b = _heads(policy, images)  # train-mode BN: same batch statistics, same output
    torch.testing.assert_close(logits.alpha, 0.9 * base_a + 0.1 * head_a)
    torch.testing.assert_close(logits.beta, 0.9 * base_b + 0.1 * head_b)
    torch.testing.assert_close(
        policy.base_alpha, 0.99 * base_a + 0.01 * head_a.mean(0, keepdim=True)
    )
    torch.testing.assert_close(
        policy.base_beta, 0.99 * base_b + 0.01 * head_b.mean(0, keepdim=True)
    )


def test_eval_mode_leaves_the_running_state_alone(policy):
    policy(torch.randn(4, 3, 32, 32))
    policy.eval()
    before = policy.base_alpha.clone()
    policy(torch.randn(4, 3, 32, 32))
    assert torch.equal(before, policy.base_alpha)


def test_each_head_runs_once_per_step(policy):
    calls = {"alpha": 0, "beta": 0}
    policy.alpha_head.register_forward_hook(
        lambda *_: calls.__setitem__("alpha", calls["alpha"] + 1)
    )
    policy.beta_head.register_forward_hook(lambda *_: calls.__setitem__("beta", calls["beta"] + 1))
    policy(torch.randn(2, 3, 32, 32))
    assert calls == {"alpha": 1, "beta": 1}
    assert int(policy.alpha_head[1].num_batches_tracked) == 1


def test_head_gradient_is_scaled_by_one_minus_decay(policy):
    logits = policy(torch.randn(4, 3, 32, 32))
    weights = torch.randn_like(logits.alpha)
    (logits.alpha * weights).sum().backward()
    # d(loss)/d(last bias) = (1 - decay) * sum over the batch of d(loss)/d(alpha)
    torch.testing.assert_close(policy.alpha_head[-1].bias.grad, 0.1 * weights.sum(0))
    assert policy.beta_head[-1].bias.grad is None


def test_light_policy_sees_a_downsampled_image_and_gives_the_same_outputs():
    light = Policy(grid=4, hidden_dim=16, input_size=16).train()
    seen = []
    light.trunk.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    logits = light(torch.randn(2, 3, 64, 64))
    assert seen == [(2, 3, 16, 16)]
    assert logits.alpha.shape == (2, 16)


def test_light_policy_trunk_runs_in_nchw_on_cpu_whatever_the_batch_layout():
    light = Policy(grid=4, hidden_dim=16, input_size=16).eval()
    contiguous = []
    light.trunk.register_forward_pre_hook(lambda _, args: contiguous.append(
        args[0].is_contiguous()))
    images = torch.randn(2, 3, 64, 64)
    from_nhwc = light(images.contiguous(memory_format=torch.channels_last))
    from_nchw = light(images)
    assert contiguous == [True, True]
    torch.testing.assert_close(from_nhwc.alpha, from_nchw.alpha)


def test_state_logits_expand_the_running_state(policy):
    logits = policy.state_logits(batch_size=3)
    assert logits.alpha.shape == (3, 16)
    assert torch.equal(logits.alpha[2], policy.base_alpha[0])


def test_running_state_survives_a_state_dict_round_trip(policy):
    policy(torch.randn(4, 3, 32, 32))
    restored = Policy(grid=4, hidden_dim=16)
    restored.load_state_dict(policy.state_dict())
    assert torch.equal(restored.base_alpha, policy.base_alpha)
    assert torch.equal(restored.base_beta, policy.base_beta)


def test_build_policy_reads_the_config(tiny_config):
    policy = build_policy(tiny_config)
    assert policy.grid == tiny_config.mask.grid and policy.base_alpha.shape == (1, 64)
    assert policy.input_size is None
