"""The dashboard: server-rendered pages under ``/ui/`` with locally served Plotly.js and htmx."""
