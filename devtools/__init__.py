"""Development and test tooling: a source checkout's, never installed.

A real local Kafka (KRaft, Maven jars), secured or plain, a TLS CA,
PostgreSQL, Prometheus, Jaeger, a private Docker engine and the images built
on it, the chart's values-schema helper, the dashboard generator, the
end-to-end harness (`harness.py`) and `make run`'s demo. `python -m devtools`
is its command line. It imports `consumer` and `schemas`; the runtime package
never imports it, and the wheel and the image do not carry it.
"""
