"""The course-faithful user model (issue 2 section 2) plus off-by-default extensions.

Rules (all pinned by sim/tests/test_model*.py):
- session start: user uniform (unless given); one interest uniform; the taste is
  that track's embedding; the first track is uniform among the
  `interest_neighbours` tracks nearest to the taste by inner product and counts
  as fully listened (time 1.0); it is not a step and earns no reward;
- listening to r: time 0 if r was already played in the session, else
  round(sigmoid((<e_r, taste> - consume_bias) * consume_sharpness) * gamma^k, 2)
  with k the earlier plays of r's artist in the session (the first track counts);
  a repeat earns 0 and, as in the course's session update, still counts as a
  play of its artist (`repeat_counts_artist_play`, True in the course setting);
- budget starts at session_budget and drops by 1 with probability 1 - time after
  each step; the session ends when it reaches 0; reward = time.
Rounding is round-half-even of 100*x (Python's round == numpy's rint), identical
in this scalar path and in the batched engine.

Two named settings (`realism`, sim/README.md "Realism"): `course` keeps exactly
the rules above (the defaults of UserModelParams); `production` (PRESETS) adds
what makes A/B tests in the simulator behave like production ones:
- listening the recommender does not control: with `own_pick_prob` the user
  plays a track of their own (one of the nearest tracks to one of their
  interests) instead of the recommendation; with `skip_prob` a track is skipped
  for a reason unrelated to it (its time times `skip_keep`);
- a session end that is not driven by recommendation quality alone
  (`session_end: hazard`): after each step the session ends with probability
  h_u + end_quality * (1 - time), where h_u is a persistent per-user base
  hazard (median `end_base`, log-normal spread `end_user_spread`);
- a popularity term in appeal: `popularity_weight` times the standardised
  log play count of the track is added to the inner product (top_pop is a
  real rung);
- per-user activity and return (sim.days) and a simulated clock.
Random draws per step, in order: own pick (if own_pick_prob > 0: one uniform,
then the interest and neighbour draws when it happens), skip (if skip_prob > 0),
then the end draw (budget or hazard).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from sim.world import DEFAULT_INTEREST_NEIGHBOURS, World

# Above this many (distinct interest tracks x catalog) products the full
# interest nearest-neighbour table is not precomputed; neighbours are computed
# per interest track on first use and memoised instead (million-track worlds).
EAGER_NN_LIMIT = 4e10


REALISMS = ("course", "production")

#: the production-like setting: every value that differs from the course's defaults
#: (chosen by `python -m sim.calibrate --targets`, sim/README.md "Realism")
PRODUCTION: dict[str, Any] = {
    "realism": "production",
    "session_end": "hazard",
    "end_base": 0.08,
    "end_quality": 0.12,
    "end_user_spread": 0.8,
    "own_pick_prob": 0.35,
    "skip_prob": 0.1,
    "skip_keep": 0.1,
    "popularity_weight": 0.06,
    "returning_users": True,
    "activity_sigma": 1.3,
    "sessions_per_visit": 2.0,
    "return_sensitivity": 0.4,
    "return_memory": 0.5,
    "return_reference": 2.5,
    "churn_prob": 0.0,
    "clock": True,
}
PRESETS: dict[str, dict[str, Any]] = {"course": {"realism": "course"}, "production": PRODUCTION}


@dataclass
class UserModelParams:
    """User-model parameters; the YAML `user_model:` section maps onto the fields by name.

    Field defaults are the course's (`realism: course`); `realism: production`
    in a config (or `UserModelParams.preset("production")`) starts from PRESETS
    instead, and the keys given explicitly still win.
    """

    session_budget: int = 5
    interest_neighbours: int = DEFAULT_INTEREST_NEIGHBOURS
    artist_discount_gamma: float = 0.8
    max_session_steps: int = 1000        # safety cap (gymnasium truncation); course has none
    # the course's session update counts a repeated track (time 0) as another
    # play of its artist, which discounts that artist's later tracks further
    repeat_counts_artist_play: bool = True
    # --- the named setting these values came from ("course" or "production")
    realism: str = "course"
    # --- production modelling (neutral in the course setting, see the module docstring)
    session_end: str = "budget"          # "budget" (course) or "hazard"
    end_base: float = 0.08               # hazard: median per-user base end probability per step
    end_quality: float = 0.12            # hazard: + end_quality * (1 - time)
    end_user_spread: float = 0.0         # s.d. of log base hazard across users (persistent)
    own_pick_prob: float = 0.0           # P(the user plays their own pick instead)
    skip_prob: float = 0.0               # P(a skip unrelated to the track)
    skip_keep: float = 0.1               # ... which keeps this share of the time
    popularity_weight: float = 0.0       # appeal += weight * standardised log popularity
    traits_seed: int = 0                 # seed of the persistent per-user traits
    # --- returning users / churn / DAU (sim.days.DayProcess)
    returning_users: bool = False
    sessions_per_visit: float = 2.0      # mean sessions of a user on a day they come
    return_min: float = 0.15             # P(come back tomorrow) after a very bad day
    return_max: float = 0.9              # ... after a very good day
    satisfaction_mid: float = 2.0        # mean session reward where P(return) is halfway
    satisfaction_scale: float = 0.75     # softness of that curve
    churn_below: float = 0.5             # a day with mean reward below this ...
    churn_prob: float = 0.3              # ... makes the user leave for good with this prob.
    # heavy-tailed activity (activity_sigma > 0 switches sim.days to the production process)
    activity_sigma: float = 0.0          # s.d. of log activity propensity across users
    return_sensitivity: float = 0.4      # P(come) scales with exp(this * (sat - reference))
    return_memory: float = 0.5           # weight of the latest day in the satisfaction average
    return_reference: float = 2.5        # mean session reward where return is unchanged
    clock: bool = False                  # simulated start times with a time-of-day pattern
    # --- daily hype: each day a few trending tracks get more appealing
    daily_hype: bool = False
    hype_tracks: int = 50
    hype_boost: float = 0.25             # added to <e_r, taste> for hyped tracks
    # --- taste drift within a session toward enjoyed tracks
    taste_drift: bool = False
    drift_rate: float = 0.3              # taste += drift_rate * time * (e_r - taste), renormalised

    def __post_init__(self) -> None:
        if int(self.session_budget) < 1:
            raise ValueError("user_model.session_budget must be >= 1")
        if int(self.interest_neighbours) < 1:
            raise ValueError("user_model.interest_neighbours must be >= 1")
        if not 0.0 <= float(self.artist_discount_gamma) <= 1.0:
            raise ValueError("user_model.artist_discount_gamma must be in [0, 1]")
        if int(self.max_session_steps) < 1:
            raise ValueError("user_model.max_session_steps must be >= 1")
        if not 0.0 <= self.return_min <= self.return_max <= 1.0:
            raise ValueError("user_model.return_min/return_max must satisfy 0 <= min <= max <= 1")
        if self.sessions_per_visit < 1.0:
            raise ValueError("user_model.sessions_per_visit must be >= 1")
        if self.satisfaction_scale <= 0:
            raise ValueError("user_model.satisfaction_scale must be > 0")
        if not 0.0 <= self.churn_prob <= 1.0:
            raise ValueError("user_model.churn_prob must be in [0, 1]")
        if int(self.hype_tracks) < 0:
            raise ValueError("user_model.hype_tracks must be >= 0")
        if not 0.0 <= self.drift_rate <= 1.0:
            raise ValueError("user_model.drift_rate must be in [0, 1]")
        if self.realism not in REALISMS:
            raise ValueError(f"user_model.realism: {self.realism!r} is not one of "
                             f"{', '.join(REALISMS)}")
        if self.session_end not in ("budget", "hazard"):
            raise ValueError(f"user_model.session_end: {self.session_end!r} is not budget or hazard")
        for key in ("end_base", "end_quality", "own_pick_prob", "skip_prob", "skip_keep",
                    "return_memory"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise ValueError(f"user_model.{key} must be in [0, 1], got {getattr(self, key)!r}")
        if self.session_end == "hazard" and self.end_base + self.end_quality <= 0:
            raise ValueError("user_model.end_base + end_quality must be > 0 (sessions must end)")
        for key in ("end_user_spread", "activity_sigma"):
            if not 0.0 <= float(getattr(self, key)) <= 3.0:
                raise ValueError(f"user_model.{key} must be in [0, 3], got {getattr(self, key)!r}")
        if not -2.0 <= self.popularity_weight <= 2.0:
            raise ValueError("user_model.popularity_weight must be in [-2, 2]")
        if not 0.0 <= self.return_sensitivity <= 10.0:
            raise ValueError("user_model.return_sensitivity must be in [0, 10]")
        if self.return_reference < 0:
            raise ValueError("user_model.return_reference must be >= 0")
        if int(self.traits_seed) < 0:
            raise ValueError("user_model.traits_seed must be >= 0")

    @classmethod
    def preset(cls, realism: str = "course", **overrides: Any) -> UserModelParams:
        """The named setting `realism` with explicit `overrides` on top."""
        if realism not in PRESETS:
            raise ValueError(f"user_model.realism: {realism!r} is not one of "
                             f"{', '.join(REALISMS)}")
        return replace(cls(**PRESETS[realism]), **overrides)

    @classmethod
    def from_dict(cls, data: dict | None) -> UserModelParams:
        """Build from a YAML mapping; unknown keys are an error naming the key."""
        data = dict(data or {})
        realism = data.pop("realism", "course")
        if not isinstance(realism, str):
            raise ValueError(f"user_model.realism: expected a string, got {realism!r}")
        known = {f.name: f for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ValueError(f"user_model.{key}: unknown parameter "
                                 f"(known: {', '.join(sorted(known))})")
        out = {}
        for key, value in data.items():
            typ = known[key].type
            try:
                if typ in ("int", int):
                    if isinstance(value, bool) or float(value) != int(value):
                        raise ValueError
                    out[key] = int(value)
                elif typ in ("float", float):
                    if isinstance(value, bool):
                        raise ValueError
                    out[key] = float(value)
                elif typ in ("bool", bool):
                    if not isinstance(value, bool):
                        raise ValueError
                    out[key] = value
                else:
                    out[key] = value
            except (TypeError, ValueError):
                raise ValueError(f"user_model.{key}: expected {typ}, got {value!r}") from None
        return cls.preset(realism, **out)


def round_time(x: float) -> float:
    """Course rounding to 2 decimals (half-even on 100*x, same as numpy.rint)."""
    return round(x * 100.0) / 100.0


class UserModel:
    """Starts sessions for a world; holds day-level state (hype)."""

    def __init__(self, world: World, params: UserModelParams | None = None) -> None:
        self.world = world
        self.params = params or UserModelParams()
        p = self.params
        self.emb = world.embeddings
        self.track_artist = world.track_artist
        self.n_tracks = world.n_tracks
        self.n_users = world.n_users
        self._budget = self._override("session_budget", p.session_budget).astype(np.int64)
        self._gamma = self._override("artist_discount_gamma", p.artist_discount_gamma)
        self._k = self._override("interest_neighbours", p.interest_neighbours).astype(np.int64)
        self._bias = world.consume_bias
        self._sharp = world.consume_sharpness
        self.hazard = p.session_end == "hazard"
        # persistent per-user traits (production): base end hazard, from their own seed
        traits = np.random.default_rng(np.random.SeedSequence([int(p.traits_seed), 1]))
        z = traits.standard_normal(self.n_users)
        self._hbase = np.clip(p.end_base * np.exp(p.end_user_spread * z), 0.0, 1.0)
        self.pop_term: np.ndarray | None = None  # (N,) float32 popularity part of appeal
        if p.popularity_weight:
            lp = np.log1p(world.track_popularity.astype(np.float64))
            sd = float(lp.std())
            if sd > 0:
                self.pop_term = (p.popularity_weight * (lp - lp.mean()) / sd).astype(np.float32)
        # (N,) float32 added to every inner product: popularity term + today's hype
        self.boost: np.ndarray | None = self.pop_term
        self.hype: np.ndarray = np.zeros(0, dtype=np.int32)
        self.day = 0
        k_max = int(self._k.max()) if self.n_users else p.interest_neighbours
        n_distinct = len(np.unique(world.interests))
        self._k_max = k_max
        self.eager = n_distinct * self.n_tracks <= EAGER_NN_LIMIT
        self._lazy: dict[int, np.ndarray] = {}
        if self.eager:
            self._nn_row, self._nn_table = world.interest_neighbours(k_max)
        else:
            self._nn_row = self._nn_table = None

    def _override(self, key: str, default: float) -> np.ndarray:
        vals = self.world.overrides.get(key)
        if vals is None:
            return np.full(self.world.n_users, float(default))
        return np.where(np.isnan(vals), float(default), vals)

    # ----------------------------------------------------------- day state
    def begin_day(self, day: int, rng: np.random.Generator) -> None:
        """Start day `day`: with daily_hype on, draw that day's trending tracks."""
        self.day = int(day)
        p = self.params
        if not p.daily_hype or p.hype_tracks == 0:
            self.boost = self.pop_term
            self.hype = np.zeros(0, dtype=np.int32)
            return
        pop = self.world.track_popularity.astype(np.float64) + 1.0
        m = min(int(p.hype_tracks), self.n_tracks)
        self.hype = np.sort(rng.choice(self.n_tracks, size=m, replace=False, p=pop / pop.sum())
                            ).astype(np.int32)
        boost = np.zeros(self.n_tracks, dtype=np.float32) if self.pop_term is None \
            else self.pop_term.copy()
        boost[self.hype] += p.hype_boost
        self.boost = boost

    # -------------------------------------------------------- neighbours
    def first_candidates(self, interest_track: int, user: int | None = None) -> np.ndarray:
        """The k tracks nearest to an interest track (k = the user's interest_neighbours)."""
        k = self._k_max if user is None else int(self._k[user])
        if self.eager:
            return self._nn_table[self._nn_row[interest_track], :k]
        got = self._lazy.get(interest_track)
        if got is None:
            got = self.world.nearest(self.emb[interest_track], self._k_max)[0]
            self._lazy[interest_track] = got
        return got[:k]

    def first_candidates_batch(self, interest_tracks: np.ndarray) -> np.ndarray:
        """(B, k_max) neighbour rows for many interest tracks at once."""
        if self.eager:
            return self._nn_table[self._nn_row[interest_tracks]]
        missing = [t for t in np.unique(interest_tracks).tolist() if t not in self._lazy]
        if missing:
            rows = self.world.nearest(self.emb[missing], self._k_max)
            for t, r in zip(missing, rows, strict=True):
                self._lazy[t] = r
        return np.stack([self._lazy[t] for t in interest_tracks.tolist()])

    # ----------------------------------------------------------- sessions
    def start_session(self, rng: np.random.Generator, user: int | None = None) -> Session:
        """Start a session (user uniform unless given) using `rng` for every draw."""
        if user is None:
            user = int(rng.integers(self.n_users))
        elif not 0 <= int(user) < self.n_users:
            raise ValueError(f"user {user} outside 0..{self.n_users - 1}")
        user = int(user)
        w = self.world
        lo, hi = int(w.interest_offsets[user]), int(w.interest_offsets[user + 1])
        interest = int(w.interests[lo + int(rng.integers(hi - lo))])
        cand = self.first_candidates(interest, user)
        first = int(cand[int(rng.integers(len(cand)))])
        return Session(self, user, interest, first, rng)

    def taste_of(self, interest: int) -> np.ndarray:
        return self.emb[interest]

    def own_pick(self, user: int, rng: np.random.Generator) -> int:
        """A track the user chooses themselves: one of the nearest to one of their interests."""
        w = self.world
        lo, hi = int(w.interest_offsets[user]), int(w.interest_offsets[user + 1])
        interest = int(w.interests[lo + int(rng.integers(hi - lo))])
        cand = self.first_candidates(interest, user)
        return int(cand[int(rng.integers(len(cand)))])


