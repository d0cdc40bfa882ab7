"""The local broker with security on, for the security tests (and anyone who
wants to try `CONSUMER_SECURITY_PROTOCOL` against a real cluster).

Listeners, all on 127.0.0.1:

| listener | protocol | who |
|---|---|---|
| `port` | SASL_SSL, SCRAM-SHA-256 and -512 | users made at format time (`--add-scram`) |
| `mtls_port` | SSL, client certificate required | principal = the certificate's CN |
| controller | SSL, client certificate required | the broker itself (CN=broker) |

TLS uses a CA made here (`devtools.tls`); the broker's certificate names
127.0.0.1 and localhost. Authorization is on (`StandardAuthorizer`, nothing
allowed without an ACL); `admin` (SCRAM) and `broker` (the broker's own
certificate) are super users. `grant`/`revoke` manage ACLs with Kafka's own
`AclCommand`, authenticated as `admin`.
"""

from __future__ import annotations

import re
import secrets
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field

from pydantic import SecretStr

from consumer.config import SecurityProtocol
from consumer.security import KafkaSecurity
from devtools.kafka import LocalKafka, _server_properties, ensure_tools, metadata_round_trip
from devtools.ports import free_port
from devtools.tls import CertificateAuthority, Issued

ADMIN = "admin"
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass
class SecureKafka(LocalKafka):
    """`users` (name → password) are SCRAM-SHA-256 and -512 users."""

    users: dict[str, str] = field(default_factory=dict, repr=False)
    mtls_port: int = 0
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    _ca: CertificateAuthority | None = field(default=None, init=False)

    @property
    def ca(self) -> CertificateAuthority:
        assert self._ca is not None, "start() first"
        return self._ca

    @property
    def mtls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    def client_certificate(self, name: str, *, days: int = 7) -> Issued:
        """A client certificate (CN=`name`) signed by the broker's CA."""
        return self.ca.issue(name, days=days)

    def admin_security(self) -> KafkaSecurity:
        """The harness's own super-user connection (SASL_SSL, SCRAM-SHA-512)."""
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        return KafkaSecurity(SecurityProtocol.SASL_SSL, "SCRAM-SHA-512", ADMIN,
                             SecretStr(self.admin_password), context)

    # -- LocalKafka hooks ----------------------------------------------------

    def _admin_jaas(self) -> str:
        """The JAAS line of the admin user: the brokers' own SCRAM login and
        the one `AclCommand` uses."""
        return f'{_SCRAM_MODULE} required username="{ADMIN}" password="{self.admin_password}";'

    def _properties(self, controller: int) -> str:
        assert self.data_dir is not None
        self.mtls_port = self.mtls_port or free_port()
        self._ca = CertificateAuthority.create(self.data_dir / "tls")
        keystore = self._ca.issue("broker", san="IP:127.0.0.1,DNS:localhost").bundle(
            self.data_dir / "tls" / "broker-keystore.pem")
        jaas = self._admin_jaas()
        base = _server_properties(self.port, controller, self.data_dir / "log")
        # The plaintext layout's listener lines are replaced, the rest kept.
        kept = [line for line in base.splitlines() if not line.startswith(
            ("listeners=", "advertised.listeners=", "listener.security.protocol.map=",
             "inter.broker.listener.name=", "auto.create.topics.enable="))]
        return "\n".join([*kept, f"""\
listeners=SASL_SSL://127.0.0.1:{self.port},SSL://127.0.0.1:{self.mtls_port},\
CONTROLLER://127.0.0.1:{controller}
advertised.listeners=SASL_SSL://127.0.0.1:{self.port},SSL://127.0.0.1:{self.mtls_port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={self._ca.cert}
listener.name.ssl.ssl.client.auth=required
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{ADMIN};User:broker
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
"""])

    def _format_args(self) -> list[str]:
        args = []
        for name, password in {ADMIN: self.admin_password, **self.users}.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        return args

    def _ready(self) -> bool:
        return metadata_round_trip(self.bootstrap, timeout=5.0, security=self.admin_security())

    # -- ACLs ----------------------------------------------------------------

    def grant(self, principal: str, operations: list[str], *, topic: str | None = None,
              group: str | None = None) -> None:
        """Allow `operations` (Read, Write, Describe...) on `topic` and/or
        `group` to `User:principal`. Effective when this returns."""
        self._acl("--add", principal, operations, topic, group)

    def revoke(self, principal: str, operations: list[str], *, topic: str | None = None,
               group: str | None = None) -> None:
        self._acl("--remove", principal, operations, topic, group)

    def _acl(self, action: str, principal: str, operations: list[str], topic: str | None,
             group: str | None) -> None:
        resources = ([("TOPIC", topic)] if topic else []) + ([("GROUP", group)] if group else [])
        selection = [arg for kind, name in resources for arg in (f"--{kind.lower()}", name)]
        ops = [arg for op in operations for arg in ("--operation", op)]
        self._acl_command(action, "--force", "--allow-principal", f"User:{principal}",
                          *ops, *selection)
        # AclCommand returns once the controller committed the change; the
        # broker's authorizer applies it from the metadata log a moment later.
        # Listing is answered from that authorizer: wait until it agrees.
        wanted = {(kind, name, f"principal=User:{principal}, host=*, operation={op.upper()}, "
                   "permissionType=ALLOW") for kind, name in resources for op in operations}
        deadline = time.monotonic() + 30
        while True:
            listed = self._listed(self._acl_command("--list", *selection))
            if (wanted <= listed) if action == "--add" else not wanted & listed:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ACL change {action} {sorted(wanted)} not effective")
            time.sleep(0.2)

    @staticmethod
    def _listed(output: str) -> set[tuple[str, str, str]]:
        found = set()
        resource: tuple[str, str] | None = None
        for line in output.splitlines():
            if match := re.search(r"resourceType=(\w+), name=([^,]+),", line):
                resource = (match[1], match[2])
            elif resource is not None and line.strip().startswith("(principal="):
                found.add((*resource, line.strip()[1:-1]))
        return found

    def _acl_command(self, *args: str) -> str:
        assert self.data_dir is not None
        assert self._ca is not None
        config = self.data_dir / "admin.properties"
        if not config.exists():
            jaas = self._admin_jaas()
            config.write_text(f"security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                              f"sasl.jaas.config={jaas}\nssl.truststore.type=PEM\n"
                              f"ssl.truststore.location={self._ca.cert}\n")
        java = shutil.which("java")
        assert java is not None
        proc = subprocess.run(
            [java, "-Xms32m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
             "-cp", f"{ensure_tools()}/*", "org.apache.kafka.tools.AclCommand",
             "--bootstrap-server", self.bootstrap, "--command-config", str(config), *args],
            capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"AclCommand {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout
