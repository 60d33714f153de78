"""quarry import against a local HTTP server that plays Bedrock: every request quarry sends must
equal, byte for byte (method, path, body, X-Amz-Date, Authorization, session token), what botocore's
bedrock client produces for the same call at the same fixed time (QUARRY_TEST_FIXED_TIME on our
side, a frozen clock on botocore's). The server answers like the API: 201 with a jobArn, job
statuses InProgress → Completed or Failed, one throttling answer (retried), and 403
InvalidSignatureException when the signature is not the one botocore computes with the true secret."""
import datetime
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from awstest import TempHome, clean_env, quarry_bin, run, skip  # noqa: E402

try:
    import botocore.session
    import botocore.auth
except ImportError:
    skip("botocore not installed in the .venv")

FIXED = "20150830T123600Z"
KEY_ID, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None
REGION = "us-west-2"
JOB_ARN = "arn:aws:bedrock:us-west-2:123456789012:model-import-job/abcdefghij12"
MODEL_ARN = "arn:aws:bedrock:us-west-2:123456789012:imported-model/zyxwvutsrq98"
failures = []


def check(cond, what, evidence=""):
    if not cond:
        failures.append(what)
        print(f"FAIL {what}\n{evidence}")


def botocore_request(url, session_token, op, params):
    """The request botocore would send for op(**params) to url, signed at FIXED."""
    s = botocore.session.get_session()
    c = s.create_client("bedrock", region_name=REGION, endpoint_url=url, aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET, aws_session_token=session_token)
    got = {}

    def stop(request, **kw):
        got["r"] = request
        raise StopIteration

    c.meta.events.register("before-send.bedrock.*", stop)
    when = datetime.datetime.strptime(FIXED, "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        try:
            getattr(c, op)(**params)
        except StopIteration:
            pass
    return got["r"]


class Bedrock(BaseHTTPRequestHandler):
    state = None  # set per server: dict with jobs, log, polls

    def log_message(self, *a):
        pass

    def reply(self, status, obj, error_type=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type + ":http://internal.amazon.com/coral/")
        self.end_headers()
        self.wfile.write(data)

    def compare(self, op, params, body):
        """Compares what quarry sent with botocore's request for the same call; returns the list of differences."""
        st = self.state
        url = f"http://{self.headers['Host']}"
        b = botocore_request(url, self.headers.get("X-Amz-Security-Token"), op, params)
        want_path = b.url[len(url):]
        diffs = []
        if self.command != b.method:
            diffs.append(f"method {self.command} != {b.method}")
        if self.path != want_path:
            diffs.append(f"path {self.path} != {want_path}")
        want_body = b.body or b""
        if isinstance(want_body, str):
            want_body = want_body.encode()
        if body != want_body:
            diffs.append(f"body\n  quarry:   {body!r}\n  botocore: {want_body!r}")
        for h in ("X-Amz-Date", "X-Amz-Security-Token", "Content-Type", "Authorization"):
            mine, theirs = self.headers.get(h), b.headers.get(h)
            theirs = theirs.decode() if isinstance(theirs, bytes) else theirs
            if mine != theirs:
                diffs.append(f"{h}\n  quarry:   {mine}\n  botocore: {theirs}")
        st["log"].append((op, diffs))
        return diffs

    def signature_error(self, diffs):
        # What AWS says when the signature is not the one computed with the true secret.
        self.reply(403, {"message": "The request signature we calculated does not match the signature you provided. "
                         "Check your AWS Secret Access Key and signing method."}, "InvalidSignatureException")

    def do_POST(self):
        st = self.state
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/model-import-jobs":
            return self.reply(404, {"message": "no such route"}, "UnknownOperationException")
        params = json.loads(body)
        st["created"].append(params)
        diffs = self.compare("create_model_import_job", params, body)
        if diffs:
            return self.signature_error(diffs)
        st["jobs"][JOB_ARN] = params
        self.reply(201, {"jobArn": JOB_ARN})

    def do_GET(self):
        st = self.state
        prefix = "/model-import-jobs/"
        if not self.path.startswith(prefix):
            return self.reply(404, {"message": "no such route"}, "UnknownOperationException")
        from urllib.parse import unquote
        job_id = unquote(self.path[len(prefix):])
        diffs = self.compare("get_model_import_job", {"jobIdentifier": job_id}, b"")
        if diffs:
            return self.signature_error(diffs)
        params = st["jobs"].get(job_id)
        if params is None:
            return self.reply(404, {"message": f"job {job_id} not found"}, "ResourceNotFoundException")
        st["polls"] += 1
        if st["polls"] == 1:
            return self.reply(429, {"message": "Rate exceeded"}, "ThrottlingException")
        if st["polls"] < 4:
            return self.reply(200, {"jobArn": JOB_ARN, "jobName": params["jobName"], "status": "InProgress"})
        if "fail" in params["jobName"]:
            return self.reply(200, {"jobArn": JOB_ARN, "jobName": params["jobName"], "status": "Failed",
                                    "failureMessage": "Amazon Bedrock does not support the architecture GPT2LMHeadModel"})
        self.reply(200, {"jobArn": JOB_ARN, "jobName": params["jobName"], "status": "Completed",
                         "importedModelArn": MODEL_ARN, "importedModelName": params["importedModelName"]})


def serve():
    state = {"jobs": {}, "log": [], "polls": 0, "created": []}
    handler = type("H", (Bedrock,), {"state": state})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, state


def main():
    q = quarry_bin()
    srv, state = serve()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        with TempHome() as home:
            body(q, url, state, home)
    finally:
        srv.shutdown()
    if failures:
        print(f"test_import: {len(failures)} check(s) failed")
        return 1
    print("test_import: all checks passed")
    return 0


def reset(state):
    state.update(jobs={}, log=[], polls=0, created=[])


def body(q, url, state, home):
    env = clean_env(home, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION,
                    QUARRY_TEST_FIXED_TIME=FIXED)
    common = ["import", "--s3", "s3://quarry-bkt/exports/llama-ft/", "--role-arn",
              "arn:aws:iam::123456789012:role/BedrockImport", "--endpoint-url", url]

    # 1. the plain call: body and signature equal botocore's; no --wait prints the job ARN.
    rc, out, err = run([q] + common + ["--name", "my-llama_ft", "--job-name", "job-1", "--client-token", "tok123"], env)
    check(rc == 0 and JOB_ARN in out, "import prints the job ARN", out + err)
    check(state["log"] and all(not d for _, d in state["log"]), "request equals botocore's", str(state["log"]))
    check(state["created"] == [{"jobName": "job-1", "importedModelName": "my-llama_ft",
                                "roleArn": "arn:aws:iam::123456789012:role/BedrockImport",
                                "modelDataSource": {"s3DataSource": {"s3Uri": "s3://quarry-bkt/exports/llama-ft/"}},
                                "clientRequestToken": "tok123"}], "the body holds the given parameters", str(state["created"]))

    # 1b. the endpoint from AWS_ENDPOINT_URL_BEDROCK (a VPC endpoint or proxy), as the SDKs take it.
    reset(state)
    eenv = dict(env, AWS_ENDPOINT_URL_BEDROCK=url, AWS_ENDPOINT_URL="http://127.0.0.1:9")
    rc, out, err = run([q] + common[:-2] + ["--name", "my-llama_ft", "--job-name", "job-1", "--client-token", "tok123"],
                       eenv)
    check(rc == 0 and JOB_ARN in out and state["created"], "AWS_ENDPOINT_URL_BEDROCK is the endpoint", out + err)

    # 2. every optional member (tags, VPC, KMS), a session token, the default job name and a random
    #    client token; --wait through a throttling answer to Completed.
    reset(state)
    senv = dict(env, AWS_SESSION_TOKEN="FQoGZXIvYXdzEXAMPLE/session+token==")
    rc, out, err = run([q] + common + ["--name", "llama-ft-2", "--wait", "--poll-interval", "0.05",
                                       "--tags", "team=ml,stage=dev", "--job-tags", "run=42",
                                       "--subnet-ids", "subnet-0a,subnet-0b", "--security-group-ids", "sg-01",
                                       "--kms-key-id", "alias/quarry-models"], senv)
    check(rc == 0 and f"imported model: {MODEL_ARN}" in out, "--wait prints the imported model ARN", out + err)
    check(state["log"] and all(not d for _, d in state["log"]), "requests with every option equal botocore's",
          str(state["log"]))
    ops = [op for op, _ in state["log"]]
    check(ops[0] == "create_model_import_job" and ops.count("get_model_import_job") == 4,
          "one create, then polls (the throttled one retried)", str(ops))
    if state["created"]:
        c = state["created"][0]
        check(c["jobName"].startswith("llama-ft-2-import-"), "a default job name from the model name", c["jobName"])
        check(len(c.get("clientRequestToken", "")) == 32, "a random client token", str(c))
        check(c.get("vpcConfig") == {"subnetIds": ["subnet-0a", "subnet-0b"], "securityGroupIds": ["sg-01"]}
              and c.get("importedModelTags") == [{"key": "team", "value": "ml"}, {"key": "stage", "value": "dev"}]
              and c.get("jobTags") == [{"key": "run", "value": "42"}]
              and c.get("importedModelKmsKeyId") == "alias/quarry-models", "optional members sent", str(c))
    check("FQoGZXIvYXdzEXAMPLE" not in out + err and SECRET not in out + err, "no secret printed")

    # 2b. keys from a credential_process that expire within the refresh margin: fetched again
    #     before each poll of --wait (a job runs for hours), every request still botocore's.
    reset(state)
    helper = os.path.join(home, "helper")
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(helper, "w") as f:
        f.write(f"#!/bin/sh\necho call >> '{home}/calls'\necho '{{\"Version\": 1, \"AccessKeyId\": \"{KEY_ID}\", "
                f"\"SecretAccessKey\": \"{SECRET}\", \"SessionToken\": \"FQoGZXIvYXdzEXAMPLE/session+token==\", "
                f"\"Expiration\": \"{soon}\"}}'\n")
    os.chmod(helper, 0o700)
    with open(os.path.join(home, "config"), "w") as f:
        f.write(f"[profile proc]\ncredential_process = {helper}\nregion = {REGION}\n")
    penv = clean_env(home, AWS_CONFIG_FILE=os.path.join(home, "config"), QUARRY_TEST_FIXED_TIME=FIXED)
    rc, out, err = run([q] + common + ["--name", "llama-ft-2", "--job-name", "job-2", "--wait", "--poll-interval",
                                       "0.05", "--quiet", "--profile", "proc"], penv)
    calls = open(os.path.join(home, "calls")).read().count("call") if os.path.exists(os.path.join(home, "calls")) else 0
    check(rc == 0 and MODEL_ARN in out and calls >= 4 and all(not d for _, d in state["log"]),
          f"--wait refreshes expiring keys ({calls} credential_process runs)", f"rc={rc}\n{out}{err}")

    # 3. --wait on a job that fails: the failure message, exit 1.
    reset(state)
    rc, out, err = run([q] + common + ["--name", "llama-ft-3", "--job-name", "will-fail", "--wait",
                                       "--poll-interval", "0.05", "--quiet"], env)
    check(rc == 1 and "does not support the architecture GPT2LMHeadModel" in err, "a failed job: message, exit 1",
          f"rc={rc}\n{out}{err}")
    check(all(not d for _, d in state["log"]), "failure-path requests equal botocore's", str(state["log"]))

    # 4. a wrong secret: the server computes a different signature → 403, explained.
    reset(state)
    benv = dict(env, AWS_SECRET_ACCESS_KEY="wrong-secret-0000")
    rc, out, err = run([q] + common + ["--name", "llama-ft-4", "--job-name", "job-4"], benv)
    check(rc == 1 and "403" in err and "InvalidSignatureException" in err and "secret access key is wrong" in err,
          "a wrong secret is a clear 403", f"rc={rc}\n{err}")
    check("wrong-secret-0000" not in out + err, "the wrong secret is not printed")

    # 5. names checked against the API's patterns before anything is sent.
    reset(state)
    bad_cases = [
        (["--name", "bad name", "--job-name", "j"], "--name 'bad name'"),
        (["--name", "m", "--job-name", "job_underscore"], "--job-name 'job_underscore'"),
        (["--name", "-lead", "--job-name", "j"], "--name '-lead'"),
        (["--name", "m" * 64, "--job-name", "j"], "limit is 63"),
        (["--name", "m", "--job-name", "j", "--tags", "a=b;c"], "model tag value"),
        (["--name", "m", "--job-name", "j", "--subnet-ids", "subnet-1"], "both --subnet-ids and --security-group-ids"),
    ]
    for extra, want in bad_cases:
        rc, out, err = run([q] + common + extra, env)
        check(rc == 2 and want in err, f"invalid input refused: {extra}", f"rc={rc}\n{err}")
    rc, out, err = run([q, "import", "--s3", "s3://Upper/x/", "--name", "m", "--role-arn",
                        "arn:aws:iam::123456789012:role/R", "--endpoint-url", url], env)
    check(rc == 2 and "--s3 's3://Upper/x/'" in err, "an upper-case bucket is refused", err)
    rc, out, err = run([q, "import", "--s3", "s3://bkt/x/", "--name", "m", "--role-arn", "role/R",
                        "--endpoint-url", url], env)
    check(rc == 2 and "--role-arn" in err, "a malformed role ARN is refused", err)
    check(not state["log"], "nothing was sent for invalid input", str(state["log"]))

    # 6. no credentials and no region: how to provide them.
    rc, out, err = run([q] + common + ["--name", "m"], clean_env(home))
    check(rc == 1 and "AWS_ACCESS_KEY_ID" in err, "no credentials: how to provide them", err)
    rc, out, err = run([q, "import", "--s3", "s3://bkt/x/", "--name", "m", "--role-arn",
                        "arn:aws:iam::123456789012:role/R"], clean_env(home, AWS_ACCESS_KEY_ID="A", AWS_SECRET_ACCESS_KEY="B"))
    check(rc == 1 and "--region" in err, "no region: says how to set one", err)


if __name__ == "__main__":
    sys.exit(main())
