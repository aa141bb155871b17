"""Conformance of Coffer's keys API with the official azure-keyvault-keys SDK.

Every public ``KeyClient`` method and every algorithm of ``CryptographyClient``
is exercised against one Coffer node; results are checked independently with
the ``cryptography`` package (signatures verified locally, data encrypted
locally and decrypted by Coffer, and the reverse).

Environment: as test_secrets.py (COFFER_VAULT_URL, COFFER_TOKEN, COFFER_CACERT),
plus COFFER_HSM=1 when the cluster has HSMs (then the *-HSM variants run too).
"""

import hashlib
import os
import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import (
    JsonWebKey,
    KeyClient,
    KeyCurveName,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
    KeyType,
)
from azure.keyvault.keys.crypto import (
    CryptographyClient,
    EncryptionAlgorithm,
    KeyWrapAlgorithm,
    SignatureAlgorithm,
)
from azure.keyvault.keys.crypto._providers import NoLocalCryptography
from cryptography.hazmat.primitives import hashes, padding as sympad
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    aes_key_unwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap,
    aes_key_wrap_with_padding,
)

from test_secrets import FAST_POLL, StaticTokenCredential, utc, wait_until

VAULT_URL = os.environ.get("COFFER_VAULT_URL")
TOKEN = os.environ.get("COFFER_TOKEN")
CACERT = os.environ.get("COFFER_CACERT")
HSM = os.environ.get("COFFER_HSM") == "1"

pytestmark = pytest.mark.skipif(
    not (VAULT_URL and TOKEN),
    reason="set COFFER_VAULT_URL and COFFER_TOKEN (and COFFER_CACERT) to run against a node",
)
needs_hsm = pytest.mark.skipif(not HSM, reason="set COFFER_HSM=1 when the cluster has HSMs")

KWARGS = {"verify_challenge_resource": False, **({"connection_verify": CACERT} if CACERT else {})}

HASHES = {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}
SIGN_DIGEST = {
    "RS256": hashlib.sha256, "RS384": hashlib.sha384, "RS512": hashlib.sha512,
    "PS256": hashlib.sha256, "PS384": hashlib.sha384, "PS512": hashlib.sha512,
    "ES256": hashlib.sha256, "ES384": hashlib.sha384, "ES512": hashlib.sha512,
    "ES256K": hashlib.sha256,
}
CURVES = {
    "P-256": (ec.SECP256R1(), "ES256"),
    "P-384": (ec.SECP384R1(), "ES384"),
    "P-521": (ec.SECP521R1(), "ES512"),
    "P-256K": (ec.SECP256K1(), "ES256K"),
}


@pytest.fixture(scope="session")
def credential():
    return StaticTokenCredential(TOKEN)


@pytest.fixture(scope="session")
def client(credential):
    with KeyClient(VAULT_URL, credential, **KWARGS) as c:
        yield c


@pytest.fixture(scope="session")
def prefix(client):
    p = "ck-" + uuid.uuid4().hex[:10]
    yield p
    for props in client.list_properties_of_keys():
        if props.name.startswith(p):
            try:
                client.begin_delete_key(props.name, **FAST_POLL).result()
            except HttpResponseError:
                pass
    for deleted in client.list_deleted_keys():
        if deleted.name.startswith(p):
            try:
                client.purge_deleted_key(deleted.name)
            except HttpResponseError:
                pass


_counter = iter(range(1_000_000))


@pytest.fixture
def name(prefix):
    return f"{prefix}-{next(_counter)}"


def crypto(key, credential, remote=False):
    """A CryptographyClient; `remote` forces every operation to the service."""
    c = CryptographyClient(key if not remote else key.id, credential, **KWARGS)
    if remote:
        c._local_provider = NoLocalCryptography()
        c._initialized = True
    return c


def b2i(b):
    return int.from_bytes(b, "big")


