"""Backends: one module per way of running a model, each imported only when used."""
