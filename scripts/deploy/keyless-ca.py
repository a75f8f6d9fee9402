"""A private certificate authority standing in for Fulcio, for tests only.

    keyless-ca.py ca PREFIX
        PREFIX.key, PREFIX.pem: a self-signed root CA, new per run.
    keyless-ca.py leaf CA_PREFIX PUBLIC_KEY OUT --identity URI --issuer URL
        OUT: a 10-minute leaf certificate for PUBLIC_KEY (cosign.pub) shaped
        like the ones Fulcio issues to a GitHub Actions workflow: SAN URI =
        the workflow identity, the OIDC issuer in Fulcio's extensions
        1.3.6.1.4.1.57264.1.1 (legacy, raw bytes) and 1.3.6.1.4.1.57264.1.8
        (DER UTF8String), key usage digitalSignature, EKU codeSigning.
    keyless-ca.py tsa CA_PREFIX PREFIX
        PREFIX.key, PREFIX.pem: a timestamping certificate (EKU timeStamping)
        for serve-tsa, standing in for a public timestamp authority.
    keyless-ca.py tls CA_PREFIX PREFIX HOST...
        PREFIX.key, PREFIX.pem: a TLS server certificate for HOSTs (what the
        stand-in GitHub of scripts/deploy/github-stand-in.py serves).
    keyless-ca.py serve-tsa PREFIX CA_PREFIX PORT
        An RFC 3161 timestamp authority on 127.0.0.1:PORT: each POSTed
        request is answered by `openssl ts -reply`, signed by PREFIX.

The private key of the CA never leaves the test's scratch directory.
"""

import argparse
import datetime
import http.server
import os
import subprocess
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ISSUER_LEGACY = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


def der_utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128, "short-form DER length only"
    return bytes([0x0C, len(raw)]) + raw


def write_pem(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def make_ca(prefix: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wordcount test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"test CA {prefix.rsplit('/', 1)[-1]}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA384()))
    write_pem(prefix + ".key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    write_pem(prefix + ".pem", cert.public_bytes(serialization.Encoding.PEM))


def make_leaf(ca_prefix: str, public_key: str, out: str, identity: str, issuer: str) -> None:
    with open(ca_prefix + ".key", "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(ca_prefix + ".pem", "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(public_key, "rb") as f:
        pub = serialization.load_pem_public_key(f.read())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.subject)
            .public_key(pub).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(minutes=10))
            # An empty subject makes the SAN critical (RFC 5280), as in Fulcio's.
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.UnrecognizedExtension(ISSUER_LEGACY, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(ISSUER_V2, der_utf8(issuer)), critical=False)
            .sign(ca_key, hashes.SHA384()))
    write_pem(out, cert.public_bytes(serialization.Encoding.PEM))


def make_tsa(ca_prefix: str, prefix: str) -> None:
    make_service_cert(ca_prefix, prefix, "test TSA", ExtendedKeyUsageOID.TIME_STAMPING, [])


def make_tls(ca_prefix: str, prefix: str, hosts: list[str]) -> None:
    make_service_cert(ca_prefix, prefix, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, hosts)


def make_service_cert(ca_prefix: str, prefix: str, name: str, usage: x509.ObjectIdentifier,
                      hosts: list[str]) -> None:
    with open(ca_prefix + ".key", "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(ca_prefix + ".pem", "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=2))
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
                                        critical=False)
    cert = builder.sign(ca_key, hashes.SHA384())
    write_pem(prefix + ".key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    write_pem(prefix + ".pem", cert.public_bytes(serialization.Encoding.PEM))


def serve_tsa(prefix: str, ca_prefix: str, port: int) -> None:
    work = tempfile.mkdtemp()
    config = os.path.join(work, "tsa.cnf")
    with open(config, "w") as f:
        f.write(f"""[tsa]
default_tsa = tsa_config
[tsa_config]
serial = {work}/serial
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
ess_cert_id_alg = sha256
""")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = os.path.join(work, "query.tsq")
            with open(query, "wb") as q:
                q.write(self.rfile.read(int(self.headers["Content-Length"])))
            reply = subprocess.run(["openssl", "ts", "-reply", "-config", config, "-queryfile", query,
                                    "-inkey", prefix + ".key", "-signer", prefix + ".pem",
                                    "-chain", ca_prefix + ".pem"], capture_output=True)
            self.send_response(200 if reply.returncode == 0 else 500)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.end_headers()
            self.wfile.write(reply.stdout)

        def log_message(self, *_: object) -> None:
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ca").add_argument("prefix")
    leaf = sub.add_parser("leaf")
    for a in ("ca_prefix", "public_key", "out"):
        leaf.add_argument(a)
    leaf.add_argument("--identity", required=True)
    leaf.add_argument("--issuer", required=True)
    tsa = sub.add_parser("tsa")
    tsa.add_argument("ca_prefix")
    tsa.add_argument("prefix")
    tls = sub.add_parser("tls")
    tls.add_argument("ca_prefix")
    tls.add_argument("prefix")
    tls.add_argument("hosts", nargs="+")
    serve = sub.add_parser("serve-tsa")
    serve.add_argument("prefix")
    serve.add_argument("ca_prefix")
    serve.add_argument("port", type=int)
    a = p.parse_args()
    if a.cmd == "ca":
        make_ca(a.prefix)
    elif a.cmd == "leaf":
        make_leaf(a.ca_prefix, a.public_key, a.out, a.identity, a.issuer)
    elif a.cmd == "tsa":
        make_tsa(a.ca_prefix, a.prefix)
    elif a.cmd == "tls":
        make_tls(a.ca_prefix, a.prefix, a.hosts)
    else:
        serve_tsa(a.prefix, a.ca_prefix, a.port)


if __name__ == "__main__":
    main()
