#!/usr/bin/env python3
"""How the recordings in this directory were made: a hand prototype of the upgrade scenario.

Not part of any check: `cargo xtask test-scaling` will do the same in Rust. Kept so the
recordings can be made again and their provenance is plain. Run from the repository root,
under the shared lock:

    flock /tmp/docker-test.lock python3 xtask/testdata/upgrade/record.py \
        --old localhost/scaling-api:prev-SHA --new localhost/scaling-api:IMAGE --out DIR

Steps: N replicas of --old on a fresh database (they migrate it); a client stores and reads
documents through every running replica for the whole run; --new rolls in with
`up -d --no-recreate --scale api=2N` (Compose keeps the old containers and creates N new ones
from the new image); a read sweep of every document through every replica; the old replicas
are stopped one at a time (`docker stop`, SIGTERM) and removed; one replica of --old is started
again on the upgraded schema (the rollback) and every document is read through it. Writes to
DIR: compose logs with timestamps, `docker inspect` of every api container, `_sqlx_migrations`,
the client's requests, the read sweeps and the step times.
"""

import argparse
import hashlib
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

PROJECT = "scaling-upgrade-proto"
COMPOSE = os.environ.get("COMPOSE", "target/tools/compose-2.40.3/docker-compose")


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compose(*args, env, check=True, capture=False):
    cmd = [COMPOSE, "-p", PROJECT, "-f", "docker-compose.yml", *args]
    r = subprocess.run(cmd, env=env, check=check, text=True,
                       stdout=subprocess.PIPE if capture else None)
    return r.stdout if capture else None


def api_containers(healthy=True):
    """name -> (id, published port) of the project's running api containers; by default only
    the healthy ones, as a load balancer would route (a starting container's published port
    accepts and then resets the connection while the api is still migrating)."""
    out = subprocess.run(
        ["docker", "ps", "--filter", f"label=com.docker.compose.project={PROJECT}",
         "--filter", "label=com.docker.compose.service=api",
         *(["--filter", "health=healthy"] if healthy else []),
         "--format", "{{.ID}} {{.Names}} {{.Ports}}"],
        check=True, text=True, stdout=subprocess.PIPE).stdout
    found = {}
    for line in out.splitlines():
        cid, name, ports = line.split(" ", 2)
        port = None
        for part in ports.split(","):
            part = part.strip()
            if part.startswith("127.0.0.1:") and "->8080" in part:
                port = int(part.split(":")[1].split("-")[0])
        if port:
            found[name] = (cid, port)
    return found


