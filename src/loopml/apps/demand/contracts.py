"""The demand app's table contracts: what each dataset's rows must look like to be stored.

They are the agreement between the simulator (or a user's files), the weekly pipeline and the web
pages. Visits are the raw input, so their contract is what quarantines hostile rows (negative
counts, absurd values, duplicates); the published tables' contracts catch bugs in our own code
before a store manager sees them.

Time columns are naive store wall-clock time (Asia/Seoul). Note that the platform stores a
``datetime`` column as UTC-labelled; readers drop the label (``ts.dt.tz_localize(None)``) to get the
wall clock back. Week ids are ``date`` columns holding the Monday of the shift week.
"""

from __future__ import annotations

from loopml.data import Column, Contract

#: Logical table -> dataset name in ``lm.datasets``.
DATASETS: dict[str, str] = {
    "visits": "demand_visits",
    "stores": "demand_stores",
    "forecasts": "demand_forecasts",
    "staffing": "demand_staffing",
    "evaluation": "demand_evaluation",
    "backtest": "demand_backtest",
    "eval_frame": "demand_gate_eval",
}

#: Largest plausible visitor count of one row (a month of a very large store is far below this).
MAX_VISITORS = 1e6
STORE_TYPES = ("mall", "office", "residential", "transit", "unknown")
GRAINS = ("hour", "day", "week", "month")
ARMS = ("champion", "challenger", "baseline")


def _metric(name: str, description: str, *, nullable: bool = False) -> Column:
    return Column(name, "float", nullable=nullable, min=0.0, description=description)


VISITS = Contract(
    columns=[
        Column("store_id", "int", min=1, description="store number, 1 and up"),
        Column("ts", "datetime", description="start of the period, naive store wall-clock time"),
        Column("visitors", "float", min=0.0, max=MAX_VISITORS, description="visitors counted in the period"),
    ],
    unique_key=("store_id", "ts"),
    max_bad_share=0.05,
)

STORES = Contract(
    columns=[
        Column("store_id", "int", min=1, unique=True),
        Column("region", "str", description="e.g. Seoul, Gyeonggi; 'unknown' for user data"),
        Column("store_type", "str", allowed=STORE_TYPES, description="location kind; drives daily shapes"),
        Column("size_m2", "float", nullable=True, min=1.0, description="sales floor; empty for user data"),
        Column("open_hour", "int", min=0, max=23),
        Column("close_hour", "int", min=1, max=24, description="first hour the store is closed"),
        Column("opened_on", "date"),
        Column("closed_on", "date", nullable=True, description="empty while the store is open"),
    ],
    max_bad_share=0.0,
)

FORECASTS = Contract(
    columns=[
        Column("store_id", "int", min=1),
        Column("ts", "datetime", description="start of the forecast period"),
        Column("grain", "str", allowed=GRAINS),
        _metric("forecast", "expected visitors"),
        _metric("lower", "lower end of the interval (config.interval coverage)"),
        _metric("upper", "upper end of the interval"),
        Column("model", "str", description="'demand/<version>' or a baseline name like 'seasonal_naive'"),
        Column("model_version", "int", min=0, description="registry version; 0 for baselines"),
        Column("arm", "str", allowed=ARMS, description="the role of the model that made this row"),
        Column("used", "bool", description="true for the rows the store's A/B arm publishes to staffing"),
        Column("week", "date", description="Monday of the shift week"),
        Column("run_id", "str", description="pipeline run that produced the row"),
    ],
    unique_key=("store_id", "ts", "grain", "arm", "model"),
    max_bad_share=0.0,
)

STAFFING = Contract(
    columns=[
        Column("store_id", "int", min=1),
        Column("ts", "datetime", description="start of the staffed hour"),
        Column("week", "date", description="Monday of the shift week"),
        _metric("visitors_forecast", "visitors the plan is sized for"),
        # min_staff is a config value, so the floor is checked by the planner, not fixed here.
        Column("staff", "int", min=0, description="staff members planned for the hour"),
        Column("arm", "str", allowed=ARMS),
        Column("model_version", "int", min=0),
    ],
    unique_key=("store_id", "ts"),
    max_bad_share=0.0,
)

EVALUATION = Contract(
    columns=[
        Column("store_id", "int", min=1),
        Column("week", "date", description="Monday of the evaluated shift week"),
        Column("arm", "str", allowed=ARMS),
        Column("model", "str"),
        Column("model_version", "int", min=0),
        Column("used", "bool", description="true for the row whose forecast the store's arm published"),
        _metric("mae", "mean absolute error over the week's periods"),
        _metric("rmse", "root mean squared error"),
        _metric("wape", "sum |error| / sum actual; empty when the store had no visitors", nullable=True),
        _metric("actual", "visitors that came"),
        _metric("forecast", "visitors forecast"),
        _metric("staff_hours_planned", "staff-hours in the plan"),
        _metric("staff_hours_needed", "staff-hours the actual visitors needed"),
        _metric("over_hours", "planned but not needed"),
        _metric("under_hours", "needed but not planned"),
        _metric("cost_over", "KRW paid for idle staff-hours"),
        _metric("cost_under", "KRW margin lost on visitors served short-staffed"),
        _metric("cost_total", "cost_over + cost_under"),
        _metric("naive_fixed_cost", "cost_total of the fixed-staffing plan"),
        _metric("naive_snaive_cost", "cost_total of the seasonal-naive plan"),
    ],
    unique_key=("store_id", "week", "arm", "model"),
    max_bad_share=0.0,
)

BACKTEST = Contract(
    columns=[
        Column("model", "str"),
        Column("store_id", "int", min=0, description="0 = all stores together"),
        _metric("mae", "mean absolute error over the backtest weeks"),
        _metric("rmse", "root mean squared error"),
        _metric("wape", "sum |error| / sum actual", nullable=True),
    ],
    unique_key=("model", "store_id"),
    max_bad_share=0.0,
)

CONTRACTS: dict[str, Contract] = {
    "visits": VISITS,
    "stores": STORES,
    "forecasts": FORECASTS,
    "staffing": STAFFING,
    "evaluation": EVALUATION,
    "backtest": BACKTEST,
}
