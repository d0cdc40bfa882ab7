"""A throw-away certificate authority for the secured local broker, made with
the `openssl` command line (no Python dependency): a CA, a broker certificate
for 127.0.0.1/localhost, client certificates for mutual TLS, and on purpose
an expired one. Keys are unencrypted PKCS#8 PEM, which both Kafka's PEM key
store and Python's `ssl` read.

Blocking, like the rest of `devtools`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path  # PEM certificate
    key: Path  # PEM private key (PKCS#8, unencrypted)

    def bundle(self, path: Path) -> Path:
        """Key then certificate in one file: Kafka's PEM key store layout."""
        path.write_bytes(self.key.read_bytes() + self.cert.read_bytes())
        return path


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    folder: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, folder: Path, name: str = "consumer-test-ca") -> CertificateAuthority:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        _openssl("req", "-x509", *_KEY, "-keyout", key, "-out", cert, "-days", "7",
                 "-subj", f"/CN={name}")
        return cls(folder, cert, key)

    def issue(self, name: str, *, san: str | None = None, days: int = 7) -> Issued:
        """A certificate with subject CN=`name`; `days=-1` makes one that
        expired yesterday."""
        key, csr, cert = (self.folder / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        _openssl("req", *_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        ext = self.folder / f"{name}.ext"
        lines = ["extendedKeyUsage=serverAuth,clientAuth"]
        if san:
            lines.append(f"subjectAltName={san}")
        ext.write_text("\n".join(lines) + "\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                 "-CAcreateserial", "-out", cert, "-days", str(days), "-extfile", ext)
        return Issued(cert, key)


def _openssl(*args: str | Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("openssl is not installed; run `make setup` first")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed:\n{proc.stderr}")
