"""The only package that talks to infrastructure (SQL databases, object stores, DuckDB, Redis, Ray)."""
