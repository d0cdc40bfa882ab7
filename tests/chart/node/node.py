"""A real single-node Kubernetes: the control plane of the chart tests on the
node address, and a kubelet running pods with containerd and runc.

containerd runs with its own root, state and socket under `ROOT`;
`restrict_oom_score_adj` because root here lacks CAP_SYS_RESOURCE (without it
every container fails with `oom_score_adj: Permission denied`). No registry:
images are imported (`import_image`), the sandbox image is the static pause
binary built once by `scripts/build-k8s-tools.sh`. Pods get a bridge network
(`host.py`), kube-proxy in iptables mode gives them ClusterIPs, and CoreDNS,
a host process on the node address, answers for `cluster.local`.

Every server listens on the node address or on 127.0.0.1. `stop()` removes
the pods, stops each process by its pid and hands over to `Host.cleanup()`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

from devtools.kafka import stop_process
from devtools.ports import free_port
from tests.chart.control_plane import ControlPlane
from tests.chart.control_plane import _ready as node_ready
from tests.chart.kube import Kube, KubeError, wait_for
from tests.chart.node import host
from tests.chart.node.host import CRI_NAMESPACE, NODE_IP, NODE_NAME, ROOT, SOCKET, Host
from tests.chart.node.images import PAUSE_IMAGE, pause_image_tarball

CONTAINERD = ROOT / "containerd"


class Node:
    def __init__(self, tools: dict[str, Path]) -> None:
        self._tools = tools
        self.host = Host()
        self.plane: ControlPlane | None = None
        self._procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self.started_in = 0.0

    @property
    def kube(self) -> Kube:
        assert self.plane is not None, "start() first"
        assert self.plane.kube is not None, "start() first"
        return self.plane.kube

    @property
    def kubeconfig(self) -> Path:
        assert self.plane is not None, "start() first"
        return self.plane.kubeconfig

    def tool(self, name: str) -> Path:
        return self._tools[name]

    def start(self) -> None:
        """Up to a Ready node with the panic sysctls already put back. On
        failure whatever started is stopped and the host cleaned."""
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def _start(self) -> None:
        self.host.prepare()
        self.plane = ControlPlane(self._tools, ROOT / "control-plane", address=NODE_IP,
                                  simulated_node=False)
        self.plane.root.mkdir(parents=True)
        self.plane.start()
        for name, pid in self.plane.pids().items():
            self.host.track(name, pid, str(ROOT))
        self._start_containerd()
        self.import_image(pause_image_tarball(self._tools["pause"]))
        self._start_kubelet()
        self._start_kube_proxy()
        self._start_coredns()
        wait_for(lambda: self._alive() and node_ready(self.kube.get(f"/api/v1/nodes/{NODE_NAME}")),
                 120, f"node {NODE_NAME} Ready")
        self.host.restore_panic_settings()
        wait_for(lambda: self.kube.get("/api/v1/namespaces/default/serviceaccounts/default"),
                 60, "the default ServiceAccount")

    def stop(self) -> None:
        """Remove the pods, stop every process, put the host back. Idempotent."""
        if self._procs and self.plane is not None and self.plane.kube is not None:
            self._remove_pods()
        while self._procs:
            name, proc, log = self._procs.pop()
            if name == "containerd" and proc.poll() is None:
                self._remove_containers()
            if proc.poll() is None:
                stop_process(proc.pid, grace=20)
            proc.wait()
            log.close()
        subprocess.run([str(self._tools["kube-proxy"]), "--cleanup"], capture_output=True,
                       check=False, timeout=60)
        if self.plane is not None:
            self.plane.stop()
        self.host.cleanup()

    def keep_logs(self, into: Path) -> Path:
        """Copy every component's and every pod's log into `into` (the node's
        own folder goes at teardown)."""
        into.mkdir(parents=True, exist_ok=True)
        for path in [*ROOT.glob("*.log"), *ROOT.glob("control-plane/*.log"),
                     *ROOT.glob("kubelet/pod-logs/**/*.log")]:
            shutil.copy(path, into / "_".join(path.relative_to(ROOT).parts))
        return into

    def logs(self, lines: int = 20) -> str:
        tails = [self.plane.logs()] if self.plane else []
        for path in sorted(ROOT.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"== {path.name}\n" + "\n".join(text))
        return "\n".join(tails)

    def import_image(self, tarball: Path) -> None:
        """`ctr image import` into the CRI's namespace (unpacked for overlayfs)."""
        self.ctr("image", "import", str(tarball))

    def ctr(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["ctr", "--address", str(SOCKET), "--namespace", CRI_NAMESPACE,
                               *args], capture_output=True, text=True, check=False,
                              timeout=600)
        if check and proc.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args[:2])} failed: {proc.stderr[-2000:]}")
        return proc.stdout

    # -- processes -------------------------------------------------------------

    def _spawn(self, name: str, *argv: str) -> None:
        log = (ROOT / f"{name}.log").open("wb")
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        self._procs.append((name, proc, log))
        self.host.track(name, proc.pid, str(ROOT))

    def _alive(self) -> bool:
        for name, proc, _ in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
        return True

    def _start_containerd(self) -> None:
        CONTAINERD.mkdir()
        cni = ROOT / "cni"
        (cni / "net.d").mkdir(parents=True)
        (cni / "net.d" / "10-consumer.conflist").write_text(json.dumps(_cni_config(cni)))
        config = CONTAINERD / "config.toml"
        config.write_text(_CONTAINERD_CONFIG.format(root=CONTAINERD, socket=SOCKET,
                                                    pause=PAUSE_IMAGE, cni=cni))
        self._spawn("containerd", "containerd", "--config", str(config))
        wait_for(lambda: self._alive() and SOCKET.exists() and self.ctr("version"), 60,
                 "containerd")

    def _start_kubelet(self) -> None:
        kubelet = ROOT / "kubelet"
        kubelet.mkdir()
        config = kubelet / "config.yaml"
        config.write_text(json.dumps(_kubelet_config(kubelet)))
        self._spawn("kubelet", str(self._tools["kubelet"]), f"--config={config}",
                    f"--kubeconfig={self.kubeconfig}", f"--root-dir={kubelet}",
                    f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
                    "--v=1")

    def _start_kube_proxy(self) -> None:
        self._spawn("kube-proxy", str(self._tools["kube-proxy"]),
                    f"--kubeconfig={self.kubeconfig}", f"--hostname-override={NODE_NAME}",
                    "--proxy-mode=iptables", f"--bind-address={NODE_IP}",
                    f"--cluster-cidr={host.POD_CIDR}",
                    f"--nodeport-addresses={NODE_IP}/32",
                    # Leave the machine's conntrack table and timeouts alone and
                    # never route 127.0.0.1 to pods (no route_localnet).
                    "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
                    "--conntrack-tcp-timeout-close-wait=0",
                    "--iptables-localhost-nodeports=false",
                    f"--metrics-bind-address=127.0.0.1:{free_port()}",
                    f"--healthz-bind-address=127.0.0.1:{free_port()}")

    def _start_coredns(self) -> None:
        corefile = ROOT / "Corefile"
        corefile.write_text(_COREFILE.format(ip=NODE_IP, kubeconfig=self.kubeconfig))
        self._spawn("coredns", str(self._tools["coredns"]), "-conf", str(corefile))

    def _remove_pods(self) -> None:
        """Delete every pod (grace 0) and give the kubelet a moment to stop
        their containers."""
        kube = self.kube
        for pod in kube.items("/api/v1/pods"):
            meta = pod["metadata"]
            with contextlib.suppress(OSError, KubeError):
                kube.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/"
                             f"{meta['name']}?gracePeriodSeconds=0")
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not kube.items("/api/v1/pods"), 30, "every pod gone")

    def _remove_containers(self) -> None:
        """With the kubelet stopped: kill and delete every container left (the
        kubelet removes dead sandboxes only later), so each shim exits and
        removes its socket."""
        for container in self.ctr("containers", "list", "-q", check=False).split():
            for args in (("tasks", "kill", "--signal", "SIGKILL", container),
                         ("tasks", "delete", "--force", container),
                         ("containers", "delete", container)):
                self.ctr(*args, check=False)


