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

With `activity_sigma > 0` (the production setting) activity is heavy-tailed
and persistent instead:
- every user has an activity propensity a_u, log-normal with s.d.
  `activity_sigma` and mean 1, drawn once from `traits_seed`;
- a user comes on a day with probability 1 - exp(-c * a_u * m_u) and then has
  1 + Poisson((sessions_per_visit - 1) * a_u) sessions, so a minority of users
  makes most sessions; c is set on day 0 so that about n_sessions happen;
- m_u = exp(return_sensitivity * (sat_u - return_reference)) (clipped to
  [0.2, 5]), sat_u an exponential average (weight `return_memory` on the
  latest day) of the user's mean session reward on the days they came: how
  their recent sessions went drives whether they come back;
- with `clock`, each session gets a simulated start time (seconds since the
  day's midnight): users have a preferred hour (a morning, a midday and an
  evening peak) and sessions fall around it; a day's sessions are ordered by
  start time (`starts` holds them).
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
        self.starts: np.ndarray | None = None   # seconds since midnight of today's sessions
        p = self.params
        traits = np.random.default_rng(np.random.SeedSequence([int(p.traits_seed), 2]))
        sig = float(p.activity_sigma)
        self.activity = np.exp(sig * traits.standard_normal(self.n_users) - sig * sig / 2.0)
        peaks = traits.choice(3, size=self.n_users, p=[0.25, 0.2, 0.55])
        self.hour = np.mod(np.array([8.0, 13.0, 20.5])[peaks]
                           + np.array([1.2, 1.5, 2.0])[peaks] * traits.standard_normal(self.n_users),
                           24.0)
        self.satisfaction = np.full(self.n_users, float(p.return_reference))
        self._scale: float | None = None

    # ------------------------------------------------------------ state
    def state(self) -> dict:
        """What a later run needs to continue these days (JSON-able; no pickle)."""
        return {"day": self.day, "scale": self._scale,
                "satisfaction": self.satisfaction.round(6).tolist(),
                "churned": np.flatnonzero(self.churned).tolist(),
                "return_prob": None if self.return_prob is None
                else self.return_prob.round(6).tolist()}

    def load_state(self, state: dict, where: str = "state") -> None:
        """Continue from `state()`; a state of another world size is an error naming `where`."""
        try:
            sat = np.asarray(state["satisfaction"], dtype=np.float64)
            churned = np.asarray(state["churned"], dtype=np.int64)
            rp = state.get("return_prob")
            scale = state.get("scale")
            day = int(state["day"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: not a simulator state ({e})") from None
        if sat.shape != (self.n_users,) or (churned.size and (churned.min() < 0
                                                              or churned.max() >= self.n_users)):
            raise ValueError(f"{where}: state is for another number of users "
                             f"(this world has {self.n_users})")
        self.satisfaction = sat
        self.churned[:] = False
        self.churned[churned] = True
        self.return_prob = None if rp is None else np.asarray(rp, dtype=np.float64)
        self._scale = None if scale is None else float(scale)
        self.day = day

    @property
    def heavy_tailed(self) -> bool:
        return self.enabled and self.params.activity_sigma > 0

    def _expected_sessions(self, c: float) -> float:
        p = self.params
        come = 1.0 - np.exp(-c * self.activity)
        return float((come * (1.0 + (p.sessions_per_visit - 1.0) * self.activity)).sum())

    def _solve_scale(self, n_sessions: int) -> float:
        """c such that day 0 brings about n_sessions sessions (bisection; monotone in c)."""
        if n_sessions <= 0:
            return 0.0
        lo, hi = 0.0, 1.0
        while self._expected_sessions(hi) < n_sessions and hi < 1e6:
            hi *= 2.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            if self._expected_sessions(mid) < n_sessions:
                lo = mid
            else:
                hi = mid
        return hi

    def _heavy_day(self, n_sessions: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        if self._scale is None:
            self._scale = self._solve_scale(n_sessions)
        mult = np.clip(np.exp(p.return_sensitivity * (self.satisfaction - p.return_reference)),
                       0.2, 5.0)
        prob = 1.0 - np.exp(-self._scale * self.activity * mult)
        come = (rng.random(self.n_users) < prob) & ~self.churned
        users = np.flatnonzero(come)
        per = 1 + rng.poisson((p.sessions_per_visit - 1.0) * self.activity[users])
        out = np.repeat(users, per)
        if p.clock:
            # around the user's preferred hour (s.d. 1.5 h), wrapped into the day
            hours = np.mod(self.hour[out] + 1.5 * rng.standard_normal(out.size), 24.0)
            starts = np.floor(hours * 3600.0)
            order = np.lexsort((out, starts))
            self.starts = starts[order]
            return out[order]
        rng.shuffle(out)
        self.starts = None
        return out

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
        if self.heavy_tailed:
            return self._heavy_day(n_sessions, rng)
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
        if self.heavy_tailed:
            p = self.params
            mean = np.divide(self._reward_sum, self._sessions, out=np.zeros(self.n_users),
                             where=active)
            a = float(p.return_memory)
            self.satisfaction = np.where(active, (1 - a) * self.satisfaction + a * mean,
                                         self.satisfaction)
            if p.churn_prob > 0:
                if rng is None:
                    rng = np.random.default_rng([self.day, 7919])
                leave = active & (mean < p.churn_below) & (rng.random(self.n_users) < p.churn_prob)
                churned_today = int(leave.sum())
                self.churned |= leave
        elif self.enabled and self.return_prob is not None:
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
