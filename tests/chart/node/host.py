"""What a real node changes on this machine, recorded first and put back after.

The node lives on its own addresses: a dummy interface holding `NODE_IP` (a
documentation address, routed nowhere; a port-less bridge where the kernel has
no dummy driver) and a bridge holding the pod network;
the service range is routed onto that bridge only. Forwarding is switched on
for the bridge alone, never machine-wide, and nothing binds the external
interface. Everything else the node's programs change is recorded in
`ROOT/host.json` before they start: the sysctls the kubelet and kube-proxy
touch, the log folders the kubelet creates. `cleanup()` puts it all back and
removes the interfaces, iptables chains, mounts and cgroups; a later run finds
the record of a crashed one and cleans up first. Loopback traffic of other
processes is never matched: every rule kube-proxy adds matches the service or
pod range, or the node address (the kubelet, which would add a rule on
127.0.0.0/8, is told not to: `makeIPTablesUtilChains: false`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from devtools.docker import mounts_under

NODE_IP = "198.51.100.1"  # TEST-NET-2 (RFC 5737): exists only on the dummy interface
NODE_NAME = "consumer-node"
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"  # the control plane's --service-cluster-ip-range
DUMMY = "csm-node0"
BRIDGE = "csm-br0"
BRIDGE_MAC = "02:00:0a:f4:00:01"  # locally administered; 10.244.0.1
ROOT = Path("/tmp/consumer-node")  # fixed, so a later run finds a crashed one's state
LOCK = Path("/tmp/consumer-node.lock")
STATE = ROOT / "host.json"
SOCKET = ROOT / "containerd" / "containerd.sock"
CRI_NAMESPACE = "k8s.io"
TASKS = ROOT / "containerd" / "state" / "io.containerd.runtime.v2.task" / CRI_NAMESPACE
# containerd 1.6 puts every shim's socket here, whatever its own state dir.
RUN_CONTAINERD = Path("/run/containerd")
SHIM_SOCKETS = RUN_CONTAINERD / "s"

# Sysctls the kubelet (memory overcommit, panics, key quotas) and kube-proxy
# (localnet routing, conntrack) may set, and forwarding.
SYSCTLS = (
    "vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet", "net.ipv4.conf.all.forwarding",
    "net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.bridge.bridge-nf-call-iptables",
)
PANIC_SYSCTLS = ("kernel.panic", "kernel.panic_on_oops")
# Folders the kubelet creates outside its root dir whatever it is told.
LOG_DIRS = (Path("/var/log/containers"), Path("/var/log/pods"))
CHAIN_PREFIXES = ("KUBE-", "CNI-")
# Where containerd puts the CRI's containers when the kubelet runs without
# per-QoS cgroups: /sys/fs/cgroup/<controller>/k8s.io/<container id>.
CGROUP_PARENT = "k8s.io"


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    """The current value of each recorded sysctl this kernel has."""
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = " ".join(_sysctl_path(name).read_text().split())
    return values


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        if " ".join(_sysctl_path(name).read_text().split()) != value:
            _sysctl_path(name).write_text(value)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0]
            for line in run("ip", "-o", "link", "show").stdout.splitlines()}


def node_chains() -> dict[str, list[str]]:
    """`<family>/<table>` -> the KUBE-*/CNI-* chains in it (both families)."""
    found: dict[str, list[str]] = {}
    for family in ("iptables", "ip6tables"):
        table = ""
        for line in run(f"{family}-save", check=False).stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                found.setdefault(f"{family}/{table}", []).append(line[1:].split()[0])
    return found


def remove_node_chains() -> None:
    """Delete every rule jumping to a KUBE-*/CNI-* chain, then those chains.
    No other program on this machine uses these names (the Docker engines of
    the tests run with iptables off)."""
    for family in ("iptables", "ip6tables"):
        script: list[str] = []
        ours: list[str] = []
        for line in run(f"{family}-save", check=False).stdout.splitlines():
            if line.startswith("*"):
                ours = []
                script.append(line)
            elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                ours.append(line[1:].split()[0])
            elif line.startswith("-A "):
                chain, rest = line[3:].split(" ", 1)
                target = rest.rsplit("-j ", 1)[-1].split()[0] if "-j " in rest else ""
                if not chain.startswith(CHAIN_PREFIXES) and target.startswith(CHAIN_PREFIXES):
                    script.append(f"-D {chain} {rest}")
            elif line == "COMMIT":
                script += [f"-F {c}" for c in ours] + [f"-X {c}" for c in ours] + ["COMMIT"]
        if any(line.startswith(("-D", "-X")) for line in script):
            subprocess.run([f"{family}-restore", "--noflush"], input="\n".join(script) + "\n",
                           capture_output=True, text=True, check=True, timeout=60)


def cgroups_under(name: str) -> list[Path]:
    """`name` and every cgroup below it, in each hierarchy, deepest first."""
    found = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top, topdown=False)]
    return found


def leftover_processes(cgroup_parents: list[str]) -> list[int]:
    """Shims of the node's containerd and the processes in its containers."""
    marker = f"-address {SOCKET} "
    pids = {int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and marker in _cmdline(int(p.name))}
    for parent in cgroup_parents:
        for cgroup in cgroups_under(parent):
            with contextlib.suppress(OSError):
                pids |= {int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()}
    return sorted(pids)