def i2b(i, n=None):
    return i.to_bytes(n or (i.bit_length() + 7) // 8, "big")


def public_of(jwk):
    if jwk.n:
        return rsa.RSAPublicNumbers(b2i(jwk.e), b2i(jwk.n)).public_key()
    curve = CURVES[str(jwk.crv.value if hasattr(jwk.crv, "value") else jwk.crv)][0]
    return ec.EllipticCurvePublicNumbers(b2i(jwk.x), b2i(jwk.y), curve).public_key()


def verify_locally(public, alg, digest, sig):
    """Raises InvalidSignature unless `sig` is valid."""
    h = HASHES[len(digest)]
    pre = utils.Prehashed(h)
    if alg.startswith("RS"):
        public.verify(sig, digest, padding.PKCS1v15(), pre)
    elif alg.startswith("PS"):
        public.verify(sig, digest, padding.PSS(padding.MGF1(h), h.digest_size), pre)
    else:
        half = len(sig) // 2
        der = utils.encode_dss_signature(b2i(sig[:half]), b2i(sig[half:]))
        public.verify(der, digest, ec.ECDSA(pre))


def rsa_jwk(private, hsm=False):
    n = private.private_numbers()
    pub = n.public_numbers
    return JsonWebKey(
        kty="RSA-HSM" if hsm else "RSA", n=i2b(pub.n), e=i2b(pub.e), d=i2b(n.d), p=i2b(n.p),
        q=i2b(n.q), dp=i2b(n.dmp1), dq=i2b(n.dmq1), qi=i2b(n.iqmp),
    )


def oaep(alg):
    h = hashes.SHA1() if alg == "RSA-OAEP" else hashes.SHA256()
    return padding.OAEP(padding.MGF1(h), h, None)


def rsa_pad(alg):
    return padding.PKCS1v15() if alg == "RSA1_5" else oaep(alg)


# ---- KeyClient ----


@pytest.mark.parametrize("size", [2048, 3072, 4096])
def test_create_rsa_key_sizes(client, name, size):
    k = client.create_rsa_key(name, size=size, tags={"t": "1"})
    assert k.key_type == KeyType.rsa and len(k.key.n) * 8 == size and k.key.e == b"\x01\x00\x01"
    assert k.properties.tags == {"t": "1"} and k.properties.enabled
    assert k.properties.recovery_level == "Recoverable+Purgeable"
    assert k.key.d is None and k.key.p is None


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521", "P-256K"])
def test_create_ec_key_curves(client, name, curve):
    k = client.create_ec_key(name, curve=curve)
    assert k.key_type == KeyType.ec and k.key.crv == curve
    assert sorted(k.key_operations) == ["sign", "verify"]
    assert k.key.d is None


@pytest.mark.parametrize("size", [128, 192, 256])
def test_create_oct_key_sizes(client, name, size):
    k = client.create_oct_key(name, size=size)
    assert k.key_type == KeyType.oct and k.key.k is None


def test_create_key_generic_and_bad_parameters(client, name):
    k = client.create_key(name, KeyType.ec, curve=KeyCurveName.p_384, key_operations=["sign"])
    assert k.key_operations == ["sign"]
    with pytest.raises(HttpResponseError) as e:
        client.create_rsa_key(name + "x", size=1024)
    assert e.value.status_code == 400
    with pytest.raises(HttpResponseError) as e:
        client.create_rsa_key(name + "x", public_exponent=3)
    assert e.value.status_code == 400


@pytest.mark.skipif(HSM, reason="the cluster has HSMs")
def test_hsm_key_types_without_hsm_are_refused(client, name):
    with pytest.raises(HttpResponseError) as e:
        client.create_rsa_key(name, hardware_protected=True)
    assert e.value.status_code == 503
    with pytest.raises(ResourceNotFoundError):
        client.get_key(name)


def test_get_update_versions_and_paging(client, name):
    first = client.create_ec_key(name)
    second = client.rotate_key(name)
    assert second.properties.version != first.properties.version
    assert client.get_key(name).properties.version == second.properties.version
    assert client.get_key(name, first.properties.version).key.x == first.key.x
    updated = client.update_key_properties(
        name, first.properties.version, enabled=False, expires_on=utc(3600), tags={"a": "b"},
        key_operations=["verify"],
    )
    assert not updated.properties.enabled and updated.properties.tags == {"a": "b"}
    assert updated.key_operations == ["verify"]
    versions = list(client.list_properties_of_key_versions(name, max_page_size=1))
    assert {v.version for v in versions} == {first.properties.version, second.properties.version}
    names = [p.name for p in client.list_properties_of_keys(max_page_size=1)]
    assert name in names and len(names) == len(set(names))
    with pytest.raises(ResourceNotFoundError):
        client.get_key(name + "-missing")


def test_delete_recover_purge(client, name):
    client.create_oct_key(name)
    deleted = client.begin_delete_key(name, **FAST_POLL).result()
    assert deleted.recovery_id.endswith(f"/deletedkeys/{name}")
    assert deleted.scheduled_purge_date > deleted.deleted_date
    assert client.get_deleted_key(name).name == name
    assert name in [d.name for d in client.list_deleted_keys(max_page_size=2)]
    with pytest.raises(ResourceExistsError):
        client.create_oct_key(name)
    recovered = client.begin_recover_deleted_key(name, **FAST_POLL).result()
    assert recovered.name == name
    client.begin_delete_key(name, **FAST_POLL).result()
    client.purge_deleted_key(name)
    assert wait_until(lambda: name not in [d.name for d in client.list_deleted_keys()])
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_key(name)


def test_backup_restore(client, credential, name):
    k = client.create_rsa_key(name)
    blob = client.backup_key(name)
    with pytest.raises(ResourceExistsError):
        client.restore_key_backup(blob)
    client.begin_delete_key(name, **FAST_POLL).result()
    client.purge_deleted_key(name)
    assert wait_until(lambda: name not in [d.name for d in client.list_deleted_keys()])
    restored = client.restore_key_backup(blob)
    assert restored.id == k.id and restored.key.n == k.key.n
    digest = hashlib.sha256(b"after restore").digest()
    sig = crypto(restored, credential, remote=True).sign(SignatureAlgorithm.rs256, digest).signature
    verify_locally(public_of(k.key), "RS256", digest, sig)
    with pytest.raises(HttpResponseError) as e:
        client.restore_key_backup(b"not a backup")
    assert e.value.status_code == 400


def test_rotation_policy(client, name):
    client.create_ec_key(name)
    default = client.get_key_rotation_policy(name)
    assert [a.action for a in default.lifetime_actions] == [KeyRotationPolicyAction.notify]
    policy = KeyRotationPolicy(
        expires_in="P90D",
        lifetime_actions=[
            KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D"),
            KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry="P7D"),
        ],
    )
    got = client.update_key_rotation_policy(name, policy)
    assert got.expires_in == "P90D"
    assert {(a.action, a.time_after_create, a.time_before_expiry) for a in got.lifetime_actions} == {
        (KeyRotationPolicyAction.rotate, "P30D", None),
        (KeyRotationPolicyAction.notify, None, "P7D"),
    }
    assert got.created_on is not None and got.id.endswith(f"/keys/{name}/rotationpolicy")
    assert client.get_key_rotation_policy(name).expires_in == "P90D"
    with pytest.raises(HttpResponseError) as e:
        client.update_key_rotation_policy(
            name, KeyRotationPolicy(lifetime_actions=[
                KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="30 days")])
        )
    assert e.value.status_code == 400
    rotated = client.rotate_key(name)
    assert rotated.properties.expires_on is not None, "expiryTime applies to rotated versions"


