import math

import pytest

torch = pytest.importorskip("torch")

from adegan.training import losses  # noqa: E402


def test_ip_loss_is_minimal_at_the_uniform_distribution():
    K = 10
    uniform = torch.zeros(4, K)
    assert losses.interpolation_loss(uniform).item() == pytest.approx(math.log(K), abs=1e-6)
    for _ in range(20):
        logits = torch.randn(4, K) * 3
        assert losses.interpolation_loss(logits).item() > math.log(K)


def test_ip_loss_gradient_vanishes_at_uniform_and_pushes_towards_it():
    logits = torch.zeros(2, 5, requires_grad=True)
    losses.interpolation_loss(logits).backward()
    assert torch.allclose(logits.grad, torch.zeros_like(logits.grad), atol=1e-7)
    peaked = torch.tensor([[4.0, 0, 0, 0, 0]], requires_grad=True)
    losses.interpolation_loss(peaked).backward()
    assert peaked.grad[0, 0] > 0  # gradient descent lowers the dominant logit


def test_same_pattern_interpolation_keeps_z_c_and_stays_within_the_draws():
    torch.manual_seed(0)
    draws = torch.randn(64, 3, 7)
    z_c = torch.nn.functional.one_hot(torch.randint(0, 10, (64,)), 10).float()
    z_n, z_c_out = losses.same_pattern_interpolation(draws, z_c)
    assert torch.equal(z_c_out, z_c)  # Eq. 4
    assert z_n.shape == (64, 7)
    assert bool((z_n >= draws.min(dim=1).values - 1e-6).all())  # Eq. 5
    assert bool((z_n <= draws.max(dim=1).values + 1e-6).all())
    assert not torch.allclose(z_n, draws[:, 0])  # it really mixes


def test_different_pattern_interpolation_mixes_two_distinct_patterns():
    torch.manual_seed(1)
    a, b = losses.different_pattern_pairs(500, 4)
    assert bool((a != b).all())
    z_n, z_c = losses.different_pattern_interpolation(torch.randn(500, 3), torch.randn(500, 3), a, b, 4)
    assert torch.allclose(z_c.sum(dim=1), torch.ones(500))
    assert bool(((z_c > 0).sum(dim=1) == 2).all())
    weights = z_c.max(dim=1).values
    assert bool((weights <= 0.8 + 1e-6).all()) and bool((weights >= 0.5 - 1e-6).all())


def test_self_supervised_loss_is_cross_entropy_plus_mse():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    z_hat, z = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2 + (1 + 4) / 2
    assert losses.self_supervised_loss(logits, z_hat.expand(2, 2), target, z.expand(2, 2)).item() == pytest.approx(expected, rel=1e-5)


def test_adversarial_losses_reward_the_right_side():
    confident = torch.full((8,), 8.0)
    assert losses.discriminator_loss(confident, -confident).item() < 1e-3
    assert losses.discriminator_loss(-confident, confident).item() > 10
    assert losses.generator_adversarial_loss(confident).item() < losses.generator_adversarial_loss(-confident).item()


def test_hard_pattern_code_is_one_hot_with_straight_through_gradient():
    logits = torch.tensor([[0.1, 2.0, -1.0]], requires_grad=True)
    code = losses.pattern_code(logits, "hard")
    assert torch.allclose(code.detach(), torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-6)
    (code * torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    soft = losses.pattern_code(logits, "softmax")
    assert torch.allclose(soft.sum(), torch.tensor(1.0))


def test_reconstruction_loss_is_zero_only_for_perfect_reconstruction():
    x = torch.rand(2, 1, 4, 4)
    assert losses.reconstruction_loss(x, x).item() == 0
    assert losses.reconstruction_loss(x, x + 0.5).item() == pytest.approx(0.25)
