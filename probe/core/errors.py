"""Errors that reach the user: each says what was expected, what was found and the fix."""

from __future__ import annotations


class ProbeError(Exception):
    """A problem with the user's input that probe can explain.

    The CLI prints ``str(error)`` as one paragraph on stderr and exits with
    ``exit_code`` (2); it never shows a traceback for these.

    Args:
        what: One sentence saying what went wrong.
        expected: What probe expected to find.
        found: What it found instead.
        fix: How the user can fix it.
    """

    exit_code = 2

    def __init__(self, what: str, *, expected: str = "", found: str = "", fix: str = "") -> None:
        self.what, self.expected, self.found, self.fix = what, expected, found, fix
        parts = [what.rstrip(".") + "."]
        if expected:
            parts.append(f"Expected {expected.rstrip('.')}.")
        if found:
            parts.append(f"Found {found.rstrip('.')}.")
        if fix:
            parts.append(f"Fix: {fix.rstrip('.')}.")
        super().__init__(" ".join(parts))


class ModelLoadError(ProbeError):
    """A model file is missing, corrupt, untrusted or not an MLP."""


class DataError(ProbeError):
    """Evaluation or training data is missing, malformed or of the wrong width."""


class ScenarioError(ProbeError):
    """A scenario name is unknown or a scenario file is malformed."""


class VariantError(ProbeError):
    """An activation spec does not follow the variant grammar."""


def article(name: str) -> str:
    """``name`` with its indefinite article, as read aloud: "an ELU", "a ReLU", "an LSTM", "a Conv2d"."""
    if not name:
        return name
    acronym = len(name) > 1 and name[:2].isupper()
    vowel_sound = name[0] in "AEIOUaeiou" or (acronym and name[0] in "FHLMNRSX")
    return f"{'an' if vowel_sound else 'a'} {name}"
