"""Privacy at the door: consent per purpose, PII scrubbing of free text, k-anonymous exports,
tombstones and the pseudonym key's rotation.

These pieces sit just below the data floor's consumers (profiling, serving, the market, the
marketing actions), which all ask them before they personalise, store or release anything.
Erasure across every artifact the project writes, and the audit of a run folder, live in
``recsys.erasure``: they must know every artifact, so they sit at the other end of the layers.
"""
