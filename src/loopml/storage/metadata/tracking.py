"""Tables and queries for tracking; filled by its owner."""
