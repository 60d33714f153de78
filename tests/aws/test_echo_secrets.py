"""Server text never carries the request's secrets to the terminal: a proxy on 127.0.0.1 that
echoes the request's headers into its error (XML body, JSON body with '/' escaped as '\\/', a
response header) must not make quarry print the session token, the secret key, the signature or
the access key id. And a plain http:// endpoint is warned about."""
import http.server
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from awstest import clean_env, quarry_bin, run  # noqa: E402

KEY_ID = "AKIAQUARRYECHOTEST01"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYQUARRYSECRET"
TOKEN = "FwoGZXIvYXdzEJr//////////wEaDQuarryEchoToken+with/slashes+and=padding=="

failures = []
seen = {}


def check(ok, what, evidence=""):
    if not ok:
        failures.append(what)
        print(f"FAIL: {what}\n{evidence[-3000:]}")


class Echo(http.server.BaseHTTPRequestHandler):
    mode = "xml"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        headers = "".join(f"{k}: {v}; " for k, v in self.headers.items())
        seen["authorization"] = self.headers.get("Authorization", "")
        if Echo.mode == "xml":
            body = f"<Error><Code>AccessDenied</Code><Message>denied; you sent {headers}</Message></Error>"
            ctype = "application/xml"
        else:
            body = '{"__type": "AccessDeniedException", "message": "denied; you sent %s"}' % headers.replace("/", "\\/")
            ctype = "application/json"
        data = body.encode()
        self.send_response(403)
        self.send_header("Content-Type", ctype)
        self.send_header("x-amzn-ErrorType", "AccessDeniedException")
        self.send_header("X-Echo-Token", self.headers.get("X-Amz-Security-Token", ""))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    q = quarry_bin()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        with tempfile.TemporaryDirectory() as home:
            env = clean_env(home, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN,
                            AWS_REGION="us-east-1")
            args = [q, "import", "--s3", "s3://quarry-bkt/exports/m/", "--name", "m", "--job-name", "j",
                    "--role-arn", "arn:aws:iam::123456789012:role/BedrockImport", "--endpoint-url", url]
            for mode in ("xml", "json"):
                Echo.mode = mode
                seen.clear()
                rc, out, err = run(args, env)
                text = out + err
                check(rc != 0 and "AccessDenied" in text, f"{mode}: the refusal is reported", text)
                check("[REDACTED]" in text, f"{mode}: the echoed headers reach the message, redacted", text)
                sig = seen.get("authorization", "").split("Signature=")[-1]
                check(len(sig) == 64, f"{mode}: the server saw a signed request", seen.get("authorization", ""))
                for name, secret in (("session token", TOKEN), ("secret key", SECRET), ("signature", sig),
                                     ("access key id", KEY_ID)):
                    leaked = secret in text or secret.replace("/", "\\/") in text
                    check(not leaked, f"{mode}: the {name} is not printed", text)
                check("plain HTTP" in err and "unencrypted" in err, f"{mode}: a plain http:// endpoint is warned about", err)
    finally:
        srv.shutdown()
    if failures:
        print(f"test_echo_secrets: {len(failures)} check(s) failed")
        return 1
    print("test_echo_secrets: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
