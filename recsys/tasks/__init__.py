"""Training objectives (losses), separate from the models they train."""
