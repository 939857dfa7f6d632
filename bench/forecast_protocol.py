"""The forecast benchmark's protocol, shared by bench_forecast.py and peers_forecast.py.

Protocol, per series (bench/data/*.csv, each 1,461 consecutive days):
- origins: the last ORIGINS weekly origins; origin k (k = 0 … 51, latest first) is day n − 7 − 7k, so
  the latest origin's horizon ends on the last day.
- training: the TRAINING_DAYS (1,092: 156 weeks) days just before the origin, the same for every method:
  about the three years the trends service passes as history.
- forecast: the HORIZON days from the origin on.
- scale: the in-sample MAE of weekly seasonal naive (|y[t] − y[t−7]|) over that origin's training days.
- score: MASE per origin = the horizon's MAE / scale; a method's MASE on a series = the mean over origins;
  its ratio = that MASE / seasonal naive's MASE on the same origins.
Numpy and the standard library only: the peers' venv has neither Flask nor this package.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
ORIGINS = 52
HORIZON = 7
SEASON = 7
TRAINING_DAYS = 1092  # 156 whole weeks
PEERS_FILE = Path(__file__).resolve().parent / "forecast_peers.json"


def load_series() -> dict[str, tuple[list[dt.date], np.ndarray]]:
    """Return every bench/data/*.csv as name → (dates, values), checking the days are consecutive."""
    series = {}
    for path in sorted(DATA.glob("*.csv")):
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        dates = [dt.date.fromisoformat(row["date"]) for row in rows]
        if any((b - a).days != 1 for a, b in zip(dates, dates[1:], strict=False)):
            raise ValueError(f"{path.name}: the days are not consecutive")
        series[path.stem] = (dates, np.array([float(row["value"]) for row in rows]))
    return series


def origins(n: int) -> np.ndarray:
    """Return the ORIGINS origin days of a series of n days, earliest first."""
    return n - HORIZON - SEASON * np.arange(ORIGINS)[::-1]


def training_windows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (ORIGINS × TRAINING_DAYS) training windows and (ORIGINS × HORIZON) actuals, earliest first."""
    cuts = origins(len(values))
    if cuts[0] < TRAINING_DAYS:
        raise ValueError("the series is too short for the protocol")
    train = np.stack([values[cut - TRAINING_DAYS:cut] for cut in cuts])
    actual = np.stack([values[cut:cut + HORIZON] for cut in cuts])
    return train, actual


def seasonal_naive(train: np.ndarray) -> np.ndarray:
    """Return weekly seasonal naive's HORIZON-day forecasts for each training window."""
    return train[:, -SEASON + np.arange(HORIZON) % SEASON]


def mase(train: np.ndarray, actual: np.ndarray, forecast: np.ndarray) -> float:
    """Return the mean over origins of the horizon's MAE scaled by the in-sample seasonal-naive MAE."""
    scale = np.abs(train[:, SEASON:] - train[:, :-SEASON]).mean(axis=1)
    return float((np.abs(actual - forecast).mean(axis=1) / scale).mean())
