"""The kernel's send queue of one loopback TCP connection (/proc/net/tcp, IPv4).

What tells a test that a client which never reads has filled every buffer between it and a
server: from then on the server's writes to it block (or the server drops what it would send).
"""

from __future__ import annotations

from tests.daemon import poll_until


def send_queue(local_port: int, remote_port: int) -> int | None:
    """Bytes queued in the kernel on ``local_port``'s side of its connection to ``remote_port``."""
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{local_port:04X}") and fields[2].endswith(
                f":{remote_port:04X}"
            ):
                return int(fields[4].split(":")[0], 16)
    return None


def tcp_wmem_max() -> int:
    """The most a socket's send buffer may grow to (net.ipv4.tcp_wmem's maximum)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        return int(f.read().split()[2])


def wait_until_full(local_port: int, remote_port: int, timeout: float = 120.0) -> int:
    """Wait until the queue holds over 100 kB and stopped growing (ten samples, 5 s apart from
    first to last); its size. The deadline only bounds a queue that never fills."""
    history: list[int] = []

    def full() -> bool:
        history.append(send_queue(local_port, remote_port) or 0)
        return len(history) > 10 and history[-1] > 100_000 and history[-1] == history[-11]

    poll_until(full, timeout, lambda: f"send queue never filled: {history[-10:]}", 0.5)
    return history[-1]
