"""Layer 7: the ``probe`` command line, a thin layer over the library API."""


def main() -> None:
    """Console-script entry point; Ctrl-C or SIGTERM before a command runs exits 130 without a traceback."""
    from probe.cli.signals import defer_signals

    defer_signals()  # until the command's body starts (probe.cli.common.handles_errors)
    from probe.cli.app import main as run

    run()
