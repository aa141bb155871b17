"""A client that writes secrets through the official Azure SDK throughout
deploy/compose-test.sh, then checks that no acknowledged write was lost.

It writes one new secret after another (name and value carry a counter),
failing over between the nodes' published ports. The test names the
current fault in PHASE_FILE; every attempt is tagged with it. When
STOP_FILE appears the writer stops, reads every acknowledged secret back
(through any node) and prints, per phase: writes acknowledged, lost (an
acknowledged write not readable with its value afterwards) and the longest
time without an acknowledged write. Exit status 1 if anything was lost.

    python compose_writer.py --endpoints https://127.0.0.1:P1,... \
        --token-file T --cacert CA --phase-file F --stop-file S --progress-file P
"""

import argparse
import json
import os
import sys
import time
import uuid

from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient


class StaticToken:
    """A TokenCredential handing out the Coffer root token."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self):
        pass


def clients(endpoints, token, cacert):
    # No SDK retries and short timeouts: the writer fails over itself, so a
    # down node costs one timeout, not the SDK's backoff schedule.
    cred = StaticToken(token)
    return [
        SecretClient(
            url,
            cred,
            verify_challenge_resource=False,
            connection_verify=cacert,
            retry_total=0,
            connection_timeout=2,
            read_timeout=5,
        )
        for url in endpoints
    ]


def read_phase(path):
    try:
        with open(path) as f:
            return f.read().strip() or "start"
    except OSError:
        return "start"


def write_loop(cs, args, run):
    acks = []  # (counter, phase, time acknowledged)
    attempts = {}
    failures = {}
    at = 0
    i = 0
    last_progress = 0.0
    while not os.path.exists(args.stop_file):
        phase = read_phase(args.phase_file)
        i += 1
        name = f"cw-{run}-{i}"
        attempts[phase] = attempts.get(phase, 0) + 1
        try:
            cs[at].set_secret(name, f"{run}:{i}")
            acks.append((i, phase, time.monotonic()))
        except Exception:  # any failure: unacknowledged, try the next node
            failures[phase] = failures.get(phase, 0) + 1
            at = (at + 1) % len(cs)
            time.sleep(0.05)
        now = time.monotonic()
        if now - last_progress > 0.2:
            last_progress = now
            with open(args.progress_file + ".tmp", "w") as f:
                f.write(f"{len(acks)} {time.time() if acks else 0}\n")
            os.replace(args.progress_file + ".tmp", args.progress_file)
        time.sleep(args.pause)
    return acks, attempts, failures


def verify(cs, acks, run):
    lost = []
    for i, phase, _ in acks:
        value = None
        for c in cs:
            try:
                value = c.get_secret(f"cw-{run}-{i}").value
                break
            except Exception:
                continue
        if value != f"{run}:{i}":
            lost.append((i, phase))
    return lost


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoints", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--cacert", required=True)
    p.add_argument("--phase-file", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--progress-file", required=True)
    p.add_argument("--result-file", required=True)
    p.add_argument("--pause", type=float, default=0.02)
    args = p.parse_args()
    with open(args.token_file) as f:
        token = f.read().strip()
    cs = clients(args.endpoints.split(","), token, args.cacert)
    run = uuid.uuid4().hex[:8]
    acks, attempts, failures = write_loop(cs, args, run)
    lost = verify(cs, acks, run)

    phases = []
    for _, phase, _ in acks:
        if phase not in phases:
            phases.append(phase)
    for phase in attempts:
        if phase not in phases:
            phases.append(phase)
    # The longest wait between two acknowledged writes, charged to the phase
    # of the write that ended it (a fault's outage ends inside its phase).
    gaps = {}
    for (_, _, t0), (_, phase, t1) in zip(acks, acks[1:]):
        gaps[phase] = max(gaps.get(phase, 0.0), t1 - t0)
    result = {"run": run, "phases": []}
    for phase in phases:
        row = {
            "phase": phase,
            "attempted": attempts.get(phase, 0),
            "acknowledged": sum(1 for a in acks if a[1] == phase),
            "failed": failures.get(phase, 0),
            "lost": sum(1 for _, ph in lost if ph == phase),
            "longest_unavailable_s": round(gaps.get(phase, 0.0), 2),
        }
        result["phases"].append(row)
        print(
            f"compose-test: {phase:<14} {row['acknowledged']:>5} writes acknowledged, "
            f"{row['lost']} lost, {row['failed']} failed attempts, "
            f"longest unavailability {row['longest_unavailable_s']:.2f} s"
        )
    total = {"acknowledged": len(acks), "lost": len(lost)}
    result["total"] = total
    print(f"compose-test: total {total['acknowledged']} writes acknowledged, {total['lost']} lost")
    with open(args.result_file, "w") as f:
        json.dump(result, f, indent=1)
    for c in cs:
        c.close()
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
