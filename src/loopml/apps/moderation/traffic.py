"""A simulated week of uploads: the arrival process the moderation load benchmark replays.

Why a model and not a recording: the seeds describe the shape (volume varies by hour and weekday,
TV-driven spikes, a peak that is 2x normal, and a validation run at peak load for 2 hours), not a
trace. The model makes that shape explicit and seeded, so a run can be repeated and argued about.

Time is seconds since Monday 00:00 local time (Asia/Seoul for the reference service). The rate is
piecewise constant per minute:

- ``hourly`` x ``weekday`` relative pattern: quiet at 3-5 am, a lunch bump, an evening peak at
  20-21 h; Friday to Sunday higher (people photograph their pets at home on weekends);
- seeded noise: one log-normal factor per hour (``noise`` is its sigma), so no two weeks match;
- ``spike``: a TV programme about pets (default Saturday 21:00) multiplies the rate by 3 for 40 minutes;
- ``peak``: the seeds' validation segment, **2x the week's normal peak rate sustained for 2 hours**
  (default Sunday 19:00-21:00, right before that evening's natural peak).

The whole week, spike and peak included, integrates to ``weekly_uploads``. The default, 150,000
uploads a week (~21,000 a day), is a mid-size pet-photo community: e.g. ~100,000 daily users of whom
one in five posts a photo a day. ``traffic.scaled(k)`` replays the same shape at another volume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from loopml.checks import check_number
from loopml.errors import ValidationError

WEEK_SECONDS = 7 * 24 * 3600
MINUTES = 7 * 24 * 60
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

#: Relative upload rate per local hour 0..23 (evening peak at 20-21 h).
HOURLY = (
    0.9, 0.6, 0.4, 0.3, 0.25, 0.3, 0.5, 0.8, 1.0, 1.0, 1.0, 1.1,
    1.3, 1.2, 1.0, 1.0, 1.1, 1.3, 1.5, 1.8, 2.0, 2.1, 1.8, 1.3,
)  # fmt: skip
#: Relative upload rate per weekday Mon..Sun (weekend higher).
WEEKDAY = (0.9, 0.9, 0.9, 0.95, 1.05, 1.25, 1.2)


@dataclass(frozen=True)
class Segment:
    """A window of the week where the rate is changed: ``start`` and ``minutes`` in the week's minutes."""

    start: int
    minutes: int
    factor: float

    @property
    def seconds(self) -> tuple[float, float]:
        return self.start * 60.0, (self.start + self.minutes) * 60.0


def at(day: int, hour: float) -> int:
    """The week minute of ``day`` (0 = Monday) at ``hour`` (e.g. 21.5 = 21:30)."""
    return round(day * 1440 + hour * 60)


