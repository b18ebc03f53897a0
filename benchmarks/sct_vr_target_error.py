"""How close each consistency-training target is to the exact one on sct_vr's toy (SCT eq. 14).

    python benchmarks/sct_vr_target_error.py            # ~5 s on one CPU core

The targets of sct_vr.yaml's arms estimate E[x0 | x_t] (the target point is then x_r = x_t + (r - t)
(x_t - x0_hat) / t under the VE kernel x_t = x0 + t eps, so x_r's error is (1 - r/t) times x0_hat's,
the same factor for every arm):

    plain     x0_hat = the sample's own x0 (the conditional target);
    vr_batch  SCT eq. 14 over the batch of 128 (own x0 included), weights N(x_t; x0_j, t^2 I);
    vr_all    the same over the batch and 10000 more training points (sct_vr's buffer).

On the toy (VCT App. E: two Gaussians N((0, +-0.5), 0.05^2 I), equal weights) the exact posterior mean
is known in closed form: p(k | x_t) ~ N(x_t; m_k, (s^2 + t^2) I) and E[x0 | x_t, k] = m_k + s^2 /
(s^2 + t^2) (x_t - m_k). Per t the script prints each estimator's mean squared error against it and,
for the reference-set estimators, the part that is bias (the error of the estimate averaged over
``--repeats`` independent reference sets for the same x_t and x0), which training cannot average away.
It tests candidate cause (1) of sct_vr_target's findings (benchmarks/repro_claims.yaml).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ablate.data import VCT_TOY
from ablate.train.couplings.vr import posterior_weights

TIMES = (0.002, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 80.0)


def exact_posterior_mean(x_t: torch.Tensor, t: float) -> torch.Tensor:
    """E[x0 | x_t] for VCT_TOY under x_t = x0 + t eps (equal-weight isotropic mixture)."""
    means, s2 = torch.tensor(VCT_TOY.means), VCT_TOY.stds[0][0] ** 2
    var = s2 + t ** 2
    component = torch.softmax(-((x_t[:, None] - means[None]) ** 2).sum(-1) / (2 * var), dim=1)
    conditional = means[None] + s2 / var * (x_t[:, None] - means[None])
    return (component[..., None] * conditional).sum(1)


def vr_estimate(x_t: torch.Tensor, x0: torch.Tensor, t: float, others: torch.Tensor) -> torch.Tensor:
    """SCT eq. 14 per row i over the reference set {x0_i} + ``others`` (ablate's own weights)."""
    batch = len(x0)
    refs = torch.cat([x0, others])
    own_or_other = torch.zeros(batch, len(refs), dtype=torch.bool)
    own_or_other[torch.arange(batch), torch.arange(batch)] = True
    own_or_other[:, batch:] = True
    weights = posterior_weights(x_t, torch.ones(batch), torch.full((batch,), t), refs,
                                same_class=own_or_other)
    return weights @ refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="sct_vr's batch size")
    parser.add_argument("--buffer", type=int, default=10000, help="vr_all's extra references")
    parser.add_argument("--repeats", type=int, default=32, help="reference sets per x_t")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    arms = {"vr_batch": args.batch - 1, "vr_all": args.batch - 1 + args.buffer}
    print(f"{'t':>7} {'plain mse':>10} {'vr_batch mse':>13} {'bias^2':>9} {'vr_all mse':>11} {'bias^2':>9}"
          f" {'plain / vr_all':>15}")
    for t in TIMES:
        x0, _ = VCT_TOY.sample(args.batch, rng)
        x_t = x0 + t * torch.randn_like(x0)
        exact = exact_posterior_mean(x_t, t)
        plain = ((x0 - exact) ** 2).sum(1).mean().item()
        mse, bias2 = {}, {}
        for name, n_others in arms.items():
            estimates = torch.stack([vr_estimate(x_t, x0, t, VCT_TOY.sample(n_others, rng)[0])
                                     for _ in range(args.repeats)])
            mse[name] = ((estimates - exact) ** 2).sum(-1).mean().item()
            bias2[name] = ((estimates.mean(0) - exact) ** 2).sum(-1).mean().item()
        print(f"{t:7.3f} {plain:10.2e} {mse['vr_batch']:13.2e} {bias2['vr_batch']:9.2e} "
              f"{mse['vr_all']:11.2e} {bias2['vr_all']:9.2e} {plain / mse['vr_all']:15.0f}")


if __name__ == "__main__":
    main()
