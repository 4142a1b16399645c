"""Serving: the HTTP app (``create_app``), its admin API, auth, metrics and error shape."""
