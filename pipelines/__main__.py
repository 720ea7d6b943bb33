"""`reprozoo` and `python -m pipelines`. A stage's command under `reprozoo repro --jobs` is handed to the
warm server's fork (pipelines/warm.py) before the CLI is imported: typer, rich and the verbs' choices would
cost each of the pipeline's 99 stages 0.2 s here for nothing.
Without a server the CLI runs in this process."""

import sys

from pipelines.warm import delegate


def main() -> None:
    if (status := delegate(sys.argv)) is not None:
        raise SystemExit(status)
    from pipelines.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
