"""Layer 7: the ``probe`` command line, a thin layer over the library API."""


def main() -> None:
    """Console-script entry point; Ctrl-C while the command line loads exits 130 without a traceback."""
    import sys

    try:
        from probe.cli.app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was written\n")
        raise SystemExit(130) from None
    run()
