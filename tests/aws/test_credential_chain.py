"""The AWS credential chain and endpoint resolution, each source compared with botocore's answer
on the same files and environment (botocore is the oracle: same method name, same access key,
same secret and token by SHA-256, same expiration): environment keys, static keys in the
credentials and config files, credential_process (split like shlex, no shell), AssumeRole with
source_profile / credential_source against moto's STS (duration_seconds honoured), web identity
from the profile and from the environment, SSO with an sso-session and legacy, from a token cache
like `aws sso login` writes and a local portal; the chain's order where sources overlap;
mfa_serial refused; refresh of expiring keys; AWS_ENDPOINT_URL[_SERVICE] and profile endpoints.
argv[1]: the aws_creds_probe helper."""
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from awstest import Moto, TempHome, clean_env, skip  # noqa: E402

failures = []



def check(cond, what, evidence=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
        print(evidence)


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def quarry(probe, env, *args):
    p = subprocess.run([probe, *args], env=env, capture_output=True, text=True, timeout=30)
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    return p.returncode, lines, p.stderr


def boto(env, profile="", what="creds", service=None):
    """botocore's answer in this process, with os.environ swapped for env while it resolves."""
    import botocore.credentials
    import botocore.session
    import botocore.tokens
    # botocore fixes the SSO cache directory from ~ when it is imported: point it at env's HOME.
    cache = os.path.join(env["HOME"], ".aws", "sso", "cache")
    botocore.credentials.SSOProvider._SSO_TOKEN_CACHE_DIR = cache
    botocore.tokens.SSOTokenProvider._SSO_TOKEN_CACHE_DIR = cache
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        s = botocore.session.Session(profile=profile or None)
        if what == "endpoint":
            url = s.create_client(service, region_name="us-east-1").meta.endpoint_url
            return {"endpoint": "" if url.endswith("amazonaws.com") else url}
        c = s.get_credentials()
        f = c.get_frozen_credentials()
        exp = getattr(c, "_expiry_time", None)
        h = lambda v: hashlib.sha256(v.encode()).hexdigest() if v else ""  # noqa: E731
        return {"method": c.method, "access_key": f.access_key, "secret_sha256": h(f.secret_key),
                "token_sha256": h(f.token), "expiration": int(exp.timestamp()) if exp else 0}
    except Exception as e:  # the comparison shows it
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def same(probe, env, what, profile="", temporary=False, exact=True):
    """quarry's answer equals botocore's: exact (static keys, process, SSO) or, for STS (moto makes
    new keys per call), the same method with temporary keys expiring at the same time (±5 s)."""
    rc, out, err = quarry(probe, env, "creds", profile or "-")
    b = boto(env, profile)
    q = out[0] if out else {}
    if exact:
        ok = rc == 0 and all(q.get(k) == b.get(k) for k in ("method", "access_key", "secret_sha256", "token_sha256",
                                                             "expiration"))
    else:
        ok = (rc == 0 and q.get("method") == b.get("method") and q.get("token_sha256") and b.get("token_sha256")
              and abs(q.get("expiration", 0) - b.get("expiration", -99)) <= 5)
    if temporary:
        ok = ok and q.get("expiration", 0) > time.time()
    check(ok, f"{what}: quarry and botocore agree ({q.get('method')})", f"quarry rc={rc} {q} {err}\nbotocore {b}")
    return q, b


class Portal:
    """A fake IAM Identity Center portal: GET /federation/credentials with the bearer token."""

    def __init__(self, token, creds):
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urlsplit(self.path)
                q = parse_qs(u.query)
                ok = (u.path == "/federation/credentials" and self.headers.get("x-amz-sso_bearer_token") == token
                      and q.get("account_id") == ["123456789012"] and q.get("role_name") == ["Trainer"])
                body = json.dumps({"roleCredentials": creds} if ok else {"message": "bad request"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()


def write(path, text, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        skip("aws_creds_probe not built")
    probe = sys.argv[1]
    try:
        import botocore  # noqa: F401
    except ImportError:
        skip("botocore not installed in the .venv")
    moto = Moto()
    open_moto = None
    try:
        open_moto = Moto(auth=False)
        with TempHome() as home:
            body(probe, moto, open_moto, home)
    finally:
        moto.stop()
        if open_moto:
            open_moto.stop()
    if failures:
        print(f"test_credential_chain: {len(failures)} check(s) failed")
        return 1
    print("test_credential_chain: all checks passed")
    return 0


def body(probe, moto, open_moto, home):
    cred, conf = os.path.join(home, "credentials"), os.path.join(home, "config")
    files = dict(AWS_SHARED_CREDENTIALS_FILE=cred, AWS_CONFIG_FILE=conf)
    exp = int(time.time()) + 3600
    # The roles, in moto's IAM (moto checks assumed-role keys against them), allowed everything.
    import boto3
    iam = boto3.client("iam", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id=moto.key_id,
                       aws_secret_access_key=moto.secret)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:*"}]})
    for name in ("trainer", "second", "oidc"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        iam.put_role_policy(RoleName=name, PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))

    # A fake credential_process: its answer depends on how its command line was split.
    helper = os.path.join(home, "bin dir", "signing helper")
    write(helper, "#!/bin/sh\n"
          f"echo call >> '{home}/calls'\n"
          "printf '{\"Version\": 1, \"AccessKeyId\": \"AKIAPROC%s\", \"SecretAccessKey\": \"%s|%s\", "
          f"\"SessionToken\": \"proc-token\", \"Expiration\": \"%s\"}}\\n' \"$#\" \"$2\" \"$3\" \"$EXPIRATION\"\n",
          0o700)
    write(cred, "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = default/secret\n"
          "[both]\naws_access_key_id = AKIABOTH\naws_secret_access_key = both-secret\n"
          f"[moto]\naws_access_key_id = {moto.key_id}\naws_secret_access_key = {moto.secret}\n")
    write(conf, f"""[default]
region = us-east-1
[profile conf-only]
aws_access_key_id = AKIACONF
aws_secret_access_key = conf+secret
aws_session_token = conf-token
[profile proc]
credential_process = "{helper}" --label 'a b' "c'd"
[profile both]
credential_process = "{helper}" x
[profile role]
role_arn = arn:aws:iam::123456789012:role/trainer
source_profile = moto
role_session_name = quarry-test
external_id = ext-42
duration_seconds = 1800
region = us-east-1
[profile role-chain]
role_arn = arn:aws:iam::123456789012:role/second
source_profile = role
region = us-east-1
[profile role-env]
role_arn = arn:aws:iam::123456789012:role/trainer
credential_source = Environment
region = us-east-1
[profile role-mfa]
role_arn = arn:aws:iam::123456789012:role/trainer
source_profile = moto
mfa_serial = arn:aws:iam::123456789012:mfa/user
[profile wif]
role_arn = arn:aws:iam::123456789012:role/oidc
web_identity_token_file = {home}/token
role_session_name = ci
region = us-east-1
[profile sso-new]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Trainer
[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
sso_registration_scopes = sso:account:access
[profile sso-legacy]
sso_start_url = https://legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = Trainer
[profile ep]
endpoint_url = http://profile-global:1
services = ep-svc
[services ep-svc]
s3 =
  endpoint_url = http://profile-s3:2
""")
    write(os.path.join(home, "token"), "eyJhbGciOiJSUzI1NiJ9.fake-oidc-token.sig\n")

    # 1. environment keys; --profile makes both skip them; static keys in either file.
    env = clean_env(home, AWS_ACCESS_KEY_ID="AKIAENV", AWS_SECRET_ACCESS_KEY="env-secret", AWS_SESSION_TOKEN="tok",
                    **files)
    same(probe, env, "environment keys")
    same(probe, env, "--profile skips the environment", profile="conf-only")
    env = clean_env(home, **files)
    same(probe, env, "static keys in the credentials file [default]")
    same(probe, clean_env(home, AWS_PROFILE="conf-only", **files), "static keys in the config file (AWS_PROFILE)")
    same(probe, env, "the credentials file's keys before credential_process", profile="both")

    # 2. credential_process, split like shlex: 3 arguments, "a b" and "c'd" intact; Expiration honoured.
    penv = clean_env(home, EXPIRATION=iso(exp), **files)
    q, _ = same(probe, penv, "credential_process", profile="proc", temporary=True)
    check(q.get("access_key") == "AKIAPROC3" and q.get("expiration") == exp,
          "credential_process got 3 arguments and its Expiration", str(q))
    # Expiring within the margin: a refresh runs the process again; far from it, nothing happens.
    open(os.path.join(home, "calls"), "w").close()
    penv_soon = clean_env(home, EXPIRATION=iso(int(time.time()) + 120), **files)
    rc, out, err = quarry(probe, penv_soon, "refresh", "300", "proc")
    calls = open(os.path.join(home, "calls")).read().count("call")
    check(rc == 0 and out and out[0].get("refreshed") == 1 and calls == 2,
          "keys expiring within the margin are fetched again", f"{rc} {out} {err} calls={calls}")
    rc, out, err = quarry(probe, penv, "refresh", "300", "proc")
    check(rc == 0 and out and out[0].get("refreshed") == 0, "keys far from expiry are kept", f"{rc} {out} {err}")
    bad = clean_env(home, EXPIRATION="soon", **files)
    rc, out, err = quarry(probe, bad, "creds", "proc")
    check(rc == 1 and "Expiration" in err, "an unreadable Expiration is an error", err)

    # 3. AssumeRole through moto's STS (signed with the source profile's keys, checked by moto).
    sts = clean_env(home, AWS_ENDPOINT_URL_STS=moto.url, **files)
    q, b = same(probe, sts, "AssumeRole with source_profile", profile="role", temporary=True, exact=False)
    check(abs(q.get("expiration", 0) - time.time() - 1800) < 30, "duration_seconds = 1800 was sent", str(q))
    same(probe, sts, "AssumeRole chained through a role profile", profile="role-chain", temporary=True, exact=False)
    envsrc = clean_env(home, AWS_ENDPOINT_URL_STS=moto.url, AWS_ACCESS_KEY_ID=moto.key_id,
                       AWS_SECRET_ACCESS_KEY=moto.secret, AWS_REGION="us-east-1", **files)
    same(probe, envsrc, "AssumeRole with credential_source = Environment", profile="role-env", temporary=True,
         exact=False)
    rc, out, err = quarry(probe, sts, "creds", "role-mfa")
    check(rc == 1 and "mfa_serial" in err and "role-mfa" in err, "mfa_serial is refused with a clear message", err)
    wrong = clean_env(home, AWS_ENDPOINT_URL_STS=moto.url, **files)
    write(cred + ".bad", f"[moto]\naws_access_key_id = {moto.key_id}\naws_secret_access_key = wrong\n")
    wrong["AWS_SHARED_CREDENTIALS_FILE"] = cred + ".bad"
    rc, out, err = quarry(probe, wrong, "creds", "role")
    check(rc == 1 and "AssumeRole" in err and "wrong" not in err, "a bad source key is a clear STS error", err)

    # 4. Web identity, from the profile and from the environment (an unsigned call: moto without auth).
    sts = clean_env(home, AWS_ENDPOINT_URL_STS=open_moto.url, **files)
    same(probe, sts, "AssumeRoleWithWebIdentity (profile)", profile="wif", temporary=True, exact=False)
    wenv = clean_env(home, AWS_ENDPOINT_URL_STS=open_moto.url, AWS_WEB_IDENTITY_TOKEN_FILE=os.path.join(home, "token"),
                     AWS_ROLE_ARN="arn:aws:iam::123456789012:role/oidc", AWS_REGION="us-east-1", **files)
    same(probe, wenv, "AssumeRoleWithWebIdentity (environment)", temporary=True, exact=False)

    # 5. SSO: the token `aws sso login` caches, then the portal's GetRoleCredentials.
    token = "sso-access-token-1"
    role_exp_ms = (int(time.time()) + 2400) * 1000
    portal = Portal(token, {"accessKeyId": "ASIASSO", "secretAccessKey": "sso/secret", "sessionToken": "sso-tok",
                            "expiration": role_exp_ms})
    try:
        cache = os.path.join(home, ".aws", "sso", "cache")
        for key, start in (("corp", "https://corp.awsapps.com/start"),
                           ("https://legacy.awsapps.com/start", "https://legacy.awsapps.com/start")):
            write(os.path.join(cache, hashlib.sha1(key.encode()).hexdigest() + ".json"), json.dumps(
                {"startUrl": start, "region": "us-east-1", "accessToken": token, "expiresAt": iso(exp)}))
        senv = clean_env(home, AWS_ENDPOINT_URL_SSO=portal.url, **files)
        q, _ = same(probe, senv, "SSO with an sso-session", profile="sso-new", temporary=True)
        check(q.get("access_key") == "ASIASSO" and q.get("expiration") == role_exp_ms // 1000, "SSO role keys", str(q))
        same(probe, senv, "legacy SSO profile", profile="sso-legacy", temporary=True)
        write(os.path.join(cache, hashlib.sha1(b"corp").hexdigest() + ".json"), json.dumps(
            {"startUrl": "x", "region": "us-east-1", "accessToken": token, "expiresAt": iso(time.time() - 60)}))
        rc, out, err = quarry(probe, senv, "creds", "sso-new")
        check(rc == 1 and "aws sso login" in err and token not in err, "an expired SSO token says aws sso login", err)
    finally:
        portal.stop()

    # 5b. quarry upload with keys from a credential_process that expire within the refresh margin:
    #     they are fetched again before each file and part (the upload outlives them), and the
    #     endpoint comes from AWS_ENDPOINT_URL_S3 alone.
    q = os.environ.get("QUARRY_BIN")
    if q and os.access(q, os.X_OK):
        moto.s3.create_bucket(Bucket="chain-bkt")
        mhelper = os.path.join(home, "moto-helper")
        write(mhelper, "#!/bin/sh\n"
              f"echo call >> '{home}/upload-calls'\n"
              f"echo '{{\"Version\": 1, \"AccessKeyId\": \"{moto.key_id}\", \"SecretAccessKey\": \"{moto.secret}\", "
              f"\"Expiration\": \"{iso(int(time.time()) + 120)}\"}}'\n", 0o700)
        with open(conf, "a") as f:
            f.write(f"[profile upload]\ncredential_process = {mhelper}\nregion = us-east-1\n")
        src = os.path.join(home, "export")
        data = {"a.json": b"{}", "b.bin": os.urandom(11 * 1024 * 1024)}
        for rel, blob in data.items():
            write(os.path.join(src, rel), "")
            with open(os.path.join(src, rel), "wb") as f:
                f.write(blob)
        uenv = clean_env(home, AWS_ENDPOINT_URL_S3=moto.url, AWS_PROFILE="upload", **files)
        p = subprocess.run([q, "upload", "--force", "--quiet", "--part-size", "5MiB", "--jobs", "2", src,
                            "s3://chain-bkt/run/"], env=uenv, capture_output=True, text=True, timeout=60)
        calls = open(os.path.join(home, "upload-calls")).read().count("call")
        got = {rel: moto.s3.get_object(Bucket="chain-bkt", Key="run/" + rel)["Body"].read() for rel in data} \
            if p.returncode == 0 else {}
        check(p.returncode == 0 and got == data and calls >= 5,
              f"an upload refreshes expiring keys ({calls} credential_process runs for 2 files, 3 parts)",
              p.stdout + p.stderr)
        check(moto.secret not in p.stdout + p.stderr, "the upload prints no secret")
        p = subprocess.run([q, "upload", "--force", "--quiet", src, "s3://chain-bkt/run/"],
                           env=clean_env(home, AWS_ENDPOINT_URL_S3="ftp://x", **files), capture_output=True, text=True,
                           timeout=30)
        check(p.returncode == 2 and "AWS_ENDPOINT_URL" in p.stderr, "a malformed AWS_ENDPOINT_URL_S3 is named, exit 2",
              p.stderr)

    # 5c. credential_process's command line is split as shlex.split (botocore's compat_shell_split)
    #     splits it; malformed lines are errors in both. Expiration times as Python reads them.
    import shlex
    for line in ["/opt/aws_signing_helper credential-process --certificate /etc/pki/c.pem --role-arn arn:x",
                 "'/path with space/helper' a\\ b \"q \\\" d\" 'it''s' \"\" x#y",
                 "  tabs\tand   spaces  ", "\"a\\b\" 'c\\d' e\\f", "unclosed 'quote", "trailing \\"]:
        try:
            want = shlex.split(line)
        except ValueError:
            want = None
        p = subprocess.run([probe, "split", line], capture_output=True, text=True, timeout=10)
        got = [bytes.fromhex(w[2:]).decode() for w in p.stdout.splitlines()] if p.returncode == 0 else None
        check(got == want, f"split {line!r} like shlex: {want}", f"quarry {got} {p.stderr}")
    for t in ["2026-12-06T01:02:03Z", "2026-12-06T01:02:03.250+02:00", "2024-02-29T23:59:59-05:30",
              "1999-01-01T00:00:00UTC", "2026-13-01T00:00:00Z", "yesterday"]:
        try:
            want = int(datetime.fromisoformat(t.replace("UTC", "+00:00").replace("Z", "+00:00")).timestamp())
        except ValueError:
            want = -1
        p = subprocess.run([probe, "time", t], capture_output=True, text=True, timeout=10)
        check(p.stdout.strip() == str(want), f"time {t} = {want}", p.stdout + p.stderr)

    # 6. Endpoints: per-service variable, global variable, the profile's services section and endpoint_url.
    cases = [
        ("S3", "s3", dict(AWS_ENDPOINT_URL_S3="http://svc:1", AWS_ENDPOINT_URL="http://glob:2"), ""),
        ("BEDROCK", "bedrock", dict(AWS_ENDPOINT_URL_S3="http://svc:1", AWS_ENDPOINT_URL="http://glob:2"), ""),
        ("STS", "sts", dict(AWS_ENDPOINT_URL_STS="http://sts:3"), ""),
        ("S3", "s3", {}, "ep"),
        ("STS", "sts", {}, "ep"),
        ("S3", "s3", dict(AWS_ENDPOINT_URL="http://glob:2"), "ep"),
        ("S3", "s3", dict(AWS_IGNORE_CONFIGURED_ENDPOINT_URLS="true", AWS_ENDPOINT_URL="http://glob:2"), ""),
        ("S3", "s3", {}, ""),
    ]
    for svc_env, svc, extra, profile in cases:
        e = clean_env(home, **files, **extra)
        rc, out, err = quarry(probe, e, "endpoint", svc_env, svc, profile or "-")
        b = boto(e, profile, "endpoint", svc)
        check(rc == 0 and out and out[0] == b, f"endpoint of {svc} with {extra} profile={profile or '-'}: {b}",
              f"quarry {out} {err}")
    rc, out, err = quarry(probe, clean_env(home, AWS_ENDPOINT_URL_S3="http://svc:1", **files), "endpoint", "S3", "s3",
                          "-", "http://flag:9")
    check(out and out[0]["endpoint"] == "http://flag:9", "--endpoint-url wins", str(out))


if __name__ == "__main__":
    sys.exit(main())
