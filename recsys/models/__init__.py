"""Learned recommenders: one model per module, with their ``Recommender`` adapters beside."""