@dataclass(frozen=True)
class WeekTraffic:
    """The arrival-rate model (see the module docstring). ``spike.factor`` multiplies the normal rate;
    ``peak.factor`` multiplies the week's highest *normal* minute rate (so 2.0 = "2x peak")."""

    weekly_uploads: int = 150_000
    seed: int = 0
    noise: float = 0.1
    hourly: tuple[float, ...] = HOURLY
    weekday: tuple[float, ...] = WEEKDAY
    spike: Segment = field(default_factory=lambda: Segment(at(5, 21), 40, 3.0))
    peak: Segment = field(default_factory=lambda: Segment(at(6, 19), 120, 2.0))

    def __post_init__(self) -> None:
        check_number(self.weekly_uploads, "weekly_uploads", low=1, high=10**10, integer=True)
        check_number(self.noise, "noise", low=0, high=1)
        if len(self.hourly) != 24 or min(self.hourly) <= 0:
            raise ValidationError("hourly needs 24 positive values (hours 0..23)", field="hourly")
        if len(self.weekday) != 7 or min(self.weekday) <= 0:
            raise ValidationError("weekday needs 7 positive values (Mon..Sun)", field="weekday")
        for name in ("spike", "peak"):
            seg = getattr(self, name)
            if not isinstance(seg, Segment):
                raise ValidationError(f"{name} must be a Segment(start, minutes, factor)", field=name)
            if seg.start < 0 or seg.minutes < 1 or seg.start + seg.minutes > MINUTES:
                raise ValidationError(
                    f"{name} must lie inside the week (minutes 0..{MINUTES}); got {seg}", field=name
                )
            check_number(seg.factor, f"{name}.factor", low=0, low_open=True, high=100)

    def scaled(self, factor: float) -> WeekTraffic:
        """The same shape at ``factor`` times the volume (e.g. a 10x stress week)."""
        check_number(factor, "factor", low=0, low_open=True)
        return dataclasses.replace(self, weekly_uploads=max(1, round(self.weekly_uploads * factor)))

    def normal_minutes(self) -> np.ndarray:
        """Relative rate per minute of the week before the spike and peak segments (noise included)."""
        minute = np.arange(MINUTES)
        hour_of_week = minute // 60
        base = np.asarray(self.hourly)[hour_of_week % 24] * np.asarray(self.weekday)[hour_of_week // 24]
        rng = np.random.default_rng([self.seed, 11])
        noise = rng.lognormal(0.0, self.noise, size=7 * 24) if self.noise else np.ones(7 * 24)
        return base * noise[hour_of_week]

    def _relative(self) -> tuple[np.ndarray, np.ndarray]:
        """(normal relative rate, relative rate with the spike and the 2x-peak segment) per minute."""
        normal = self.normal_minutes()
        rel = normal.copy()
        s, p = self.spike, self.peak
        rel[s.start : s.start + s.minutes] *= s.factor
        rel[p.start : p.start + p.minutes] = p.factor * float(normal.max())
        return normal, rel

    def minute_rates(self) -> np.ndarray:
        """Uploads per second in each minute of the week (10,080 values)."""
        _, rel = self._relative()
        return rel * (self.weekly_uploads / (rel.sum() * 60.0))

    def rate(self, t: float | np.ndarray) -> np.ndarray:
        """Uploads per second at ``t`` seconds since Monday 00:00 (wraps around the week)."""
        minute = (np.asarray(t, dtype=float) % WEEK_SECONDS // 60).astype(int)
        return self.minute_rates()[minute]

    def arrivals(self, seed: int | None = None) -> np.ndarray:
        """Sorted arrival times (seconds since Monday 00:00) of one Poisson realisation of the week."""
        rates = self.minute_rates()
        rng = np.random.default_rng([self.seed if seed is None else seed, 23])
        counts = rng.poisson(rates * 60.0)
        starts = np.repeat(np.arange(MINUTES) * 60.0, counts)
        return np.sort(starts + rng.uniform(0.0, 60.0, size=starts.size))

    def summary(self) -> dict[str, float]:
        """Figures worth printing: average, normal peak, 2x-peak and spike rates (per second)."""
        normal, rel = self._relative()
        scale = self.weekly_uploads / (rel.sum() * 60.0)
        rates = rel * scale
        s, p = self.spike, self.peak
        return {
            "weekly_uploads": float(self.weekly_uploads),
            "mean_per_s": float(rates.mean()),
            "normal_peak_per_s": float(normal.max() * scale),
            "peak_segment_per_s": float(rates[p.start : p.start + p.minutes].mean()),
            "spike_per_s": float(rates[s.start : s.start + s.minutes].mean()),
            "peak_segment_uploads": float(rates[p.start : p.start + p.minutes].sum() * 60.0),
        }


def describe(seg: Segment) -> str:
    """``Sat 21:00-21:40`` for a segment."""
    start, end = seg.start, seg.start + seg.minutes
    return (
        f"{DAYS[start // 1440]} {start % 1440 // 60:02d}:{start % 60:02d}-"
        f"{DAYS[(end - 1) // 1440] + ' ' if (end - 1) // 1440 != start // 1440 else ''}"
        f"{end % 1440 // 60:02d}:{end % 60:02d}"
    )
