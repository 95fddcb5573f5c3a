"""CPU time per sign-in for each choice of PASSWORD_HASH_* (argon2id), side by side.

    flock /tmp/sessionwire-bench.lock .venv/bin/python -m bench.bench_hashing

One password check is one argon2id verification. Measured in this process: CPU time
(user + system, all threads: argon2's lanes run on threads of their own) from
resource.getrusage, and wall time, medians of --runs checks each.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from argon2 import PasswordHasher

# (label, time cost, memory KiB, parallelism)
CHOICES = [
    ("OWASP: 47 MiB, t=1", 1, 47104, 1),
    ("OWASP: 19 MiB, t=2", 2, 19456, 1),
    ("OWASP: 12 MiB, t=3", 3, 12288, 1),
    ("OWASP: 9 MiB, t=4", 4, 9216, 1),
    ("OWASP: 7 MiB, t=5", 5, 7168, 1),
    ("64 MiB, t=3, p=1", 3, 65536, 1),
    ("default: 64 MiB, t=3, p=4 (RFC 9106 low memory)", 3, 65536, 4),
    ("256 MiB, t=3, p=4", 3, 262144, 4),
]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    print(f"argon2id, medians of {args.runs} checks")
    print("| PASSWORD_HASH_* | time cost | memory (KiB) | parallelism | CPU per sign-in | wall |")
    print("|---|---|---|---|---|---|")
    for label, t, m, p in CHOICES:
        hasher = PasswordHasher(time_cost=t, memory_cost=m, parallelism=p)
        stored = hasher.hash("correct horse battery")
        cpus, walls = [], []
        for _ in range(args.runs):
            cpu0, wall0 = cpu(), time.perf_counter()
            hasher.verify(stored, "correct horse battery")
            cpus.append(cpu() - cpu0)
            walls.append(time.perf_counter() - wall0)
        print(
            f"| {label} | {t} | {m} | {p} | {statistics.median(cpus) * 1000:.0f} ms "
            f"| {statistics.median(walls) * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
