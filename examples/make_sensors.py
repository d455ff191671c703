"""Write examples/sensors.csv and examples/sensors_new.csv: a small, made-up tabular problem.

Power output of a (fictional) solar installation from four readings. The relationship is
smooth but not linear, so a straight line does poorly and an MLP does well.

    python examples/make_sensors.py
"""

from pathlib import Path

import numpy as np
import pandas as pd


def make(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hour = rng.uniform(5, 21, n)
    cloud = rng.uniform(0, 1, n)
    temperature = rng.normal(22, 6, n)
    wind = rng.gamma(2.0, 2.0, n)
    sun = np.clip(np.sin((hour - 5) / 16 * np.pi), 0, None)
    power = 100 * sun * (1 - 0.75 * cloud**2) * (1 - 0.004 * np.maximum(temperature - 25, 0) ** 1.5) + 0.5 * wind
    power += rng.normal(0, 2.0, n)
    return pd.DataFrame(
        {
            "hour": hour.round(2),
            "cloud_cover": cloud.round(3),
            "temperature": temperature.round(1),
            "wind_speed": wind.round(2),
            "power": power.round(2),
        }
    )


if __name__ == "__main__":
    here = Path(__file__).parent
    make(1200, seed=0).to_csv(here / "sensors.csv", index=False)
    make(20, seed=1).drop(columns="power").to_csv(here / "sensors_new.csv", index=False)
