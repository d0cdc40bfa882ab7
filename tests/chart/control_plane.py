"""A real Kubernetes control plane on 127.0.0.1 for installing the chart.

etcd, kube-apiserver (static token, RBAC, Pod Security admission),
kube-controller-manager and kube-scheduler, all built from source by
`scripts/build-k8s-tools.sh`, plus kwok: one simulated node whose pods turn
Running and Ready, since nothing here can run containers. Everything listens on
free loopback ports and keeps its data in `root`; `stop()` ends each process by
its own pid, newest first.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import IO

from devtools.ports import free_port
from tests.chart.kube import Kube, KubeError, wait_for

NODE = "kwok-node-0"


class ControlPlane:
    """`address`: where the API server listens and what it advertises (a
    non-loopback local address lets pods reach it through the `kubernetes`
    Service); `simulated_node=False` leaves out kwok for a real kubelet."""

    def __init__(self, tools: dict[str, Path], root: Path, address: str = "127.0.0.1",
                 simulated_node: bool = True) -> None:
        self._tools = tools
        self.root = root
        self.address = address
        self.simulated_node = simulated_node
        self.token = secrets.token_hex(16)
        self.kubeconfig = root / "kubeconfig"
        self._procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self.kube: Kube | None = None

    def start(self) -> Kube:
        """Start everything and return a client once a node is Ready.
        On failure, whatever started is stopped before raising."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate each process by its pid (kill after 15 s); idempotent."""
        while self._procs:
            _, proc, log = self._procs.pop()
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(15)
            log.close()

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc, _ in self._procs}

    def logs(self) -> str:
        """The last lines of every component's log, for failure messages."""
        tails = []
        for path in sorted(self.root.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            tails.append(f"== {path.name}\n" + "\n".join(lines))
        return "\n".join(tails)

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        proc = subprocess.Popen([str(self._tools[name]), *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._procs.append((name, proc, log))

    def _alive(self) -> bool:
        """True while every process runs; raises naming the first that exited."""
        for name, proc, _ in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
        return True

    def _start(self) -> Kube:
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        pki = self.root / "pki"
        pki.mkdir()
        sa_key = pki / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True,
                       capture_output=True)
        tokens = self.root / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')

        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn("etcd", "--name=default", f"--data-dir={self.root / 'etcd'}",
                    f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=default={peer_url}", "--unsafe-no-fsync",
                    "--log-level=warn")
        loopback = self.address.startswith("127.")
        self._spawn(
            "kube-apiserver", f"--etcd-servers={etcd_url}", f"--bind-address={self.address}",
            f"--advertise-address={self.address}", f"--secure-port={api_port}",
            f"--cert-dir={pki}", f"--token-auth-file={tokens}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            # A loopback address cannot be an endpoint of the `kubernetes` Service.
            f"--endpoint-reconciler-type={'none' if loopback else 'lease'}",
            "--enable-priority-and-fairness=false", "--profiling=false",
            # Logs and exec reach a real kubelet by its node address, not a host name.
            "--kubelet-preferred-address-types=InternalIP")
        kube = Kube(f"https://{self.address}:{api_port}", self.token, pki / "apiserver.crt")
        wait_for(lambda: self._alive() and kube.get("/readyz").get("raw") == "ok", 120,
                 "kube-apiserver /readyz")
        self._write_kubeconfig(kube)

        common = (f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0")
        self._spawn("kube-controller-manager", *common,
                    "--controllers=*,-nodeipam,-cloud-node-lifecycle,-csrsigning",
                    f"--service-account-private-key-file={sa_key}",
                    f"--root-ca-file={kube.cafile}")
        self._spawn("kube-scheduler", *common)
        if self.simulated_node:
            self._spawn("kwok", f"--kubeconfig={self.kubeconfig}", "--manage-all-nodes=true",
                        f"--config={self._tools['kwok-stages'] / 'stages.yaml'}")
            kube.create("/api/v1/nodes", _node())
            wait_for(lambda: self._alive() and _ready(kube.get(f"/api/v1/nodes/{NODE}")), 120,
                     f"node {NODE} Ready")
        # Pods can be created once the default ServiceAccount exists.
        wait_for(lambda: kube.get("/api/v1/namespaces/default/serviceaccounts/default"), 60,
                 "the default ServiceAccount")
        self.kube = kube
        return kube

    def _write_kubeconfig(self, kube: Kube) -> None:
        self.kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{kube.server}", certificate-authority: "{kube.cafile}"}}
users:
- name: admin
  user: {{token: "{self.token}"}}
contexts:
- name: local
  context: {{cluster: local, user: admin}}
current-context: local
""")


def _node() -> dict[str, object]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"kubernetes.io/hostname": NODE, "type": "kwok",
                                "topology.kubernetes.io/zone": "zone-a"}},
        "status": {"allocatable": {"cpu": "16", "memory": "32Gi", "pods": "110"},
                   "capacity": {"cpu": "16", "memory": "32Gi", "pods": "110"}},
    }


def _ready(node: dict[str, object]) -> bool:
    status = node.get("status")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


__all__ = ["NODE", "ControlPlane", "KubeError"]
