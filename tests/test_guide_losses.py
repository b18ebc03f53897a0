"""The Guide's particle loss (eq. 39) and time-aware MMD (eqs. 44-46) against their defining forms."""
import math

import pytest
import torch
from torch import nn

from ablate.train.objectives.base import GuideTerms
from ablate.train.objectives.particle_l2 import particle_l2_loss
from ablate.train.objectives.time_aware_mmd import TimeAwareMMDDistance, time_aware_mmd_loss


class TinyNet(nn.Module):
    """F(x, t, s): a small MLP of the state and both times."""

    def __init__(self, dim=3):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim + 2, 16), nn.Tanh(), nn.Linear(16, dim))

    def forward(self, x, t, s):
        return self.net(torch.cat([x, t[:, None], s[:, None]], dim=1))


def _batch(n=8, dim=3, gap=0.01, s_offset=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(n, dim, generator=g, dtype=torch.float64), torch.randn(n, dim, generator=g, dtype=torch.float64)
    t = 0.3 + 0.6 * torch.rand(n, generator=g, dtype=torch.float64)
    r = t - gap
    s = 0.006 + 0.2 * torch.rand(n, generator=g, dtype=torch.float64) if s_offset is None else r - s_offset
    x_t = (1 - t[:, None]) * x0 + t[:, None] * x1
    x_r = (1 - r[:, None]) * x0 + r[:, None] * x1
    w = torch.exp(-t) + 0.5
    return x0, x1, t, r, s, x_t, x_r, w


def _particle_terms(net, x0, x1, t, r, s, x_t, x_r, w):
    v_t = net(x_t, t, s)
    with torch.no_grad():
        v_r_target = net(x_r, r, s)
    return GuideTerms(x_t, x_r, t, r, s, w, x1 - x0, v_t, v_t.detach(), v_r_target)


def _grad_of(loss_fn, net):
    net.zero_grad()
    loss_fn().backward()
    return torch.cat([p.grad.flatten().clone() for p in net.parameters()])


def test_particle_loss_gradient_equals_eq_5():
    """eq. 39 and w/(t - s) ||g_theta(x_t, t, s) - sg g(x_r, r, s)|| (eq. 5) have the same gradient."""
    net = TinyNet().double()
    x0, x1, t, r, s, x_t, x_r, w = _batch()

    def eq5():
        g_t = x_t + (s - t)[:, None] * net(x_t, t, s)
        with torch.no_grad():
            g_r = x_r + (s - r)[:, None] * net(x_r, r, s)
        return (w / (t - s) * (g_t - g_r).norm(dim=1)).mean()

    grad_39 = _grad_of(lambda: particle_l2_loss(None, _particle_terms(net, x0, x1, t, r, s, x_t, x_r, w)), net)
    grad_5 = _grad_of(eq5, net)
    assert torch.allclose(grad_39, grad_5, rtol=1e-6, atol=1e-9)


def test_particle_loss_gradient_tends_to_diffusion_loss_gradient_as_s_to_t():
    """Guide App. D.2: as s -> t the gradient is that of w ||u_t - F_theta(x_t, t, s)||."""
    net = TinyNet().double()
    errors = []
    for offset in (1e-1, 1e-2, 1e-3):
        x0, x1, t, r, s, x_t, x_r, w = _batch(gap=offset, s_offset=offset)  # s = t - 2 offset
        grad_ct = _grad_of(lambda: particle_l2_loss(None, _particle_terms(net, x0, x1, t, r, s, x_t, x_r, w)), net)
        grad_dm = _grad_of(lambda: (w * (x1 - x0 - net(x_t, t, s)).norm(dim=1)).mean(), net)
        errors.append(float((grad_ct - grad_dm).norm() / grad_dm.norm()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2


def _mmd_terms(net, x0, x1, t, r, s, x_t, x_r, w):
    return _particle_terms(net, x0, x1, t, r, s, x_t, x_r, w)


def test_mmd_with_shared_times_and_infinite_sigma_is_imm_loss():
    """Guide eq. 43 with k = -||x - y||, each group sharing (t, r, s), written with loops."""
    net, m = TinyNet().double(), 4
    x0, x1, t, r, s, x_t, x_r, w = _batch(n=8)
    for tensor in (t, r, s, w):
        tensor.copy_(tensor.reshape(-1, m)[:, :1].expand(-1, m).reshape(-1))
    x_t = (1 - t[:, None]) * x0 + t[:, None] * x1
    x_r = (1 - r[:, None]) * x0 + r[:, None] * x1
    terms = _mmd_terms(net, x0, x1, t, r, s, x_t, x_r, w)
    got = time_aware_mmd_loss(TimeAwareMMDDistance(group_size=m, sigma=math.inf), terms)
    with torch.no_grad():
        g_t = x_t + (s - t)[:, None] * net(x_t, t, s)
        g_r = x_r + (s - r)[:, None] * net(x_r, r, s)
    total = 0.0
    for i in range(0, 8, m):
        group = 0.0
        for j in range(i, i + m):
            for k in range(i, i + m):
                group += (-(g_t[j] - g_t[k]).norm() - (g_r[j] - g_r[k]).norm() + 2 * (g_t[j] - g_r[k]).norm())
        total += w[i] / (t[i] - r[i]) * group / m ** 2
    assert got.item() == pytest.approx(float(total) / (8 // m), rel=1e-9)


@pytest.mark.parametrize("sigma", [math.inf, 0.1])
def test_mmd_with_group_size_one_is_the_particle_loss(sigma):
    """M = 1: gradient 2 e^{-(t - r)/sigma} times the particle loss's (the damped cross term only)."""
    net = TinyNet().double()
    x0, x1, t, r, s, x_t, x_r, w = _batch(n=6)
    cfg = TimeAwareMMDDistance(group_size=1, sigma=sigma)
    grad_mmd = _grad_of(lambda: time_aware_mmd_loss(cfg, _mmd_terms(net, x0, x1, t, r, s, x_t, x_r, w)), net)
    damp = 2 * torch.exp(-(t - r) / sigma)
    grad_particle = _grad_of(lambda: particle_l2_loss(
        None, _particle_terms(net, x0, x1, t, r, s, x_t, x_r, w * damp)), net)
    assert torch.allclose(grad_mmd, grad_particle, rtol=1e-6, atol=1e-9)


def test_time_damping_lowers_cross_time_terms():
    """With distinct times in a group, a small sigma damps the pairs far apart in time (eq. 44)."""
    net = TinyNet().double()
    x0, x1, t, r, s, x_t, x_r, w = _batch(n=8)
    terms = _mmd_terms(net, x0, x1, t, r, s, x_t, x_r, w)
    values = [time_aware_mmd_loss(TimeAwareMMDDistance(group_size=4, sigma=sig), terms).item()
              for sig in (math.inf, 1.0, 1e-4)]
    alone = time_aware_mmd_loss(TimeAwareMMDDistance(group_size=1, sigma=1e-4), terms).item() / 4
    assert values[0] != pytest.approx(values[1])
    assert values[2] == pytest.approx(alone, rel=1e-6)  # only j = k survives