def test_random_bytes(client):
    a, b = client.get_random_bytes(32), client.get_random_bytes(32)
    assert len(a) == 32 and a != b
    assert len(client.get_random_bytes(128)) == 128
    with pytest.raises(HttpResponseError) as e:
        client.get_random_bytes(129)
    assert e.value.status_code == 400
    with pytest.raises(ValueError):  # the SDK refuses 0 itself
        client.get_random_bytes(0)


def test_release_key_is_not_supported(client, name):
    client.create_rsa_key(name)
    with pytest.raises(HttpResponseError) as e:
        client.release_key(name, "attestation-token")
    assert e.value.status_code == 501
    assert "not supported" in str(e.value.message).lower()


def test_get_cryptography_client(client, name):
    k = client.create_ec_key(name)
    c = client.get_cryptography_client(name)
    digest = hashlib.sha256(b"x").digest()
    sig = c.sign(SignatureAlgorithm.es256, digest).signature
    verify_locally(public_of(k.key), "ES256", digest, sig)


# ---- import ----


def test_import_rsa_ec_oct(client, credential, name):
    private = rsa.generate_private_key(65537, 2048)
    imported = client.import_key(name + "-rsa", rsa_jwk(private))
    assert imported.key.n == i2b(private.public_key().public_numbers().n)
    assert imported.key.d is None
    ct = private.public_key().encrypt(b"imported", oaep("RSA-OAEP-256"))
    c = crypto(imported, credential, remote=True)
    assert c.decrypt(EncryptionAlgorithm.rsa_oaep_256, ct).plaintext == b"imported"

    ec_private = ec.generate_private_key(ec.SECP256K1())
    nums = ec_private.private_numbers()
    jwk = JsonWebKey(kty="EC", crv="P-256K", d=i2b(nums.private_value, 32),
                     x=i2b(nums.public_numbers.x, 32), y=i2b(nums.public_numbers.y, 32))
    ek = client.import_key(name + "-ec", jwk)
    digest = hashlib.sha256(b"k1").digest()
    sig = crypto(ek, credential, remote=True).sign(SignatureAlgorithm.es256_k, digest).signature
    verify_locally(ec_private.public_key(), "ES256K", digest, sig)

    ok = client.import_key(name + "-oct", JsonWebKey(kty="oct", k=os.urandom(32)))
    assert ok.key_type == KeyType.oct and ok.key.k is None

    with pytest.raises(HttpResponseError) as e:
        client.import_key(name + "-bad", JsonWebKey(kty="RSA", n=b"\x01", e=b"\x01\x00\x01"))
    assert e.value.status_code == 400