def _cni_config(cni: Path) -> dict[str, object]:
    # isGateway off: the bridge and its address are the harness's (host.py),
    # so the plugin never switches on forwarding machine-wide; no masquerade:
    # pods reach only the node address and the service range.
    return {"cniVersion": "0.4.0", "name": "consumer-node", "plugins": [{
        "type": "bridge", "bridge": host.BRIDGE, "isGateway": False, "ipMasq": False,
        "hairpinMode": True,
        "ipam": {"type": "host-local", "dataDir": str(cni / "ipam"),
                 "ranges": [[{"subnet": host.POD_CIDR, "gateway": host.POD_GATEWAY}]],
                 "routes": [{"dst": host.SERVICE_CIDR}, {"dst": f"{NODE_IP}/32"}]},
    }]}


def _kubelet_config(root: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # Reachable from this machine only; anonymous access is then harmless.
        "address": NODE_IP, "port": free_port(), "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        # cgroup v1 without systemd, as this machine has it.
        "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
        "failSwapOn": False, "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{SOCKET}",
        "clusterDNS": [NODE_IP], "clusterDomain": "cluster.local",
        "resolvConf": "", "podLogsDir": str(root / "pod-logs"),
        "volumePluginDir": str(root / "volume-plugins"),
        "serializeImagePulls": False,
        # Its KUBE-FIREWALL chain drops some 127.0.0.0/8 traffic, which only
        # matters with route_localnet on; kube-proxy runs with it off.
        "makeIPTablesUtilChains": False,
        # A shared, busy disk: never evict the test's pods over it.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "5s", "syncFrequency": "10s",
    }


_CONTAINERD_CONFIG = """\
version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{root}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}/net.d"
"""

# Cluster names only; anything else is refused (no traffic leaves the machine).
_COREFILE = """\
cluster.local:53 in-addr.arpa:53 {{
    bind {ip}
    errors
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {kubeconfig} local
    }}
}}
"""
