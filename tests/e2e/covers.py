"""Real cover sites for the side-by-side tests: certificates from a CA made here, and the
servers a proxy fronts to — `openssl s_server` (a one-certificate chain) and nginx from Debian
(a two-certificate chain, unknown names rejected as a real site does, and a large-chain variant
of about 13 KB, as microsoft.com sends). Everything listens on loopback inside the test's
network namespace."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from helpers import free_port, listening, stop_group, wait_until


def _openssl(*args, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


@dataclass
class Chain:
    leaf: Path        # the leaf certificate
    key: Path
    full: Path        # leaf followed by the issuing CA (what a server sends)
    ca: Path

    def der_total(self) -> int:
        """Bytes of DER certificates the server sends (the bulk of its encrypted flight)."""
        out = subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", str(self.full), "-outform", "DER"],
                             capture_output=True, check=True, timeout=30).stdout
        return len(out)


def make_chain(d: Path, domain: str, extra_names: int = 0, bits: int = 2048) -> Chain:
    """A CA and a leaf for `domain` signed by it. `extra_names` more subjectAltNames make the
    leaf (and so the flight) larger, as the certificates of big sites are."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:%d" % bits, "-nodes", "-days", "3", "-subj", "/CN=Test Root CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    names = ["DNS:%s" % domain] + ["DNS:host%04d.%s" % (i, domain) for i in range(extra_names)]
    (d / "ext.cnf").write_text("subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                               "extendedKeyUsage=serverAuth\n" % ",".join(names))
    _openssl("req", "-newkey", "rsa:%d" % bits, "-nodes", "-subj", "/CN=%s" % domain,
             "-keyout", "leaf.key", "-out", "leaf.csr", cwd=d)
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "3", "-extfile", "ext.cnf", "-out", "leaf.pem", cwd=d)
    (d / "full.pem").write_text((d / "leaf.pem").read_text() + (d / "ca.pem").read_text())
    return Chain(d / "leaf.pem", d / "leaf.key", d / "full.pem", d / "ca.pem")


class Cover:
    """A running cover server."""
    name = "cover"
    host = "127.0.0.1"

    def __init__(self, port: int, proc: subprocess.Popen, chain: Chain):
        self.port, self.proc, self.chain = port, proc, chain

    @property
    def addr(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def stop(self):
        stop_group(self.proc)


def _started(proc: subprocess.Popen, port: int, what: str, log: Path) -> None:
    if not wait_until(lambda: proc.poll() is not None or listening(port), 15) or proc.poll() is not None:
        stop_group(proc)
        raise RuntimeError("%s did not start: %s" % (what, log.read_text(errors="replace")[-2000:]))


def start_s_server(d: Path, chain: Chain) -> Cover:
    """`openssl s_server -www` with the leaf alone (a one-certificate chain)."""
    port = free_port()
    log = d / "s_server.log"
    proc = subprocess.Popen(["openssl", "s_server", "-www", "-accept", "127.0.0.1:%d" % port, "-cert", str(chain.leaf),
                             "-key", str(chain.key), "-naccept", "1000000"],
                            stdin=subprocess.DEVNULL, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    _started(proc, port, "openssl s_server", log)
    c = Cover(port, proc, chain)
    c.name = "openssl-s_server"
    return c


NGINX_CONF = """
user root;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type text/html;
    # At http level: the protocols are negotiated on the default server's settings, before the
    # name picks a server (nginx 1.22 has no TLS 1.3 by default).
    ssl_protocols TLSv1.2 TLSv1.3;
    # Names this server does not serve are refused in the handshake, as a real site does.
    server {{
        listen 127.0.0.1:{port} ssl http2 default_server;
        ssl_reject_handshake on;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name {domain};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        root {d}/www;
    }}
}}
"""


def start_nginx(d: Path, chain: Chain, domain: str) -> Cover:
    """nginx from Debian serving `domain` with the leaf and its CA (a two-certificate chain)."""
    port = free_port()
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    (d / "www").mkdir(exist_ok=True)
    (d / "www" / "index.html").write_text("<html><body><h1>%s</h1><p>Welcome.</p></body></html>\n" % domain)
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=d, port=port, domain=domain, chain=chain.full, key=chain.key))
    log = d / "nginx.out"
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(d)], stdin=subprocess.DEVNULL,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    _started(proc, port, "nginx", d / "error.log" if (d / "error.log").exists() else log)
    c = Cover(port, proc, chain)
    c.name = "nginx"
    return c
