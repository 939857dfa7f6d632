"""Score statsforecast's AutoETS and MSTL and Prophet on the forecast benchmark's protocol.

Run in the peers' venv (``make bench-peers`` builds it from bench/requirements-peers.txt):
``.venv-peers/bin/python bench/peers_forecast.py``. The protocol is in forecast_protocol.py. Writes
bench/forecast_peers.json (MASE and ratio to seasonal naive per series and method), which bench_forecast.py
reads, and prints the table. Takes a few minutes: Prophet fits once per origin.
Models, all with their defaults otherwise:
- AutoETS(season_length=7): ETS with the lowest AICc among the error/trend/season forms.
- MSTL(season_length=[7, 365]): STL with weekly and yearly seasons, AutoETS (no season) on the rest.
- Prophet(): linear trend, weekly and yearly seasonality (on by default with this much history).
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import forecast_protocol as protocol  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from prophet import Prophet  # noqa: E402
from statsforecast import StatsForecast  # noqa: E402
from statsforecast.models import MSTL, AutoETS  # noqa: E402


def statsforecast_forecasts(dates: list, train: np.ndarray) -> dict[str, np.ndarray]:
    """Return AutoETS's and MSTL's forecasts (origins × HORIZON) for each training window."""
    frames = []
    for k, window in enumerate(train):
        end = dates[protocol.origins(len(dates))[k] - 1]
        days = pd.date_range(end=pd.Timestamp(end), periods=len(window), freq="D")
        frames.append(pd.DataFrame({"unique_id": k, "y": window, "ds": days}))
    models = [AutoETS(season_length=protocol.SEASON), MSTL(season_length=[protocol.SEASON, 365])]
    forecast = StatsForecast(models=models, freq="D", n_jobs=1).forecast(
        df=pd.concat(frames), h=protocol.HORIZON).sort_values(["unique_id", "ds"])
    return {name: forecast[name].to_numpy().reshape(len(train), protocol.HORIZON)
            for name in ("AutoETS", "MSTL")}


def prophet_forecasts(dates: list, train: np.ndarray) -> np.ndarray:
    """Return Prophet's forecasts (origins × HORIZON) for each training window."""
    out = []
    for k, window in enumerate(train):
        end = dates[protocol.origins(len(dates))[k] - 1]
        frame = pd.DataFrame({"ds": pd.date_range(end=pd.Timestamp(end), periods=len(window), freq="D"),
                              "y": window})
        model = Prophet().fit(frame)
        future = model.make_future_dataframe(periods=protocol.HORIZON, include_history=False)
        out.append(model.predict(future)["yhat"].to_numpy())
    return np.array(out)


def main() -> int:
    """Score the peers on every series, write PEERS_FILE and print the ratios; return 0."""
    for name in ("cmdstanpy", "prophet"):  # one line per fit otherwise
        logging.getLogger(name).disabled = True
    warnings.filterwarnings("ignore")
    results: dict[str, dict] = {}
    for name, (dates, values) in protocol.load_series().items():
        train, actual = protocol.training_windows(values)
        started = time.perf_counter()
        forecasts = statsforecast_forecasts(dates, train)
        forecasts["Prophet"] = prophet_forecasts(dates, train)
        baseline = protocol.mase(train, actual, protocol.seasonal_naive(train))
        results[name] = {"seasonal_naive_mase": baseline}
        for method, forecast in forecasts.items():
            score = protocol.mase(train, actual, forecast)
            results[name][method] = {"mase": score, "ratio": score / baseline}
        ratios = "  ".join(f"{method} {results[name][method]['ratio']:.3f}" for method in forecasts)
        print(f"{name:36s} {ratios}   ({time.perf_counter() - started:.0f} s)", flush=True)
    versions = {package: version(package) for package in ("statsforecast", "prophet", "numpy", "pandas")}
    protocol.PEERS_FILE.write_text(json.dumps({
        "protocol": {"origins": protocol.ORIGINS, "horizon": protocol.HORIZON,
                     "training_days": protocol.TRAINING_DAYS},
        "versions": {**versions, "python": platform.python_version()},
        "series": results,
    }, indent=2) + "\n")
    print(f"wrote {protocol.PEERS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
