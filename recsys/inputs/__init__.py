"""What models read from the data: behaviour tokens, training windows and targets, the sets of
what was live at each target's time, the two-tower's query batches and a world's entity features.

This layer sits above ``recsys.data`` and ``recsys.profiling`` and below the models: the data
floor knows no model, and each model's batches are built here from the data's tables.
"""
