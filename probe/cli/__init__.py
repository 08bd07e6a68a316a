"""Layer 7: the ``probe`` command line, a thin layer over the library API."""


def main() -> None:
    """Console-script entry point."""
    from probe.cli.app import main as run

    run()
