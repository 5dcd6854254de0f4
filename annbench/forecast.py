"""Forecasts to a catalog size not measured: how each figure grows with n, fitted, chosen and checked.

Owns the growth models, their fit, the choice among them, the prediction interval and the self-check.
Input is a series of (n, figure) pairs measured at three or more catalog sizes (a static scenario's
`timeline.sizes`); output, for a size N, the forecast with its 95 % prediction interval and the model used.

- **Models** (each a straight line in a transformed space, so each is fitted by least squares and explained
  in one phrase): linear `a + b·n`; n log n `a + b·n·ln n`; power law `a·n^b` (a line in log–log); linear in
  log n `a + b·ln n` (how recall and HNSW-like latencies drift); miss-rate power law `1 − recall = a·n^b` (the
  share of true neighbours missed grows as a power of n: a recall curve that bends down in log n, as HNSW's
  does at a fixed ef). Each figure has its candidates: memory, saved bytes and build time grow like the first
  three; latency and QPS like a power law or linear in log n; recall like linear in log n or a miss-rate
  power law.
- **Choice** by leave-one-out error: each candidate is refitted without each measured size in turn and
  predicts it; the lowest mean error (relative for positive figures, absolute for recall) wins. With three
  sizes a leave-one-out fit rests on two points: the choice is then weak, and the interval says so.
- **Plausible laws**: every candidate whose leave-one-out error is within `PLAUSIBLE`× the best one's is a
  law the data cannot rule out. Their forecasts at N are kept beside the chosen one (`alternatives`) and the
  interval covers all of their intervals: when two laws that fit the measured sizes equally well part ways
  beyond them, that is uncertainty of the forecast, and the user sees it as width and as the laws' values.
- **Interval**: the ordinary least-squares prediction interval in the model's space, ŷ ± t(0.975, m−2) · s ·
  √(1 + x₀ᵀ(XᵀX)⁻¹x₀) (for a power law, multiplicative once mapped back). Its width grows with the residual
  scatter, with few sizes (t has m−2 degrees of freedom: 12.7 for three sizes) and with the distance of N
  from the measured sizes (the leverage term): a forecast far beyond the largest size is wide, and is said
  to be far beyond it. No forecast is given without its interval. It is the envelope over the plausible laws.
- **Self-check**: the series is refitted without its largest size (same model choice rule) and predicts it;
  the signed error is reported beside the forecast, the way a user can judge the extrapolation.

Pure arithmetic over numbers: no annbench module below it is needed, and nothing here reads files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# t quantile at 0.975 by degrees of freedom (a table: no scipy at run time; tests check it against scipy)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}
MIN_SIZES = 3
FAR = 3.0  # N beyond this multiple of the largest measured size is "far beyond the measured range"
PLAUSIBLE = 2.0  # a law whose leave-one-out error is within this multiple of the best is not ruled out


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (between table rows, the row below:
    the wider interval)."""
    if df < 1:
        raise ValueError("a prediction interval needs at least one degree of freedom")
    return _T975[max(k for k in _T975 if k <= df)]


