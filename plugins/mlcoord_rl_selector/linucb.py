"""Disjoint LinUCB with discounting: one ridge regression of reward on context per arm.

Why not River's ``bandit.LinUCBDisjoint``: in River 0.26 its bound is ``mu + sigma`` where
sigma is the *predictive* std, which includes the noise term ``1 / beta`` and so never shrinks:
with rewards of order 0.1 to 1 exploration never ends; ties are broken with a random generator
(state that does not serialise); its ``burn_in`` crashes; and its ``smoothing`` forgets only
the arm being pulled. Here (Li et al. 2010, with the discount of Russac et al. 2019, D-LinUCB):

* arm ``a`` keeps ``A_a = lambda I + sum g^age x x'`` and ``b_a = sum g^age r x``; at every
  update all arms are discounted by ``g`` (``A <- g A + (1 - g) lambda I``), so an arm that
  stops being pulled regains uncertainty and is tried again after a regime change;
* choice: ``argmax_a theta_a . x + alpha sqrt(x' A_a^-1 x)``, ties to the first arm (no
  randomness, so runs are reproducible);
* per arm a discounted mean and variance of its rewards (with one pseudo-reward of variance 1),
  used to turn an estimated mean reward into a probability (see the package docstring).
"""

from __future__ import annotations

import math

import numpy as np

STATE_VERSION = 1


class DiscountedLinUCB:
    def __init__(self, n_arms: int, dim: int, alpha: float, ridge: float, discount: float):
        self.n_arms, self.dim = n_arms, dim
        self.alpha, self.ridge, self.discount = alpha, ridge, discount
        self.A = np.stack([np.eye(dim) * ridge for _ in range(n_arms)])
        self.b = np.zeros((n_arms, dim))
        self.moments = np.tile([1.0, 0.0, 1.0], (n_arms, 1))   # weight, sum r, sum r^2 (one prior pseudo-reward)
        self.rewards = np.zeros(n_arms, dtype=np.int64)
        self._refresh()

    def _refresh(self) -> None:
        self.A_inv = np.linalg.inv(self.A)
        self.theta = np.einsum("kij,kj->ki", self.A_inv, self.b)

    def scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimated mean reward and exploration bonus of every arm in context ``x``."""
        mean = self.theta @ x
        bonus = self.alpha * np.sqrt(np.maximum(np.einsum("i,kij,j->k", x, self.A_inv, x), 0.0))
        return mean, bonus

    def reward_std(self, arm: int) -> float:
        w, s1, s2 = self.moments[arm]
        return math.sqrt(max(s2 / w - (s1 / w) ** 2, 1e-6))

    def update(self, arm: int, x: np.ndarray, reward: float) -> None:
        g = self.discount
        self.A = g * self.A + (1.0 - g) * self.ridge * np.eye(self.dim)
        self.b *= g
        self.moments *= g
        self.A[arm] += np.outer(x, x)
        self.b[arm] += reward * x
        self.moments[arm] += (1.0, reward, reward * reward)
        self.rewards[arm] += 1
        self._refresh()

    def state(self) -> dict:
        return {"version": STATE_VERSION, "A": self.A.tolist(), "b": self.b.tolist(),
                "moments": self.moments.tolist(), "rewards": self.rewards.tolist()}

    def load_state(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"rl_selector bandit state version {state.get('version')!r} is not {STATE_VERSION}")
        A, b = np.asarray(state["A"], float), np.asarray(state["b"], float)
        if A.shape != self.A.shape or b.shape != self.b.shape:
            raise ValueError(f"rl_selector state is for {A.shape[0]} arms x {A.shape[-1]} features, "
                             f"this configuration has {self.n_arms} x {self.dim}")
        self.A, self.b = A, b
        self.moments = np.asarray(state["moments"], float)
        self.rewards = np.asarray(state["rewards"], dtype=np.int64)
        self._refresh()
