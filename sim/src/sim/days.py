"""Simulated days: who comes to listen, returning users, churn and DAU.

Off by default (`returning_users: false`): every session's user is drawn
uniformly, exactly as the course does, and DAU is just the distinct users seen.

With `returning_users: true` a user's coming back depends on how satisfying
their sessions were:
- day 0: each user comes with probability p0 = min(1, n_sessions / (n_users *
  sessions_per_visit)), so the first day has about n_sessions sessions;
- a user who comes has 1 + Poisson(sessions_per_visit - 1) sessions that day;
- after a day with sessions, P(come tomorrow) = return_min + (return_max -
  return_min) * sigmoid((mean reward that day - satisfaction_mid) /
  satisfaction_scale); users without sessions keep their probability;
- a day with mean reward below churn_below makes the user leave for good with
  probability churn_prob (churned users never come back).
So a better recommender shows up as more daily active users, the course's
missing long-term metric.
"""

from __future__ import annotations

import numpy as np

from sim.model import UserModelParams


class DayProcess:
    """Which users come on each day, updated from session satisfaction."""

    def __init__(self, n_users: int, params: UserModelParams | None = None) -> None:
        if n_users < 1:
            raise ValueError("n_users must be >= 1")
        self.n_users = int(n_users)
        self.params = params or UserModelParams()
        self.day = -1
        self.return_prob: np.ndarray | None = None
        self.churned = np.zeros(self.n_users, dtype=bool)
        self._reward_sum = np.zeros(self.n_users)
        self._sessions = np.zeros(self.n_users, dtype=np.int64)
        self._total_churned = 0

    @property
    def enabled(self) -> bool:
        return bool(self.params.returning_users)

    def users_for_day(self, day: int, n_sessions: int, rng: np.random.Generator) -> np.ndarray:
        """User id of every session of `day`, in a random order.

        Disabled: n_sessions users drawn uniformly (course behaviour). Enabled:
        n_sessions only sets the scale of day 0; later days have as many
        sessions as returning users bring.
        """
        if n_sessions < 0:
            raise ValueError("n_sessions must be >= 0")
        self.day = int(day)
        self._reward_sum[:] = 0.0
        self._sessions[:] = 0
        if not self.enabled:
            return rng.integers(0, self.n_users, size=n_sessions)
        p = self.params
        if self.return_prob is None:
            p0 = min(1.0, n_sessions / (self.n_users * p.sessions_per_visit))
            self.return_prob = np.full(self.n_users, p0)
        come = (rng.random(self.n_users) < self.return_prob) & ~self.churned
        users = np.flatnonzero(come)
        per = 1 + rng.poisson(p.sessions_per_visit - 1.0, size=users.size)
        out = np.repeat(users, per)
        rng.shuffle(out)
        return out

    def end_session(self, user: int, reward: float) -> None:
        """Record one finished session's reward (total listen time)."""
        self._reward_sum[user] += reward
        self._sessions[user] += 1

    def end_sessions(self, users: np.ndarray, rewards: np.ndarray) -> None:
        """Vectorised end_session for many sessions."""
        np.add.at(self._reward_sum, users, rewards)
        np.add.at(self._sessions, users, 1)

    def end_day(self, rng: np.random.Generator | None = None) -> dict:
        """Close the day: update return probabilities and churn; report DAU.

        Churn draws need randomness: pass the run's rng (a fixed-seed one is
        derived from the day number if omitted, so results stay reproducible).
        """
        active = self._sessions > 0
        dau = int(active.sum())
        sessions = int(self._sessions.sum())
        mean_reward = float(self._reward_sum.sum() / sessions) if sessions else 0.0
        churned_today = 0
        if self.enabled and self.return_prob is not None:
            p = self.params
            if rng is None:
                rng = np.random.default_rng([self.day, 7919])
            mean = np.divide(self._reward_sum, self._sessions, out=np.zeros(self.n_users),
                             where=active)
            sat = 1.0 / (1.0 + np.exp(-(mean - p.satisfaction_mid) / p.satisfaction_scale))
            new_p = p.return_min + (p.return_max - p.return_min) * sat
            self.return_prob = np.where(active, new_p, self.return_prob)
            unhappy = active & (mean < p.churn_below)
            leave = unhappy & (rng.random(self.n_users) < p.churn_prob)
            churned_today = int(leave.sum())
            self.churned |= leave
            self._total_churned += churned_today
        return {"day": self.day, "dau": dau, "sessions": sessions, "mean_reward": mean_reward,
                "churned": churned_today, "churned_total": int(self.churned.sum()),
                "retained_users": int(self.n_users - self.churned.sum())}