@dataclass(frozen=True)
class Model:
    """y = h(a + b·x(n)): a straight line after transforming n (x) and the figure (g, with inverse h)."""

    name: str
    x: Callable[[np.ndarray], np.ndarray]
    g: Callable[[np.ndarray], np.ndarray]
    h: Callable[[np.ndarray], np.ndarray]

    def usable(self, y: np.ndarray) -> bool:
        """The law can be fitted to y: y is finite and so is its transform (a log needs y > 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return bool(np.all(np.isfinite(y))) and bool(np.all(np.isfinite(self.g(y))))


def _ident(v: np.ndarray) -> np.ndarray:
    return v


def _log_miss(y: np.ndarray) -> np.ndarray:
    return np.log(1.0 - y)


def _from_log_miss(v: np.ndarray) -> np.ndarray:
    return 1.0 - np.exp(v)


LINEAR = Model("linear", lambda n: n, _ident, _ident)
NLOGN = Model("n log n", lambda n: n * np.log(n), _ident, _ident)
POWER = Model("power law", np.log, np.log, np.exp)
LOGLIN = Model("linear in log n", np.log, _ident, _ident)
MISS = Model("miss-rate power law", np.log, _log_miss, _from_log_miss)  # needs recall < 1 at every size

# Which models each figure may follow (see the module docstring).
CANDIDATES: dict[str, tuple[Model, ...]] = {
    "index_bytes": (LINEAR, NLOGN, POWER),
    "saved_bytes": (LINEAR, NLOGN, POWER),
    "build_seconds": (LINEAR, NLOGN, POWER),
    # a straight line in n is not offered for latency: exact search's is the power law with b ≈ 1, and on the
    # 10k–1M sweep a line chosen for IVF's sub-linear latency overshot 1M by 43–78 % (benchmarks/forecast_check)
    "p50_ms": (POWER, LOGLIN),
    "p99_ms": (POWER, LOGLIN),
    "qps": (POWER, LOGLIN),
    "recall": (LOGLIN, MISS),
}
BOUNDED = {"recall": (0.0, 1.0)}  # a forecast (and its interval) is clipped to what the figure can be


@dataclass(frozen=True)
class Fit:
    model: Model
    beta: np.ndarray  # (a, b) in the model's space
    xtx_inv: np.ndarray
    s: float  # residual standard error in the model's space (nan with two points)
    df: int

    def predict(self, n: float) -> float:
        x0 = np.array([1.0, float(self.model.x(np.array([n], np.float64))[0])])
        return float(self.model.h(np.array([x0 @ self.beta]))[0])

    def interval(self, n: float) -> tuple[float, float]:
        """95 % prediction interval at n (nan, nan when the fit has no degree of freedom left)."""
        if self.df < 1 or not math.isfinite(self.s):
            return math.nan, math.nan
        x0 = np.array([1.0, float(self.model.x(np.array([n], np.float64))[0])])
        centre = float(x0 @ self.beta)
        half = t975(self.df) * self.s * math.sqrt(1.0 + float(x0 @ self.xtx_inv @ x0))
        lo, hi = sorted(self.model.h(np.array([centre - half, centre + half])))  # h may decrease (miss rate)
        return float(lo), float(hi)


def fit(model: Model, n: np.ndarray, y: np.ndarray) -> Fit:
    """Least squares of g(y) on (1, x(n)); at least two distinct sizes."""
    n, y = np.asarray(n, np.float64), np.asarray(y, np.float64)
    x = np.column_stack([np.ones_like(n), model.x(n)])
    gy = model.g(y)
    xtx_inv = np.linalg.pinv(x.T @ x)
    beta = xtx_inv @ x.T @ gy
    df = len(n) - 2
    s = math.sqrt(float(((gy - x @ beta) ** 2).sum()) / df) if df > 0 else math.nan
    return Fit(model, beta, xtx_inv, s, df)


def _error(pred: float, actual: float, relative: bool, floor: float = 0.0) -> float:
    """Signed error; relative to the actual value (or `floor`, when that is larger: a zero is no scale)."""
    if relative:
        scale = max(abs(actual), floor)
        return float((pred - actual) / scale) if scale > 0 else math.inf
    return float(pred - actual)


def loo_error(model: Model, n: np.ndarray, y: np.ndarray, relative: bool) -> float:
    """Mean absolute leave-one-out error of `model` on the series (inf when it cannot be fitted)."""
    if not model.usable(y) or len(n) < MIN_SIZES:
        return math.inf
    errs = []
    floor = 1e-3 * float(np.abs(y).max())
    for i in range(len(n)):
        keep = np.arange(len(n)) != i
        errs.append(abs(_error(fit(model, n[keep], y[keep]).predict(n[i]), y[i], relative, floor)))
    return float(np.mean(errs))


def plausible(figure: str, n: np.ndarray, y: np.ndarray) -> list[Model]:
    """The candidates the series cannot rule out, best leave-one-out error first (the first is the choice);
    empty when none can be fitted."""
    relative = figure not in BOUNDED
    scored = sorted(((loo_error(m, n, y, relative), i, m) for i, m in enumerate(CANDIDATES[figure])),
                    key=lambda s: (s[0], s[1]))
    scored = [s for s in scored if math.isfinite(s[0])]
    return [m for err, _, m in scored if err <= PLAUSIBLE * scored[0][0]] if scored else []


def choose(figure: str, n: np.ndarray, y: np.ndarray) -> Model | None:
    """The candidate with the lowest leave-one-out error, or None when none can be fitted."""
    laws = plausible(figure, n, y)
    return laws[0] if laws else None


@dataclass(frozen=True)
class Forecast:
    """One figure at size N: the forecast, its 95 % interval, the model, and how the fit checks itself."""

    figure: str
    n: int
    value: float
    lo: float
    hi: float
    model: str
    sizes: tuple[int, ...]  # the measured sizes it rests on
    holdout_n: int | None  # the largest measured size, predicted from the others
    holdout_error: float | None  # signed: relative for positive figures, absolute for recall
    alternatives: tuple[tuple[str, float], ...] = ()  # other plausible laws and their forecasts at n

    @property
    def far(self) -> float:
        """N as a multiple of the largest measured size."""
        return self.n / max(self.sizes)

    @property
    def beyond(self) -> bool:
        return self.far > FAR

    def holdout_text(self) -> str:
        if self.holdout_error is None or self.holdout_n is None:
            return "no held-out check"
        err = (f"{self.holdout_error:+.0%}" if self.figure not in BOUNDED else f"{self.holdout_error:+.3f}")
        return f"held out {self.holdout_n:,}: {err}"

    def disagreement(self) -> float:
        """How far the other plausible laws' forecasts lie from this one (relative for positive figures,
        absolute for recall); 0 when no other law is plausible."""
        relative = self.figure not in BOUNDED
        return max((abs(_error(v, self.value, relative)) for _, v in self.alternatives), default=0.0)


def forecast(figure: str, sizes: Sequence[int], values: Sequence[float], n: int) -> Forecast | None:
    """The forecast of `figure` at `n` from its measured series, or None with fewer than three sizes."""
    order = np.argsort(np.asarray(sizes, np.float64))
    ns = np.asarray(sizes, np.float64)[order]
    ys = np.asarray(values, np.float64)[order]
    ok = np.isfinite(ys)
    ns, ys = ns[ok], ys[ok]
    if len(np.unique(ns)) < MIN_SIZES or len(ns) != len(np.unique(ns)):
        return None
    laws = plausible(figure, ns, ys)
    if not laws:
        return None
    model = laws[0]
    fits = [fit(m, ns, ys) for m in laws]
    value = fits[0].predict(n)
    bounds = [f.interval(n) for f in fits]
    # the envelope of the plausible laws' intervals; none when any law has no interval (no degree of freedom)
    if any(math.isnan(v) for b in bounds for v in b):
        lo = hi = math.nan
    else:
        lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
    a, b = BOUNDED.get(figure, (0.0, math.inf))  # no figure here is negative: bytes, seconds, QPS, recall

    def clip(v: float) -> float:
        return min(max(v, a), b) if math.isfinite(v) else v

    value, lo, hi = clip(value), clip(lo), clip(hi)
    alternatives = tuple((m.name, clip(f.predict(n))) for m, f in zip(laws[1:], fits[1:], strict=True))
    # The self-check: refit without the largest size (choosing again when enough sizes are left, else the
    # same model) and predict it, as the forecast predicts N.
    m2 = choose(figure, ns[:-1], ys[:-1]) if len(ns) - 1 >= MIN_SIZES else model
    holdout_n, holdout_error = None, None
    if m2 is not None and m2.usable(ys[:-1]):
        holdout_n = int(ns[-1])
        holdout_error = _error(fit(m2, ns[:-1], ys[:-1]).predict(ns[-1]), ys[-1], figure not in BOUNDED)
    return Forecast(figure, int(n), value, lo, hi, model.name, tuple(int(v) for v in ns), holdout_n, holdout_error,
                    alternatives)
