"""`make bench` entry point (benchmarks are added by the issues that need them)."""

from __future__ import annotations


def main() -> None:
    from bench import validate

    validate.main()

    from bench import pipeline

    pipeline.main()


if __name__ == "__main__":
    main()
