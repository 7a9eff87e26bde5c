"""The one error of bad input: a key, the value given and what would be valid."""

from __future__ import annotations

UNKNOWN = object()  # the value of a key that does not exist


class ConfigError(ValueError):
    """A bad config value: `key`, the `value` given and what would be valid. Given the valid
    `choices`, the message names the one closest to the bad value, or to an unknown key."""

    def __init__(self, key: str, value, valid: str, choices=()):
        self.key, self.value, self.valid = key, value, valid
        hint = did_you_mean(key if value is UNKNOWN else value, choices)
        if value is UNKNOWN:
            super().__init__(f"unknown key {key!r}; {hint}expected {valid}")
        else:
            super().__init__(f"{key}={value!r} is not valid; {hint}expected {valid}")


def did_you_mean(given, choices) -> str:
    """The words "did you mean 'sigmoid'? " for the choice closest to a misspelt name (difflib); or none."""
    import difflib

    if not isinstance(given, str) or not choices:
        return ""
    ratios = {str(c): difflib.SequenceMatcher(None, given, str(c)).ratio() for c in choices}
    best = max(ratios, key=ratios.get)  # ties: the first listed (he2051: he2015, not he2016)
    return f"did you mean {best!r}? " if ratios[best] >= 0.6 else ""  # 0.6: difflib.get_close_matches' cutoff
