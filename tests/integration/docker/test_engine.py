"""The private engine itself: it runs containers and leaves the host as it
found it — no bridge, no firewall rule, no sysctl change, no mount, no
process."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.docker import DockerEngine, mounts_under
from devtools.images import BASE_IMAGE, ensure_base_image

pytestmark = pytest.mark.integration


def docker_traces() -> dict[str, str]:
    """What a Docker engine leaves on a host when it manages networking: its
    interfaces (docker0, br-*, veth*), its firewall chains and rules (DOCKER*,
    docker0), IP forwarding. Other users of the machine may add interfaces or
    rules of their own meanwhile; those are not counted."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    names = sorted(line.split(":")[1].strip() for line in links.stdout.splitlines())
    traces = {
        "links": " ".join(n for n in names if n.startswith(("docker", "br-", "veth"))),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    }
    for tool in ("iptables-save", "ip6tables-save"):
        if path := shutil.which(tool):
            dump = subprocess.run([path], capture_output=True, text=True, check=False).stdout
            traces[tool] = "\n".join(re.sub(r"\[\d+:\d+\]", "", line)  # packet counters
                                     for line in dump.splitlines()
                                     if "DOCKER" in line or "docker" in line)
    return traces


def test_engine_runs_a_container_and_leaves_no_trace(tmp_path: Path) -> None:
    before = docker_traces()
    engine = DockerEngine(data_root=tmp_path / "data")
    engine.start()
    try:
        pid, exec_root = engine.pid, engine.exec_root
        ensure_base_image(engine)
        out = engine.docker("run", "--rm", "--network", "host", BASE_IMAGE,
                            "python3", "-c", "import sys; print(sys.version_info[:2])").stdout
        assert out.strip() == "(3, 11)"
        networks = engine.docker("network", "ls", "--format", "{{.Driver}}").stdout.split()
        assert "bridge" not in networks
    finally:
        engine.stop()
    assert mounts_under(tmp_path) == []
    shutil.rmtree(tmp_path / "data")
    assert pid is not None
    assert not Path(f"/proc/{pid}").exists()
    assert exec_root is not None
    assert not exec_root.exists()
    assert docker_traces() == before
