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
