import statistics
import time


def median_time(fn, n: int) -> float:
    """Median wall time of `n` calls, in seconds."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved_medians(fns, n: int) -> list[float]:
    """Median wall time (seconds) of each of `fns`, called in turn `n` times (a, b, c, a, b, c...),
    so a drift in machine speed falls on all of them alike rather than on whichever ran last."""
    times = [[] for _ in fns]
    for _ in range(n):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]
