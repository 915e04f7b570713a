#!/usr/bin/env python3
"""Runs every test binary of the workspace, two at a time.

`cargo test` runs test binaries one after the other; most of Sluice's
integration tests spend their time waiting (on limits, on Kafka's group
protocol, on lease TTLs), so running two at once roughly halves the wall
time on a two-core machine. Each binary runs from its package's directory,
as `cargo test` would run it. Tests that share one server they disturb (the
three-broker Kafka cluster, whose brokers they kill) never run at the same
time, and the heaviest multi-process tests run one at a time. Doc tests
run afterwards through cargo.

Usage: deploy/run-tests.py [--jobs N]   (after `cargo test --no-run`)
Exits non-zero when any test binary fails, after printing its output.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

# Binaries that must not run at the same time as others of a group:
# "kafka-cluster" kill a broker of the shared three-broker cluster; "heavy"
# run many processes and bound timings or duplicates that double load skews
# (one of them runs at a time; the other lane takes the lighter binaries);
# "cassandra-ddl": the recorder's integration tests create and drop dozens of
# keyspaces, and Cassandra runs schema changes one at a time, so the cluster
# test's own migrations and lease table would queue behind them.
# `isolation` compares two timed runs of its own, so a heavy neighbour that
# loads one run more than the other fails it (x2.36 beside `cluster`);
# `throttled_backlog` checks that a site keeps sending at its limit.
EXCLUSIVE = {
    ("sluice-log", "kafka_broker_loss"): {"kafka-cluster"},
    ("sluice", "cluster"): {"kafka-cluster", "heavy", "cassandra-ddl"},
    ("sluice-recorder", "integration"): {"cassandra-ddl"},
    ("sluice", "dev_fates"): {"heavy"},
    ("sluice-sender", "deliver_e2e"): {"heavy"},
    ("sluice", "dev_crash"): {"heavy"},
    ("sluice", "sender_leases"): {"heavy"},
    ("sluice", "sender_crash"): {"heavy"},
    ("sluice", "ip_state_handover"): {"heavy"},
    ("sluice", "control_cluster"): {"heavy"},
    ("sluice", "cluster_wake"): {"heavy"},
    ("sluice-sender", "isolation"): {"heavy"},
    ("sluice-sender", "throttled_backlog"): {"heavy"},
}
# Started first (longest first), so the two lanes end close together.
LONG_FIRST = [
    "cluster", "dev_fates", "integration", "sender_leases", "deliver_e2e",
    "ip_state_handover", "isolation", "sender_crash", "control_cluster",
    "control", "ingest", "restart_limits",
]


def artifacts():
    """(package, target, executable, package dir) of every test binary."""
    command = ["cargo", "test", "--workspace", "--locked", "--no-run",
               "--message-format=json-render-diagnostics"]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    found = []
    for line in out.splitlines():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message.get("profile", {}).get("test"):
            continue
        name = message["target"]["name"]
        manifest = message["manifest_path"]
        package_name = os.path.basename(os.path.dirname(manifest))
        with open(manifest) as f:
            for row in f:
                if row.startswith("name = "):
                    package_name = row.split("=", 1)[1].strip().strip('"')
                    break
        found.append((package_name, name, message["executable"], os.path.dirname(manifest)))
    rank = {n: i for i, n in enumerate(LONG_FIRST)}
    found.sort(key=lambda a: (rank.get(a[1], len(rank)), a[0], a[1]))
    return found


class Runner:
    def __init__(self, jobs, work):
        self.lock = threading.Condition()
        self.work = list(work)
        self.busy_groups = set()
        self.results = []
        self.jobs = jobs

    def take(self):
        with self.lock:
            while True:
                if not self.work:
                    return None
                for i, job in enumerate(self.work):
                    groups = EXCLUSIVE.get((job[0], job[1]), set())
                    if not groups & self.busy_groups:
                        del self.work[i]
                        self.busy_groups |= groups
                        return job
                self.lock.wait()

    def done(self, job, result):
        with self.lock:
            self.busy_groups -= EXCLUSIVE.get((job[0], job[1]), set())
            self.results.append(result)
            self.lock.notify_all()

    def lane(self):
        while True:
            job = self.take()
            if job is None:
                return
            package, name, exe, cwd = job
            env = dict(os.environ, CARGO_MANIFEST_DIR=cwd, CARGO_PKG_NAME=package)
            start = time.monotonic()
            with tempfile.TemporaryFile(mode="w+") as log:
                code = subprocess.run([exe], cwd=cwd, env=env, stdout=log,
                                      stderr=subprocess.STDOUT).returncode
                log.seek(0)
                output = log.read()
            took = time.monotonic() - start
            status = "ok" if code == 0 else f"FAILED (exit {code})"
            with self.lock:
                print(f"==> {package} {name}: {status} in {took:.1f} s", flush=True)
                if code != 0:
                    print(output, flush=True)
                else:
                    summary = [l for l in output.splitlines() if l.startswith("test result:")]
                    for line in summary:
                        print(f"    {line}", flush=True)
            self.done(job, (took, package, name, code, panics(output)))

    def run(self):
        lanes = [threading.Thread(target=self.lane) for _ in range(self.jobs)]
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
        return self.results


def panics(output, most=6):
    """The panic messages in a test binary's output, a few lines each, so the
    end of a long log (what a CI view shows first) says why it failed."""
    lines = output.splitlines()
    found = []
    for i, line in enumerate(lines):
        if "panicked at" not in line:
            continue
        found.append(line.strip())
        for follow in lines[i + 1:i + 4]:
            if follow.startswith(("stack backtrace", "note:")) or not follow.strip():
                break
            found.append("  " + follow.strip()[:300])
        if len(found) >= most * 4:
            break
    return found


def main():
    jobs = 2
    if len(sys.argv) == 3 and sys.argv[1] == "--jobs":
        jobs = int(sys.argv[2])
    work = artifacts()
    print(f"{len(work)} test binaries, {jobs} at a time", flush=True)
    started = time.monotonic()
    results = Runner(jobs, work).run()
    failed = [r for r in results if r[3] != 0]
    print(f"\nslowest test binaries (wall {time.monotonic() - started:.0f} s):")
    for took, package, name, code, _ in sorted(results, reverse=True)[:10]:
        print(f"  {took:7.1f} s  {package} {name}{'' if code == 0 else '  FAILED'}")
    doc = subprocess.run(["cargo", "test", "--workspace", "--locked", "--doc", "-q"]).returncode
    if failed or doc != 0:
        for _, package, name, _, why in failed:
            print(f"FAILED: {package} {name}", file=sys.stderr)
            for line in why:
                print(f"    {line}", file=sys.stderr)
        if doc != 0:
            print("FAILED: doc tests", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
