"""The right to erasure: ``recsys-forget`` removes users from every artifact the project writes
(event tables, vocabularies, profiles, logs, checkpoints, indexes, session store) with atomic,
resumable writes, and ``recsys-audit`` scans a run folder for raw ids, forgotten pseudonyms and
PII, and measures membership-inference advantage on forgotten users.
"""