class Session:
    """One listening session. `listen(track)` applies the rules and returns the time."""

    __slots__ = ("model", "user", "interest", "taste", "first_track", "last_track", "last_time",
                 "steps", "reward", "done", "truncated", "budget", "played", "artist_plays",
                 "rng", "_bias", "_sharp", "_gamma", "_drift", "_hbase", "last_recommended")

    def __init__(self, model: UserModel, user: int, interest: int, first_track: int,
                 rng: np.random.Generator) -> None:
        self.model = model
        self.user = user
        self.interest = interest
        p = model.params
        self._drift = p.drift_rate if p.taste_drift else 0.0
        taste = model.emb[interest]
        self.taste = taste.astype(np.float32, copy=True) if self._drift else taste
        self.first_track = first_track
        self.last_track = first_track
        self.last_time = 1.0
        self.steps = 0
        self.reward = 0.0
        self.done = False
        self.truncated = False
        self.budget = int(model._budget[user])
        self.played: set[int] = {first_track}
        self.artist_plays: dict[int, int] = {int(model.track_artist[first_track]): 1}
        self.rng = rng
        self._bias = float(model._bias[user])
        self._sharp = float(model._sharp[user])
        self._gamma = float(model._gamma[user])
        self._hbase = float(model._hbase[user])
        self.last_recommended = -1   # the last recommendation (differs from last_track on own picks)

    @property
    def consume_bias(self) -> float:
        """This session's user bias (hidden; for oracles and tests)."""
        return self._bias

    @property
    def consume_sharpness(self) -> float:
        return self._sharp

    @property
    def gamma(self) -> float:
        """Artist discount of this session's user (per-user override or the param)."""
        return self._gamma

    def appeal(self, track: int) -> float:
        """sigmoid((<e_r, taste> + hype - bias) * sharpness), before discount and rounding."""
        m = self.model
        x = float(m.emb[track] @ self.taste)
        if m.boost is not None:
            x += float(m.boost[track])
        z = (x - self._bias) * self._sharp
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def listen(self, track: int) -> float:
        """Recommend `track`; returns the listen time and updates budget/done.

        With own picks on, the track played may be the user's own (then
        `last_track` differs from `last_recommended`).
        """
        if self.done:
            raise RuntimeError("session is over")
        track = int(track)
        m = self.model
        p = m.params
        if not 0 <= track < m.n_tracks:
            raise ValueError(f"track {track} outside 0..{m.n_tracks - 1}")
        self.last_recommended = track
        if p.own_pick_prob and self.rng.random() < p.own_pick_prob:
            track = m.own_pick(self.user, self.rng)
        if track in self.played:
            t = 0.0
            if m.params.repeat_counts_artist_play:
                artist = int(m.track_artist[track])
                self.artist_plays[artist] = self.artist_plays.get(artist, 0) + 1
        else:
            artist = int(m.track_artist[track])
            k = self.artist_plays.get(artist, 0)
            t = round_time(self.appeal(track) * self._gamma ** k)
            self.played.add(track)
            self.artist_plays[artist] = k + 1
            if self._drift and t > 0.0:
                a = self._drift * t
                v = (1.0 - a) * self.taste + a * m.emb[track]
                self.taste = (v / np.linalg.norm(v)).astype(np.float32)
        if p.skip_prob and self.rng.random() < p.skip_prob:
            t = round_time(t * p.skip_keep)
        if m.hazard:
            if self.rng.random() < self._hbase + p.end_quality * (1.0 - t):
                self.budget = 0
        elif self.rng.random() >= t:
            self.budget -= 1
        self.steps += 1
        self.reward += t
        self.last_track = track
        self.last_time = t
        if self.budget <= 0:
            self.done = True
        elif self.steps >= m.params.max_session_steps:
            self.done = True
            self.truncated = True
        return t
