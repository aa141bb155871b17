"""Certificates whose keys live in the HSM tier (``RSA-HSM`` / ``EC-HSM``),
with the official azure-keyvault-certificates SDK (unchanged) against a
3-node cluster whose nodes each have a SoftHSM2 token.

The key is made inside the device and everything it signs is signed there
(the certificate, the CSR, a CA's leaves, CRLs and OCSP responses); these
tests judge the results with ``cryptography`` and ``openssl``: a
self-signed EC-HSM certificate through the SDK's real poller whose public
key is the HSM key's JWK, an RSA-HSM CSR merged with a chain whose key signs
through the keys API, a private CA whose key is an HSM key (``coffer cert ca
create --kty EC-HSM``) issuing a leaf that ``openssl verify`` accepts, with
a CRL and OCSP responses that verify under the CA, and an exportable HSM
policy refused with 400.

Environment: as test_certificates.py (whose fixtures and helpers are used).
"""

import base64
import hashlib
import os
import subprocess

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificateContentType,
    CertificatePolicy,
    KeyCurveName,
    KeyType,
    KeyVaultCertificate,
    WellKnownIssuerNames,
)
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID

from test_certificates import (  # noqa: F401 (fixtures are found by name)
    CACERT,
    COFFER_BIN,
    TOKEN,
    VAULT_URL,
    StaticTokenCredential,
    _kwargs,
    client,
    keys,
    make_ca,
    name,
    prefix,
    secrets,
    sign,
)

pytestmark = pytest.mark.skipif(
    not (VAULT_URL and TOKEN and os.environ.get("COFFER_HSM") == "1"),
    reason="needs a cluster with HSM tokens (COFFER_HSM=1) and COFFER_VAULT_URL, COFFER_TOKEN",
)


def same_public_key(cert, jwk):
    """Whether the certificate's public key is the key's JWK."""
    numbers = cert.public_key().public_numbers()
    if jwk.kty.startswith("EC"):
        return (int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big")) == (numbers.x, numbers.y)
    return (int.from_bytes(jwk.n, "big"), int.from_bytes(jwk.e, "big")) == (numbers.n, numbers.e)


def coffer(*args):
    """Runs the coffer CLI against the vault; its stdout."""
    done = subprocess.run(
        [COFFER_BIN, *args, "--addr", VAULT_URL, "--ca-cert", CACERT],
        env={**os.environ, "COFFER_TOKEN": TOKEN},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def openssl(cwd, *args):
    """Runs openssl, which must succeed; stdout and stderr together."""
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    text = done.stdout + done.stderr
    assert done.returncode == 0, f"openssl {args}: {text}"
    return text


def test_self_signed_ec_hsm_through_the_real_poller(client, keys, secrets, name):
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.self,
        subject="CN=hsm.coffer.test",
        san_dns_names=["hsm.coffer.test"],
        validity_in_months=6,
        key_type=KeyType.ec_hsm,
        key_curve_name=KeyCurveName.p_256,
    )
    cert = client.begin_create_certificate(name, policy).result()
    assert isinstance(cert, KeyVaultCertificate), cert
    assert cert.policy.key_type == "EC-HSM"
    assert cert.policy.exportable is False
    key = keys.get_key(name, cert.properties.version)
    assert key.key_type == "EC-HSM"
    assert key.properties.managed is True
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    assert same_public_key(leaf, key.key)
    # Self-signed by the HSM key: its own public key verifies it.
    leaf.public_key().verify(
        leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
    )
    assert bytes(cert.properties.x509_thumbprint) == hashlib.sha1(bytes(cert.cer)).digest()
    # Never exportable: the PFX holds the certificate and no key.
    pkey, first, more = pkcs12.load_key_and_certificates(
        base64.b64decode(secrets.get_secret(name).value), None
    )
    assert pkey is None
    ders = [c.public_bytes(serialization.Encoding.DER) for c in ([first] if first else []) + more]
    assert ders == [bytes(cert.cer)]


def test_rsa_hsm_request_merged_and_its_key_signs(client, keys, name):
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.unknown,
        subject="CN=hsm-merged.coffer.test",
        key_type=KeyType.rsa_hsm,
        key_size=2048,
    )
    op = client.begin_create_certificate(name, policy).result()
    assert op.status.lower() == "inprogress"
    csr = x509.load_der_x509_csr(bytes(op.csr))
    assert csr.is_signature_valid
    ca_key, ca_cert = make_ca()
    leaf = sign(ca_key, ca_cert, csr.public_key(), csr.subject)
    chain = [c.public_bytes(serialization.Encoding.DER) for c in (leaf, ca_cert)]
    merged = client.merge_certificate(name, chain)
    assert bytes(merged.cer) == chain[0]
    key = keys.get_key(name)
    assert key.key_type == "RSA-HSM"
    assert same_public_key(leaf, key.key)
    # The HSM key is the certificate's: what it signs verifies under the leaf.
    data = b"signed inside the HSM"
    crypto = CryptographyClient(key, StaticTokenCredential(TOKEN), **_kwargs())
    signed = crypto.sign(SignatureAlgorithm.rs256, hashlib.sha256(data).digest())
    leaf.public_key().verify(signed.signature, data, padding.PKCS1v15(), hashes.SHA256())


