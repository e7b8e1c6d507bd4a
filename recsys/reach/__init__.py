"""Timely reach: triggers from the event stream, decisions to message, personalised copy."""
