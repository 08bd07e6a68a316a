"""Layer 7: the ``probe`` command line, a thin layer over the library API."""


def main() -> None:
    """Console-script entry point; Ctrl-C while the command line loads exits 130 without a traceback."""
    import signal
    import sys

    from probe.cli.signals import deferred_signals, terminate_as_interrupt

    try:
        with deferred_signals():
            from probe.cli.app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was written\n")
        raise SystemExit(130) from None
    signal.signal(signal.SIGTERM, terminate_as_interrupt)
    run()
