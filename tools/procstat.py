"""Readings from /proc (stdlib only, Linux), for the benchmark runner, the soak and the
hot-path measurements.

CPU: utime+stime of /proc/<pid>/stat (clock ticks / SC_CLK_TCK), summed over a process and its
descendants (threads are already inside the process's counters). Memory: VmRSS of
/proc/<pid>/status. Open files: the entries of /proc/<pid>/fd. Kernel: /proc/net/sockstat
(TCP sockets and their buffer pages), /proc/net/netstat (TcpExt counters), /proc/slabinfo
(socket slab caches, root only). `python3 -m tools.procstat <pid…>` prints the readings once.
"""

import os
import platform
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Slab caches that grow with each TCP socket (sock, inode, file, epoll entry). Missing caches
# (merged into kmalloc-* on this kernel) are skipped; the report names the ones it found.
SOCKET_SLABS = ("TCP", "sock_inode_cache", "filp", "eventpoll_epi", "eventpoll_pwq")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid):
    """utime + stime of one process (all its threads), in seconds; 0.0 once it is gone."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0.0
    # fields[0] is the state (field 3); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_map():
    """ppid -> [pid] for every process visible now."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(name)[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def with_descendants(pids):
    """The pids plus every live descendant (peers may fork workers)."""
    kids = children_map()
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_of(pids):
    """{pid: cpu seconds} for the pids and their descendants."""
    return {pid: cpu_seconds(pid) for pid in with_descendants(pids)}


def cpu_delta(before, after):
    """Total CPU seconds spent between two cpu_of() readings (new pids count from 0)."""
    return sum(max(0.0, after.get(pid, before.get(pid, 0.0)) - before.get(pid, 0.0))
               for pid in set(before) | set(after))


def rss_kb(pid):
    """VmRSS of the process in kB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes(pid):
    """VmRSS of one process in bytes (0 when it is gone)."""
    return (rss_kb(pid) or 0) * 1024


def fd_count(pid):
    """Open file descriptors of the process, or None when it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def rss_of(pids):
    return sum(rss_bytes(pid) for pid in with_descendants(pids))


def sockstat():
    """{"sockets_used", "tcp_inuse", "tcp_orphan", "tcp_tw", "tcp_alloc", "tcp_mem_pages"}."""
    out = {}
    with open("/proc/net/sockstat") as f:
        for line in f:
            key, _, rest = line.partition(":")
            vals = rest.split()
            pairs = dict(zip(vals[0::2], vals[1::2]))
            if key == "sockets":
                out["sockets_used"] = int(pairs.get("used", 0))
            elif key == "TCP":
                for name in ("inuse", "orphan", "tw", "alloc"):
                    out[f"tcp_{name}"] = int(pairs.get(name, 0))
                out["tcp_mem_pages"] = int(pairs.get("mem", 0))
    return out


def netstat_tcpext():
    """Every TcpExt counter of /proc/net/netstat as {name: int}."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for head, vals in zip(lines[0::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            return dict(zip(head.split()[1:], (int(v) for v in vals.split()[1:])))
    return {}


def slab_bytes():
    """{cache: bytes} (num_objs × objsize) for SOCKET_SLABS; {} when slabinfo is unreadable."""
    try:
        with open("/proc/slabinfo") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return {}
    out = {}
    for line in lines:
        cols = line.split()
        if cols and cols[0] in SOCKET_SLABS:
            out[cols[0]] = int(cols[2]) * int(cols[3])
    return out


def cpu_totals():
    """The aggregate `cpu` line of /proc/stat in seconds: user, nice, system, idle, iowait,
    irq, softirq, steal (the whole box, every process, for the noise note of the report)."""
    with open("/proc/stat") as f:
        vals = f.readline().split()[1:9]
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {n: int(v) / CLK_TCK for n, v in zip(names, vals)}


def box_busy(a, b):
    """Share of the box's CPU time that was busy (not idle/iowait) and stolen, between two
    cpu_totals() readings."""
    d = {k: b[k] - a[k] for k in a}
    total = sum(d.values()) or 1.0
    return {"busy": round(1 - (d["idle"] + d["iowait"]) / total, 3),
            "steal": round(d["steal"] / total, 3), "seconds": round(total, 1)}


def machine():
    """nproc, CPU model, RAM, kernel."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
    except OSError:
        load = []
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "loadavg_at_start": " ".join(load),
        "page_size": PAGE_SIZE,
        "clk_tck": CLK_TCK,
    }


if __name__ == "__main__":
    pids = [int(p) for p in sys.argv[1:]]
    print("machine", machine())
    print("sockstat", sockstat())
    ext = netstat_tcpext()
    print("netstat", {k: ext.get(k) for k in ("ListenOverflows", "ListenDrops")})
    print("slab", slab_bytes())
    for pid in pids:
        print(pid, "cpu_s", cpu_seconds(pid), "rss", rss_bytes(pid))
