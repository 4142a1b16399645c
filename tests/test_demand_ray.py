"""The demand backtest fans its origins out on a local Ray instance with the same code as serially."""

from __future__ import annotations

from functools import partial

import pandas as pd
import pytest

from loopml.apps.demand.backtest import rolling_origin
from loopml.apps.demand.config import DemandConfig
from loopml.apps.demand.models import GlobalLightGBM, SeasonalNaive
from loopml.apps.demand.simulate import simulate_stores, simulate_visits
from loopml.compute import fan_out

SMALL_LGB = {"n_estimators": 40, "num_leaves": 15, "learning_rate": 0.1, "n_jobs": 1, "verbose": -1}


@pytest.mark.slow
def test_backtest_on_ray_equals_the_serial_backtest(local_ray: object) -> None:
    cfg = DemandConfig.small(stores=6, years=1.1)
    stores = simulate_stores(cfg)
    visits = simulate_visits(stores, cfg)
    visits = visits[(visits["visitors"] >= 0) & (visits["visitors"] < 1e6)].reset_index(drop=True)
    models = {"seasonal_naive": SeasonalNaive, "lightgbm": partial(GlobalLightGBM, SMALL_LGB)}

    serial = rolling_origin(visits, stores, models, weeks=2, hourly=False)
    on_ray = rolling_origin(
        visits, stores, models, weeks=2, hourly=False, fanout=partial(fan_out, backend="ray")
    )

    pd.testing.assert_frame_equal(serial.overall, on_ray.overall)
    pd.testing.assert_frame_equal(serial.per_store, on_ray.per_store)
