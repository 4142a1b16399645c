"""Tables and queries for features; filled by its owner."""