def test_exportable_hsm_policy_is_400_and_creates_nothing(client, name):
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.self,
        subject="CN=no.coffer.test",
        key_type=KeyType.rsa_hsm,
        exportable=True,
    )
    with pytest.raises(HttpResponseError) as e:
        client.begin_create_certificate(name, policy)
    assert e.value.status_code == 400
    assert "exportable" in str(e.value.message)
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate(name)


@pytest.mark.skipif(not COFFER_BIN, reason="needs the coffer CLI (COFFER_BIN)")
def test_a_ca_with_an_hsm_key_issues_and_revokes(client, keys, prefix, tmp_path):
    """A root CA whose key is an EC-HSM key: the leaf it issues passes
    `openssl verify`, and its CRL and OCSP responses (before and after
    `coffer cert revoke`) verify under the CA certificate."""
    ca_name, issuer, leaf_name = f"{prefix}-hsm-root", f"{prefix}-hsm-ca", f"{prefix}-hsm-leaf"
    coffer("cert", "ca", "create", ca_name, "--subject", "CN=Coffer HSM Root, O=Coffer",
           "--issuer", issuer, "--kty", "EC-HSM", "--curve", "P-384")
    ca = client.get_certificate(ca_name)
    ca_key = keys.get_key(ca_name, ca.properties.version)
    assert ca_key.key_type == "EC-HSM"
    root = x509.load_der_x509_certificate(bytes(ca.cer))
    assert same_public_key(root, ca_key.key)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    policy = CertificatePolicy(
        issuer_name=issuer,
        subject="CN=hsm-leaf.coffer.test",
        san_dns_names=["hsm-leaf.coffer.test"],
        validity_in_months=3,
        content_type=CertificateContentType.pem,
    )
    cert = client.begin_create_certificate(leaf_name, policy).result()
    assert isinstance(cert, KeyVaultCertificate), cert
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    (tmp_path / "ca.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    verified = openssl(tmp_path, "verify", "-CAfile", "ca.pem", "leaf.pem")
    assert "leaf.pem: OK" in verified, verified

    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp_url = [d.access_location.value for d in aia
                if d.access_method == AuthorityInformationAccessOID.OCSP][0]
    crl_url = leaf.extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value[0].full_name[0].value

    def ocsp():
        return openssl(tmp_path, "ocsp", "-issuer", "ca.pem", "-cert", "leaf.pem",
                       "-CAfile", "ca.pem", "-url", ocsp_url, "-timeout", "10")

    def crl_text():
        got = requests.get(crl_url, verify=CACERT, timeout=10)
        assert got.status_code == 200, got.text
        (tmp_path / "crl.der").write_bytes(got.content)
        return openssl(tmp_path, "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "ca.pem",
                       "-noout", "-text")

    report = ocsp()
    assert "Response verify OK" in report and "leaf.pem: good" in report, report
    assert "verify OK" in crl_text()

    coffer("cert", "revoke", leaf_name, "--issuer", issuer, "--reason", "keyCompromise")
    report = ocsp()
    assert "Response verify OK" in report and "leaf.pem: revoked" in report, report
    text = crl_text()
    assert "verify OK" in text, text
    serial = format(leaf.serial_number, "X")
    assert serial in text.replace(":", "").upper(), text
