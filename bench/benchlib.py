"""Small helpers the benchmark scripts share."""


def say(text=""):
    """Prints a line at once (the runs are long; output must not wait)."""
    print(text, flush=True)


def pct(values, p):
    """The p-th percentile of values (nearest rank on the sorted values)."""
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]
