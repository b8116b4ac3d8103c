"""A real Valkey cluster for tests: three masters, no replicas, each a
`valkey-server` of the embedded wheel in cluster mode on its own ports.

Nodes keep no data on disk (no AOF, no RDB): a node that restarts comes back
empty but with its slots, from its nodes.conf, as a Redis that lost its
memory. Its cluster bus port is chosen too, since the default (port + 10000)
does not exist for the high ports tests get.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from app.embedded import EmbeddedValkey, ServerError

NODE_TIMEOUT_MS = 2000  # how long a node may be silent before the others call it failed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ClusterNode(EmbeddedValkey):
    name = "valkey-node"

    def __init__(self, data_dir: Path, port: int, bus_port: int) -> None:
        super().__init__(data_dir, port)
        self.bus_port = bus_port

    def arguments(self) -> list[str]:
        return [
            "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(self.bus_port),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--appendonly", "no", "--save", "", "--daemonize", "no", "--protected-mode", "yes",
        ]  # fmt: skip

    def cli(self) -> str:
        return str(Path(self._binary()).with_name("valkey-cli"))

    def cluster_info(self) -> dict[str, str]:
        """CLUSTER INFO as a dict; empty while the node does not answer."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                             decode_responses=True)  # fmt: skip
        try:
            text = client.execute_command("CLUSTER", "INFO")
            return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return {}
        finally:
            client.close()


class ValkeyCluster:
    def __init__(self, base: Path, size: int = 3) -> None:
        self.nodes = [
            ClusterNode(base / f"node-{n}" / "data", free_port(), free_port()) for n in range(size)
        ]

    @property
    def url(self) -> str:
        """The seed node a client is given (REDIS_URL): it finds the others."""
        return self.nodes[0].url()

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        done = subprocess.run(
            [self.nodes[0].cli(), "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            self.stop()
            raise ServerError(f"valkey-cli --cluster create failed:\n{done.stdout}{done.stderr}")
        self.wait_ok()

    def wait_ok(self, timeout_s: float = 60.0) -> None:
        """Until every node says the cluster is ok and knows every other node."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            infos = [node.cluster_info() for node in self.nodes]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_known_nodes") == str(len(self.nodes))
                and info.get("cluster_slots_ok") == "16384"
                for info in infos
            ):
                return
            time.sleep(0.1)
        raise ServerError(f"the cluster is not ok after {timeout_s}s: {infos}")

    def node_of(self, key: str) -> ClusterNode:
        """The node serving `key`'s slot, as the cluster says."""
        client = redis.Redis(host="127.0.0.1", port=self.nodes[0].port, decode_responses=True)
        try:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(primary[1])
                    return next(node for node in self.nodes if node.port == port)
        finally:
            client.close()
        raise ServerError(f"no node serves the slot of {key!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
