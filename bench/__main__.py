"""`make bench`: every benchmark, in one run. Not a test: nothing here asserts."""

from __future__ import annotations


def main() -> None:
    from bench import broker, engine, pipeline, validate

    validate.main()
    broker.main()
    engine.main([])
    pipeline.main()


if __name__ == "__main__":
    main()
