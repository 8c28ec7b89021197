"""Number formats of BENCHMARKS.md, shared by the report modules."""

KIB = 1024.0


def kib(b):
    return "—" if b is None else f"{b / KIB:.2f} KiB"


def mib(b):
    return "—" if b is None else f"{b / KIB / KIB:.1f} MiB"


def num(x, nd=0):
    if x is None:
        return "—"
    return f"{x:,.{nd}f}"


def msf(x):
    return "—" if x is None else f"{x:.3f} ms" if x < 10 else f"{x:.1f} ms"


def us(x):
    return "—" if x is None else f"{x:.1f} µs" if x < 100 else f"{x:.0f} µs"


def met(ok, aim=None):
    if ok is None:
        return "—"
    if not ok:
        return "**no**"
    return "yes, aim too" if aim else ("yes" if aim is None else "yes (aim not yet)")