def http(method, port, path, body=None):
    """(status or None, body bytes, error text)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), ""
    except urllib.error.HTTPError as e:
        return e.code, e.read(), ""
    except Exception as e:  # refused, reset, timeout: no HTTP status
        return None, b"", f"{type(e).__name__}: {e}".replace("\t", " ").replace("\n", " ")


class Client(threading.Thread):
    """Stores and reads documents through every running replica until stopped."""

    def __init__(self, out):
        super().__init__(daemon=True)
        self.out = out
        self.stop = threading.Event()
        self.docs = []  # (id, sha256, stored_by container)
        self.lock = threading.Lock()

    def log(self, name, op, status, detail):
        with self.lock:
            self.out.write(f"{now()}\t{name}\t{op}\t{status if status else '-'}\t{detail}\n")
            self.out.flush()

    def run(self):
        i = 0
        while not self.stop.is_set():
            for name, (_, port) in sorted(api_containers().items()):
                i += 1
                data = secrets.token_bytes(512) + str(i).encode()
                status, body, err = http("POST", port, f"/documents?name=c{i}.bin", data)
                doc_id = ""
                if status == 201:
                    meta = json.loads(body)
                    doc_id = meta["id"]
                    with self.lock:
                        self.docs.append((doc_id, hashlib.sha256(data).hexdigest(), name))
                detail = doc_id or err or body[:200].decode("utf-8", "replace")
                self.log(name, "store", status, detail)
                if self.docs:
                    doc = self.docs[i % len(self.docs)]
                    status, body, err = http("GET", port, f"/documents/{doc[0]}/content")
                    ok = status == 200 and hashlib.sha256(body).hexdigest() == doc[1]
                    detail = f"{doc[0]} {'identical' if ok else 'DIFFERENT'}" if status == 200 else (err or body[:200].decode("utf-8", "replace"))
                    self.log(name, "read", status, detail)
                    status, body, err = http("GET", port, "/documents?limit=5")
                    self.log(name, "list", status, err or ("" if status == 200 else body[:200].decode("utf-8", "replace")))
            time.sleep(0.05)


def trim(container):
    """The facts the judges read; Config.Env (it holds the run's throwaway passwords) stays out."""
    labels = container["Config"]["Labels"]
    state = dict(container["State"])
    health = state.pop("Health", None) or {}
    state["Health"] = {"Status": health.get("Status"), "FailingStreak": health.get("FailingStreak")}
    return {
        "Id": container["Id"],
        "Name": container["Name"],
        "Created": container["Created"],
        "Image": container["Image"],
        "RestartCount": container["RestartCount"],
        "Config": {
            "Image": container["Config"]["Image"],
            "Labels": {k: v for k, v in labels.items()
                       if k in ("com.docker.compose.container-number", "com.docker.compose.service",
                                "com.docker.compose.project")},
        },
        "State": state,
    }


def sweep(client, out, label):
    """Every document so far read through every running replica."""
    with client.lock:
        docs = list(client.docs)
    for name, (_, port) in sorted(api_containers().items()):
        for doc_id, sha, stored_by in docs:
            status, body, err = http("GET", port, f"/documents/{doc_id}/content")
            got = hashlib.sha256(body).hexdigest() if status == 200 else "-"
            out.write(f"{label}\t{doc_id}\t{stored_by}\t{sha}\t{name}\t{status or '-'}\t{got}\t{err}\n")
    out.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--old", required=True)
    p.add_argument("--new", required=True)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--db-image", default="localhost/scaling-mariadb:10.11")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    env = dict(os.environ, DB_PASSWORD=secrets.token_hex(12), DB_ROOT_PASSWORD=secrets.token_hex(12),
               DB_IMAGE=a.db_image, API_IMAGE=a.old, API_BUILD_TARGET="runtime-prebuilt")
    steps = open(os.path.join(a.out, "steps.tsv"), "w")

    def step(what):
        steps.write(f"{now()}\t{what}\n")
        steps.flush()
        print(now(), what, flush=True)

    n = a.replicas
    compose("down", "-v", "--remove-orphans", env=env)
    try:
        step(f"up old x{n}")
        compose("up", "-d", "--wait", "--scale", f"api={n}", env=env)
        step("old healthy")
        old = api_containers(healthy=False)
        client = Client(open(os.path.join(a.out, "requests.tsv"), "w"))
        client.start()
        time.sleep(3)
        step(f"roll new in: up --no-recreate --scale api={2 * n}")
        env["API_IMAGE"] = a.new
        rolled = subprocess.run([COMPOSE, "-p", PROJECT, "-f", "docker-compose.yml", "up", "-d",
                                 "--no-recreate", "--wait", "--scale", f"api={2 * n}"], env=env)
        step(f"new up (up exit {rolled.returncode})")
        time.sleep(2)
        sweeps = open(os.path.join(a.out, "reads.tsv"), "w")
        sweep(client, sweeps, "overlap")
        step("overlap sweep done")
        for name, (cid, _) in sorted(old.items()):
            step(f"docker stop {name}")
            subprocess.run(["docker", "stop", cid], check=True, stdout=subprocess.DEVNULL)
            step(f"stopped {name}")
            time.sleep(1)
        time.sleep(2)
        client.stop.set()
        client.join()
        step("client stopped")
        with open(os.path.join(a.out, "logs-roll.txt"), "w") as f:
            f.write(compose("logs", "--timestamps", "--no-color", "api", env=env, capture=True))
        # Facts of the stopped old containers, then remove them: a later `up` would start them.
        ids = [cid for cid, _ in old.values()]
        inspected = json.loads(subprocess.run(["docker", "inspect", *ids], check=True, text=True,
                                              stdout=subprocess.PIPE).stdout)
        for cid in ids:
            subprocess.run(["docker", "rm", cid], check=True, stdout=subprocess.DEVNULL)
        step("old containers removed")
        step(f"rollback: up one old replica, --scale api={n + 1}")
        env["API_IMAGE"] = a.old
        rb = subprocess.run([COMPOSE, "-p", PROJECT, "-f", "docker-compose.yml", "up", "-d",
                             "--no-recreate", "--wait", "--scale", f"api={n + 1}"], env=env)
        step(f"rollback up (up exit {rb.returncode})")
        time.sleep(1)
        sweep(client, sweeps, "after-rollback")
        step("final sweep done")
        running = [cid for cid, _ in api_containers(healthy=False).values()]
        inspected += json.loads(subprocess.run(["docker", "inspect", *running], check=True,
                                               text=True, stdout=subprocess.PIPE).stdout)
        with open(os.path.join(a.out, "logs-rollback.txt"), "w") as f:
            f.write(compose("logs", "--timestamps", "--no-color", "api", env=env, capture=True))
        with open(os.path.join(a.out, "inspect.json"), "w") as f:
            json.dump([trim(c) for c in inspected], f, indent=1)
        rows = compose("exec", "-T", "db", "sh", "-c",
                       'MYSQL_PWD="$MYSQL_PASSWORD" mariadb -u"$MYSQL_USER" "$MYSQL_DATABASE" -B -e '
                       '"SELECT version, description, installed_on, success, execution_time FROM _sqlx_migrations ORDER BY version"',
                       env=env, capture=True)
        with open(os.path.join(a.out, "migrations.tsv"), "w") as f:
            f.write(rows)
    finally:
        compose("down", "-v", "--remove-orphans", env=env)
        step("down -v")


if __name__ == "__main__":
    main()
