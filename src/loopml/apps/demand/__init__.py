"""Reference system 1: weekly store-demand forecasting and staff planning, as a retail chain runs it.

Simulated (or user-supplied) store visits flow through a weekly Tuesday batch: ingest under a
contract, features from one definition, a global LightGBM model gated against the champion and a
seasonal-naive baseline, hourly forecasts with intervals, staffing plans, and, when actuals land,
evaluation in money and an A/B comparison by store.
"""