# ---- CryptographyClient: signatures ----


RSA_SIGN = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]


def sign_and_check(client, credential, key, algs):
    public = public_of(key.key)
    for alg in algs:
        digest = SIGN_DIGEST[alg](b"payload " + alg.encode()).digest()
        for remote in (False, True):
            c = crypto(key, credential, remote=remote)
            result = c.sign(SignatureAlgorithm(alg), digest)
            assert result.key_id == key.id
            verify_locally(public, alg, digest, result.signature)
            assert c.verify(SignatureAlgorithm(alg), digest, result.signature).is_valid
            bad = bytes([result.signature[0] ^ 1]) + result.signature[1:]
            assert not c.verify(SignatureAlgorithm(alg), digest, bad).is_valid


def test_rsa_signatures(client, credential, name):
    sign_and_check(client, credential, client.create_rsa_key(name), RSA_SIGN)


@pytest.mark.parametrize("curve", list(CURVES))
def test_ec_signatures(client, credential, name, curve):
    sign_and_check(client, credential, client.create_ec_key(name, curve=curve), [CURVES[curve][1]])


# ---- CryptographyClient: RSA encryption and wrapping ----


RSA_ENC = ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"]


def rsa_roundtrips(client, credential, key, private=None):
    public = public_of(key.key)
    for alg in RSA_ENC:
        for remote in (False, True):
            c = crypto(key, credential, remote=remote)
            # Encrypted by the SDK (locally or by Coffer), decrypted by Coffer.
            ct = c.encrypt(EncryptionAlgorithm(alg), b"plain " + alg.encode()).ciphertext
            assert c.decrypt(EncryptionAlgorithm(alg), ct).plaintext == b"plain " + alg.encode()
            wrapped = c.wrap_key(KeyWrapAlgorithm(alg), b"k" * 32).encrypted_key
            assert c.unwrap_key(KeyWrapAlgorithm(alg), wrapped).key == b"k" * 32
            if private is not None:
                assert private.decrypt(ct, rsa_pad(alg)) == b"plain " + alg.encode()
                assert private.decrypt(wrapped, rsa_pad(alg)) == b"k" * 32
        # Encrypted locally with `cryptography`, decrypted by Coffer.
        ct = public.encrypt(b"from cryptography", rsa_pad(alg))
        c = crypto(key, credential, remote=True)
        assert c.decrypt(EncryptionAlgorithm(alg), ct).plaintext == b"from cryptography"