def shim_socket(container: str) -> Path:
    """Where containerd 1.6 puts the socket of `container`'s shim."""
    key = f"{SOCKET}/{CRI_NAMESPACE}/{container}".encode()
    return SHIM_SOCKETS / hashlib.sha256(key).hexdigest()


class Host:
    """`prepare()` records the host, cleans up after a crashed run and sets up
    the node's network; `cleanup()` undoes everything; `changes()` says what
    still differs from the record (empty once clean)."""

    def __init__(self) -> None:
        self._lock: IO[str] | None = None
        self.record: dict[str, Any] = {}

    def prepare(self) -> None:
        self._lock = LOCK.open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # one node on this machine at a time
        if STATE.exists():
            self.record = json.loads(STATE.read_text())
            self.cleanup(keep_lock=True)
        ROOT.mkdir(parents=True, exist_ok=True)
        self.record = {"sysctls": read_sysctls(), "pids": {},
                       "cgroups": [] if cgroups_under(CGROUP_PARENT) else [CGROUP_PARENT],
                       "log_dirs": [str(d) for d in LOG_DIRS if not d.exists()],
                       "run_dirs": [str(d) for d in (SHIM_SOCKETS, RUN_CONTAINERD / "runc",
                                                     RUN_CONTAINERD) if not d.exists()]}
        self._save()
        # A kernel without the dummy driver gets a bridge with no ports: as
        # local, and as unreachable from outside.
        if run("ip", "link", "add", DUMMY, "type", "dummy", check=False).returncode != 0:
            run("ip", "link", "add", DUMMY, "type", "bridge")
        run("ip", "addr", "add", f"{NODE_IP}/32", "dev", DUMMY)
        run("ip", "link", "set", DUMMY, "up")
        # The bridge exists before the CNI plugin runs, so its address and the
        # service route are ours; the plugin runs with isGateway off and so
        # never switches on forwarding for the whole machine.
        # A fixed MAC: a bridge without one takes its lowest port's, so a pod
        # coming or going would change the gateway's MAC under the other pods
        # and cut them off until their ARP entry expires.
        run("ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge")
        run("ip", "addr", "add", f"{POD_GATEWAY}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        run("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", POD_GATEWAY)
        write_sysctl(f"net.ipv4.conf.{BRIDGE}.forwarding", "1")

    def track(self, name: str, pid: int, marker: str) -> None:
        """Remember a started process, so a later run can stop it if this one
        crashes; `marker` is a string in its command line (pids get reused)."""
        self.record["pids"][name] = [pid, marker]
        self._save()

    def restore_panic_settings(self) -> None:
        """The kubelet sets the kernel to reboot on an oops; undo that at once."""
        for name in PANIC_SYSCTLS:
            if name in self.record["sysctls"]:
                write_sysctl(name, self.record["sysctls"][name])

    def cleanup(self, keep_lock: bool = False) -> None:
        """Undo everything `prepare()` and the node did. Idempotent."""
        for name, (pid, marker) in self.record.get("pids", {}).items():
            _stop_if_ours(name, pid, marker)
        self._kill_leftovers()
        with contextlib.suppress(RuntimeError):
            remove_node_chains()
        for point in mounts_under(ROOT):
            run("umount", "-l", point, check=False)
        for parent in self.record.get("cgroups", []):
            for cgroup in cgroups_under(parent):
                with contextlib.suppress(OSError):
                    cgroup.rmdir()
        for veth in links():
            if veth.startswith("veth") and _bridged_to(veth, BRIDGE):
                run("ip", "link", "delete", veth, check=False)
        for link in (BRIDGE, DUMMY):
            if link in links():
                run("ip", "link", "delete", link, check=False)
        for name, value in self.record.get("sysctls", {}).items():
            write_sysctl(name, value)
        for folder in self.record.get("log_dirs", []):
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(ROOT, ignore_errors=True)
        for folder in self.record.get("run_dirs", []):
            with contextlib.suppress(OSError):
                Path(folder).rmdir()  # only once empty: other engines' shims use it too
        if not keep_lock and self._lock is not None:
            self._lock.close()
            self._lock = None

    def _kill_leftovers(self) -> None:
        """Containers and shims a crashed run (or a failed removal) left:
        SIGKILL, then their shim sockets go."""
        parents = self.record.get("cgroups", [])
        pids = leftover_processes(parents)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while leftover_processes(parents) and time.monotonic() < deadline:
            time.sleep(0.1)
        containers = {d.name for p in parents for d in cgroups_under(p)}
        if TASKS.is_dir():
            containers |= {d.name for d in TASKS.iterdir()}
        for container in containers:
            shim_socket(container).unlink(missing_ok=True)
        shutil.rmtree(RUN_CONTAINERD / "runc" / CRI_NAMESPACE, ignore_errors=True)

    def changes(self) -> dict[str, Any]:
        """What differs from the recorded host; `{}` when all is back."""
        diff: dict[str, Any] = {}
        now = read_sysctls()
        sysctls = {k: (v, now.get(k)) for k, v in self.record["sysctls"].items()
                   if now.get(k) != v}
        if sysctls:
            diff["sysctls (recorded, now)"] = sysctls
        if left := {DUMMY, BRIDGE} & links():
            diff["interfaces"] = sorted(left)
        if chains := node_chains():
            diff["iptables chains"] = chains
        if mounts := mounts_under(ROOT):
            diff["mounts"] = mounts
        if cgroups := [str(c) for p in self.record["cgroups"] for c in cgroups_under(p)]:
            diff["cgroups"] = cgroups
        if logs := [d for d in self.record["log_dirs"] if Path(d).exists()]:
            diff["log folders"] = logs
        if alive := [n for n, (pid, marker) in self.record["pids"].items()
                     if _cmdline(pid) and marker in _cmdline(pid)]:
            diff["processes"] = alive
        if ROOT.exists():
            diff["state folder"] = str(ROOT)
        if leftovers := leftover_processes(self.record["cgroups"]):
            diff["container processes"] = leftovers
        if run_dirs := [d for d in self.record["run_dirs"] if Path(d).exists()]:
            diff["runtime folders"] = run_dirs
        return diff

    def _save(self) -> None:
        STATE.write_text(json.dumps(self.record))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _stop_if_ours(name: str, pid: int, marker: str, grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `grace`, if `pid` still runs our command."""
    if marker not in _cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marker in _cmdline(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if marker in _cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _bridged_to(link: str, bridge: str) -> bool:
    master = Path(f"/sys/class/net/{link}/master")
    return master.exists() and master.resolve().name == bridge
