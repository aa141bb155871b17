"""Key Vault RBAC through the unchanged azure-keyvault-administration SDK.

An administrator application (Key Vault Administrator, granted once with the
root token: break-glass) manages roles with ``KeyVaultAccessControlClient``;
applications holding built-in or custom roles are allowed exactly what those
roles say, on every node.

Environment:
    COFFER_NODE_URLS  comma-separated https://127.0.0.1:PORT of the nodes (3)
    COFFER_TOKEN      root token
    COFFER_CACERT     the cluster CA (PEM)
"""

import os
import time
import uuid

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.administration import (
    KeyVaultAccessControlClient,
    KeyVaultDataAction,
    KeyVaultPermission,
    KeyVaultRoleScope,
)
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient

NODES = [u for u in os.environ.get("COFFER_NODE_URLS", "").split(",") if u]
TOKEN = os.environ.get("COFFER_TOKEN")
CACERT = os.environ.get("COFFER_CACERT")

pytestmark = pytest.mark.skipif(
    len(NODES) < 3 or not TOKEN,
    reason="set COFFER_NODE_URLS (three nodes) and COFFER_TOKEN",
)

ADMINISTRATOR = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


class RootToken:
    """The root token as an azure-core credential (break-glass bootstrap)."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken(TOKEN, int(time.time()) + 3600)


def sdk(cls, credential, node=0):
    return cls(NODES[node], credential, verify_challenge_resource=False, connection_verify=CACERT)


def admin(method, path, body=None):
    r = requests.request(
        method,
        f"{NODES[0]}/v1/sys/identity{path}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json=body,
        verify=CACERT,
        timeout=30,
    )
    assert r.ok, f"{method} {path}: {r.status_code} {r.text}"
    return r.json() if r.content else None


class App:
    """An application principal with a client secret and its credential."""

    def __init__(self, tenant_id, prefix):
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        app = admin("POST", "/apps", {"name": self.name})
        self.object_id = app["object_id"]
        secret = admin("POST", f"/apps/{self.name}/secrets", {})["secret"]
        self.credential = ClientSecretCredential(
            tenant_id,
            app["app"]["client_id"],
            secret,
            authority=NODES[0],
            disable_instance_discovery=True,
            connection_verify=CACERT,
        )


@pytest.fixture(scope="module")
def tenant_id():
    return admin("GET", "/tenant")["id"]


@pytest.fixture(scope="module")
def administrator(tenant_id):
    """An app holding Key Vault Administrator, granted with the root token."""
    app = App(tenant_id, "kv-admin")
    root = sdk(KeyVaultAccessControlClient, RootToken())
    a = root.create_role_assignment(KeyVaultRoleScope.GLOBAL, ADMINISTRATOR, app.object_id)
    assert a.properties.principal_id == app.object_id
    return app


@pytest.fixture(scope="module")
def access(administrator):
    return sdk(KeyVaultAccessControlClient, administrator.credential)


def forbidden(call):
    with pytest.raises(HttpResponseError) as e:
        call()
    assert e.value.status_code == 403, e.value
    assert "ForbiddenByRbac" in str(e.value.message) or "Forbidden" in str(e.value), e.value
    return e.value


def test_built_in_roles_are_listed_with_their_real_ids(access):
    roles = {d.name: d for d in access.list_role_definitions(KeyVaultRoleScope.GLOBAL)}
    assert roles[SECRETS_USER].role_name == "Key Vault Secrets User"
    assert roles[ADMINISTRATOR].role_type == "AKVBuiltInRole"
    assert "Microsoft.KeyVault/vaults/secrets/getSecret/action" in roles[SECRETS_USER].permissions[0].data_actions
    assert roles["a290e904-7015-4bba-90c8-60543313cdb4"].role_name == "Managed HSM Administrator"


def test_custom_role_assign_list_with_filters_and_delete(tenant_id, access, administrator):
    reader = App(tenant_id, "custom")
    role_id = uuid.uuid4()
    definition = access.set_role_definition(
        KeyVaultRoleScope.GLOBAL,
        name=role_id,
        role_name=f"secret-metadata-{role_id.hex[:6]}",
        description="reads secret metadata and values, nothing else",
        permissions=[
            KeyVaultPermission(
                data_actions=["Microsoft.KeyVault/vaults/secrets/*"],
                not_data_actions=[
                    "Microsoft.KeyVault/vaults/secrets/setSecret/action",
                    "Microsoft.KeyVault/vaults/secrets/delete",
                    "Microsoft.KeyVault/vaults/secrets/purge/action",
                ],
            )
        ],
    )
    assert definition.name == str(role_id)
    assert definition.role_type == "CustomRole"
    got = access.get_role_definition(KeyVaultRoleScope.GLOBAL, role_id)
    assert got.permissions[0].not_data_actions[0].endswith("setSecret/action")

    assignment = access.create_role_assignment("/secrets", definition.id, reader.object_id)
    assert assignment.properties.scope == "/secrets"
    mine = list(
        access.list_role_assignments(
            KeyVaultRoleScope.GLOBAL, filter=f"principalId eq '{reader.object_id}'"
        )
    )
    assert [a.name for a in mine] == [assignment.name]
    # atScope() at the vault root: only assignments at / (the administrator's).
    at_root = list(access.list_role_assignments(KeyVaultRoleScope.GLOBAL, filter="atScope()"))
    assert administrator.object_id in {a.properties.principal_id for a in at_root}
    assert assignment.name not in {a.name for a in at_root}
    at_secrets = list(access.list_role_assignments("/secrets", filter="atScope()"))
    assert assignment.name in {a.name for a in at_secrets}

    name = f"custom-{uuid.uuid4().hex[:8]}"
    sdk(SecretClient, administrator.credential).set_secret(name, "x" * 20000)
    client = sdk(SecretClient, reader.credential, node=1)
    assert client.get_secret(name).value == "x" * 20000
    forbidden(lambda: client.set_secret(name, "overwritten"))
    forbidden(lambda: client.begin_delete_secret(name))

    # A role still assigned cannot be deleted; after unassigning it can.
    with pytest.raises(HttpResponseError) as e:
        access.delete_role_definition(KeyVaultRoleScope.GLOBAL, role_id)
    assert e.value.status_code == 409
    access.delete_role_assignment("/secrets", assignment.name)
    access.delete_role_definition(KeyVaultRoleScope.GLOBAL, role_id)
    forbidden(lambda: sdk(SecretClient, reader.credential, node=2).get_secret(name))


def test_secrets_user_reads_but_cannot_set(tenant_id, access, administrator):
    name = f"su-{uuid.uuid4().hex[:8]}"
    sdk(SecretClient, administrator.credential).set_secret(name, "opened")
    user = App(tenant_id, "secrets-user")
    access.create_role_assignment(KeyVaultRoleScope.GLOBAL, SECRETS_USER, user.object_id)
    client = sdk(SecretClient, user.credential, node=2)
    assert client.get_secret(name).value == "opened"
    err = forbidden(lambda: client.set_secret(name, "changed"))
    assert "secrets/setSecret/action" in str(err)
    assert sdk(SecretClient, administrator.credential).get_secret(name).value == "opened"
    # No keys at all.
    forbidden(lambda: sdk(KeyClient, user.credential).get_key("anything"))


def test_crypto_user_signs_but_cannot_delete(tenant_id, access, administrator):
    name = f"cu-{uuid.uuid4().hex[:8]}"
    key = sdk(KeyClient, administrator.credential).create_ec_key(name, curve="P-256")
    user = App(tenant_id, "crypto-user")
    access.create_role_assignment(f"/keys/{name}", CRYPTO_USER, user.object_id)
    crypto = CryptographyClient(
        key.id, user.credential, verify_challenge_resource=False, connection_verify=CACERT
    )
    digest = bytes(range(32))
    signed = crypto.sign(SignatureAlgorithm.es256, digest)
    assert crypto.verify(SignatureAlgorithm.es256, digest, signed.signature).is_valid
    keys = sdk(KeyClient, user.credential, node=1)
    forbidden(lambda: keys.begin_delete_key(name))
    # The assignment is on this key only.
    other = f"cu-other-{uuid.uuid4().hex[:8]}"
    sdk(KeyClient, administrator.credential).create_ec_key(other, curve="P-256")
    forbidden(lambda: keys.get_key(other))
    assert keys.get_key(name).name == name


def test_revoking_through_node_1_denies_the_next_request_on_node_3(tenant_id, access, administrator):
    name = f"rv-{uuid.uuid4().hex[:8]}"
    sdk(SecretClient, administrator.credential).set_secret(name, "v")
    user = App(tenant_id, "revoked")
    a = access.create_role_assignment(KeyVaultRoleScope.GLOBAL, SECRETS_USER, user.object_id)
    on_node_3 = sdk(SecretClient, user.credential, node=2)
    assert on_node_3.get_secret(name).value == "v"
    sdk(KeyVaultAccessControlClient, administrator.credential, node=0).delete_role_assignment(
        KeyVaultRoleScope.GLOBAL, a.name
    )
    forbidden(lambda: on_node_3.get_secret(name))


def test_separation_of_duties(tenant_id, access):
    officer = App(tenant_id, "officer")
    access.create_role_assignment(KeyVaultRoleScope.GLOBAL, SECRETS_OFFICER, officer.object_id)
    as_officer = sdk(KeyVaultAccessControlClient, officer.credential, node=1)
    victim = App(tenant_id, "victim")
    # A Secrets Officer cannot hand out roles, not even the ones it holds.
    forbidden(
        lambda: as_officer.create_role_assignment(
            KeyVaultRoleScope.GLOBAL, SECRETS_USER, victim.object_id
        )
    )
    forbidden(lambda: list(as_officer.list_role_assignments(KeyVaultRoleScope.GLOBAL)))