def test_rsa_encrypt_decrypt_wrap_unwrap(client, credential, name):
    private = rsa.generate_private_key(65537, 2048)
    key = client.import_key(name, rsa_jwk(private))
    rsa_roundtrips(client, credential, key, private)


# ---- CryptographyClient: AES ----


SIZES = {128: ("A128GCM", "A128CBC", "A128CBCPAD", "A128KW"),
         192: ("A192GCM", "A192CBC", "A192CBCPAD", "A192KW"),
         256: ("A256GCM", "A256CBC", "A256CBCPAD", "A256KW")}


def aes_roundtrips(credential, key, raw):
    c = crypto(key, credential, remote=True)
    bits = len(raw) * 8 if raw else None
    size = bits or 256
    gcm, cbc, cbcpad, kw = SIZES[size]
    # GCM: Coffer encrypts, `cryptography` decrypts, and the reverse.
    r = c.encrypt(EncryptionAlgorithm(gcm), b"gcm text", additional_authenticated_data=b"hdr")
    assert len(r.iv) == 12 and len(r.tag) == 16
    assert c.decrypt(EncryptionAlgorithm(gcm), r.ciphertext, iv=r.iv, authentication_tag=r.tag,
                     additional_authenticated_data=b"hdr").plaintext == b"gcm text"
    with pytest.raises(HttpResponseError):
        c.decrypt(EncryptionAlgorithm(gcm), r.ciphertext, iv=r.iv, authentication_tag=r.tag,
                  additional_authenticated_data=b"other")
    if raw:
        assert AESGCM(raw).decrypt(r.iv, r.ciphertext + r.tag, b"hdr") == b"gcm text"
        iv = os.urandom(12)
        sealed = AESGCM(raw).encrypt(iv, b"local gcm", b"a")
        assert c.decrypt(EncryptionAlgorithm(gcm), sealed[:-16], iv=iv, authentication_tag=sealed[-16:],
                         additional_authenticated_data=b"a").plaintext == b"local gcm"
    # CBC (no padding): multiples of 16.
    iv = os.urandom(16)
    r = c.encrypt(EncryptionAlgorithm(cbc), b"0123456789abcdef" * 2, iv=iv)
    assert r.iv == iv
    assert c.decrypt(EncryptionAlgorithm(cbc), r.ciphertext, iv=iv).plaintext == b"0123456789abcdef" * 2
    if raw:
        d = Cipher(algorithms.AES(raw), modes.CBC(iv)).decryptor()
        assert d.update(r.ciphertext) + d.finalize() == b"0123456789abcdef" * 2
    # CBCPAD: any length, PKCS#7.
    r = c.encrypt(EncryptionAlgorithm(cbcpad), b"odd length text", iv=iv)
    assert c.decrypt(EncryptionAlgorithm(cbcpad), r.ciphertext, iv=r.iv).plaintext == b"odd length text"
    if raw:
        d = Cipher(algorithms.AES(raw), modes.CBC(r.iv)).decryptor()
        u = sympad.PKCS7(128).unpadder()
        assert u.update(d.update(r.ciphertext) + d.finalize()) + u.finalize() == b"odd length text"
        p = sympad.PKCS7(128).padder()
        e = Cipher(algorithms.AES(raw), modes.CBC(iv)).encryptor()
        ct = e.update(p.update(b"local cbc") + p.finalize()) + e.finalize()
        assert c.decrypt(EncryptionAlgorithm(cbcpad), ct, iv=iv).plaintext == b"local cbc"
    # Key wrap (RFC 3394) and wrap with padding (RFC 5649).
    cek = os.urandom(32)
    w = c.wrap_key(KeyWrapAlgorithm(kw), cek).encrypted_key
    assert c.unwrap_key(KeyWrapAlgorithm(kw), w).key == cek
    wp = c.wrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap_pad, b"thirteen byte").encrypted_key
    assert c.unwrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap_pad, wp).key == b"thirteen byte"
    if raw:
        assert aes_key_unwrap(raw, w) == cek
        assert aes_key_unwrap_with_padding(raw, wp) == b"thirteen byte"
        assert c.unwrap_key(KeyWrapAlgorithm(kw), aes_key_wrap(raw, cek)).key == cek
        assert c.unwrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap_pad,
                            aes_key_wrap_with_padding(raw, b"abc")).key == b"abc"


