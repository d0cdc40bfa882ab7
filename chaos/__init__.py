"""The chaos run: a consumer group of several `consumer run` processes under a
seeded storm of faults, with every event counted (`make chaos`).

Pieces, each small: `schedule` (the pure fault generator), `supervisor`
(member processes), `downstream` (an HTTP service that can answer 429/500),
`handler` (runs in the members; writes the invocation ledger), `producer`
(steady traffic through `consumer produce`'s engine), `lag` (the group's lag
once a second), `faults` (carries out
the schedule), `accounting` (every event counted), `report` (table, final
line, verdict) and `run` (the scenario composed).
"""
