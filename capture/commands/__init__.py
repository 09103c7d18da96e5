"""The flask command groups, registered by one function."""