@pytest.mark.parametrize("size", [128, 192, 256])
def test_aes_algorithms_with_known_key(client, credential, name, size):
    raw = os.urandom(size // 8)
    key = client.import_key(name, JsonWebKey(kty="oct", k=raw))
    aes_roundtrips(credential, key, raw)


def test_aes_with_generated_key(client, credential, name):
    key = client.create_oct_key(name, size=256)
    aes_roundtrips(credential, key, None)


# ---- enforcement ----


def test_bad_inputs_are_refused(client, credential, name):
    rsa_key = client.create_rsa_key(name + "-r", key_operations=["sign", "verify"])
    ec_key = client.create_ec_key(name + "-e", curve="P-384")
    c = crypto(ec_key, credential, remote=True)
    for alg, digest in (("ES256", hashlib.sha256(b"x").digest()),    # wrong alg for the curve
                        ("RS256", hashlib.sha256(b"x").digest()),    # wrong alg for the key type
                        ("ES384", hashlib.sha256(b"x").digest())):   # wrong digest length
        with pytest.raises(HttpResponseError) as e:
            c.sign(SignatureAlgorithm(alg), digest)
        assert e.value.status_code == 400 and e.value.error.code == "BadParameter"
    rc = crypto(rsa_key, credential, remote=True)
    with pytest.raises(HttpResponseError) as e:
        rc.encrypt(EncryptionAlgorithm.rsa_oaep, b"x")
    assert e.value.status_code == 403 and e.value.error.code == "Forbidden"
    client.update_key_properties(name + "-e", enabled=False)
    with pytest.raises(HttpResponseError) as e:
        c.sign(SignatureAlgorithm.es384, hashlib.sha384(b"x").digest())
    assert e.value.status_code == 403 and e.value.error.code == "Forbidden"
    expired = client.create_ec_key(name + "-x", expires_on=utc(-60))
    xc = crypto(expired, credential, remote=True)
    with pytest.raises(HttpResponseError) as e:
        xc.sign(SignatureAlgorithm.es256, hashlib.sha256(b"x").digest())
    assert e.value.status_code == 403


# ---- HSM tier ----


@needs_hsm
def test_hsm_rsa(client, credential, name):
    key = client.create_rsa_key(name, hardware_protected=True)
    assert key.key_type == KeyType.rsa_hsm
    sign_and_check(client, credential, key, RSA_SIGN)
    rsa_roundtrips(client, credential, key)
    private = rsa.generate_private_key(65537, 2048)
    imported = client.import_key(name + "-imp", rsa_jwk(private), hardware_protected=True)
    assert imported.key_type == KeyType.rsa_hsm
    rsa_roundtrips(client, credential, imported, private)


@needs_hsm
@pytest.mark.parametrize("curve", list(CURVES))
def test_hsm_ec(client, credential, name, curve):
    key = client.create_ec_key(name, curve=curve, hardware_protected=True)
    assert key.key_type == KeyType.ec_hsm
    sign_and_check(client, credential, key, [CURVES[curve][1]])


@needs_hsm
@pytest.mark.parametrize("size", [128, 192, 256])
def test_hsm_oct(client, credential, name, size):
    raw = os.urandom(size // 8)
    key = client.import_key(name, JsonWebKey(kty="oct-HSM", k=raw))
    assert key.key_type == KeyType.oct_hsm
    aes_roundtrips(credential, key, raw)
    generated = client.create_oct_key(name + "-g", size=256, hardware_protected=True)
    aes_roundtrips(credential, generated, None)
