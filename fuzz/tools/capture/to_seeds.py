"""Turns captured SDK requests into json_bodies seeds: `route key version`
header line, then the body exactly as the SDK sent it. Paths map to the
harness's routes; the key and version words use the fixture's names."""

import hashlib
import json
import re
import sys

ROUTES = [
    (r"^PUT /secrets/[^/]+$", "set-secret"),
    (r"^PATCH /secrets/[^/]+/[^/]*$", "update-secret"),
    (r"^POST /secrets/restore$", "restore-secret"),
    (r"^POST /keys/[^/]+/create$", "create-key"),
    (r"^PUT /keys/[^/]+/rotationpolicy$", "rotation-policy"),
    (r"^PUT /keys/[^/]+$", "import-key"),
    (r"^PATCH /keys/[^/]+/[^/]*$", "update-key"),
    (r"^POST /keys/restore$", "restore-key"),
    (r"^POST /rng$", "rng"),
    (r"^POST /keys/[^/]+/[^/]*/(encrypt|decrypt|wrapkey|unwrapkey|sign|verify)$", None),
]


def key_for(body):
    """A fixture key that fits the algorithm, so operations can succeed."""
    alg = body.get("alg", "") if isinstance(body, dict) else ""
    if alg.startswith(("RSA", "RS", "PS")):
        return "rsa"
    if alg in ("ES384",):
        return "ec384"
    if alg in ("ES512",):
        return "ec521"
    if alg in ("ES256K",):
        return "ec256k"
    if alg.startswith("ES"):
        return "ec"
    if alg.startswith(("A128", "CKM")):
        return "oct128"
    if alg.startswith("A192"):
        return "oct192"
    return "oct"


def main(capture, out):
    jwk_out = out.rstrip("/").rsplit("/", 1)[0] + "/jwk_import"
    n = 0
    with open(capture, encoding="utf-8") as f:
        for line in f:
            req = json.loads(line)
            path = req["path"]
            what = f"{req['method']} {path}"
            for pattern, route in ROUTES:
                m = re.match(pattern, what)
                if not m:
                    continue
                route = route or m.group(1)
                try:
                    body = json.loads(req["body"])
                except ValueError:
                    body = None
                key = {"create-key": "new", "import-key": "new",
                       "rotation-policy": "ec"}.get(route) or key_for(body)
                header = f"{route} {key} latest"
                data = (header + "\n" + req["body"]).encode()
                name = "sdk-" + hashlib.sha1(data).hexdigest()[:16]
                with open(f"{out}/{name}", "wb") as s:
                    s.write(data)
                n += 1
                # The JWK of an import is a jwk_import seed too.
                if route == "import-key" and isinstance(body, dict) and "key" in body:
                    jwk = json.dumps(body["key"]).encode()
                    name = "sdk-" + hashlib.sha1(jwk).hexdigest()[:16]
                    with open(f"{jwk_out}/{name}", "wb") as s:
                        s.write(jwk)
                break
    print(f"{n} seeds written to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
