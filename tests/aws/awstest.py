"""Shared pieces of the AWS tests: a moto S3 server on loopback that checks signatures, and
running quarry with a clean environment (no credentials leak in from the developer's machine)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def quarry_bin():
    q = os.environ.get("QUARRY_BIN")
    if not q or not os.access(q, os.X_OK):
        skip("QUARRY_BIN not set")
    return q


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def clean_env(home, **extra):
    """The environment quarry runs in: HOME and caches in the test's temp dir, no AWS_* from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("QUARRY_TEST_")}
    env.update(HOME=home, XDG_CACHE_HOME=os.path.join(home, "cache"))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(args, env, timeout=50):
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class Moto:
    """moto_server on a free loopback port. The first 3 requests are unauthenticated: they create
    an IAM user with an allow-all policy and an access key; every later request must be signed with
    that key (moto then checks SigV4 signatures, answering 403 SignatureDoesNotMatch).
    auth=False: no checks at all (moto cannot authenticate unsigned calls such as
    AssumeRoleWithWebIdentity while it checks signatures)."""

    def __init__(self, auth=True):
        venv_bin = os.path.dirname(os.environ.get("QUARRY_PYTHON", sys.executable))
        server = os.path.join(venv_bin, "moto_server")
        if not os.access(server, os.X_OK):
            skip(f"{server} not found")
        try:
            import boto3  # noqa: F401
        except ImportError:
            skip("boto3 not installed in the .venv")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3") if auth else dict(os.environ)
        self.proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        if not auth:
            return
        import boto3
        iam = boto3.client("iam", endpoint_url=self.url, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="quarry-test")
        iam.put_user_policy(UserName="quarry-test", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="quarry-test")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        self.s3 = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                               aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class TempHome:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="quarry-aws-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


class FaultProxy:
    """A loopback HTTP proxy in front of moto that forwards requests verbatim (Host header included,
    so signatures still verify) except where fault(method, path, query, n) returns (status, code):
    then it answers that S3 error itself. n counts requests per (method, operation) key."""

    def __init__(self, target_port, fault):
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading
        from urllib.parse import urlsplit

        counts, lock = {}, threading.Lock()
        self.injected = []
        proxy = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n) if n else b""
                parts = urlsplit(self.path)
                op = "UploadPart" if "partNumber=" in parts.query else self.command
                with lock:
                    counts[op] = counts.get(op, 0) + 1
                    k = counts[op]
                f = fault(self.command, parts.path, parts.query, op, k)
                if f:
                    status, code = f
                    proxy.injected.append((op, k, status, code))
                    data = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                            f"<Message>injected by the test proxy</Message></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                c = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                headers = {k2: v for k2, v in self.headers.items()}
                c.request(self.command, self.path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k2, v in r.getheaders():
                    if k2.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k2, v)
                # A HEAD answer has no body but announces the object's length.
                length = r.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                c.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
