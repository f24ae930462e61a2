"""Sinks that apply captured changes: the warehouse staging layer and the Mongo document store."""
