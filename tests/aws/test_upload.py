"""quarry upload against moto_server on loopback, signatures checked: objects read back with boto3
byte for byte; a small file, an empty file, a multipart file (--part-size 5MiB --jobs 2); an upload
killed after 3 parts resumes and sends only the missing parts; a wrong secret is a clear 403 and
exit 1; no credentials say how to provide them; a --profile from a credentials file works.
Through a fault-injecting proxy: 503 SlowDown answers are retried; a fatal 400 on a part aborts the
multipart upload (none left open) and exits 1."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from awstest import FaultProxy, Moto, TempHome, clean_env, quarry_bin, run  # noqa: E402

MiB = 1024 * 1024
failures = []


def check(cond, what, evidence=""):
    if not cond:
        failures.append(what)
        print(f"FAIL {what}\n{evidence}")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read_back(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def main():
    q = quarry_bin()
    moto = Moto()
    try:
        with TempHome() as home:
            body(q, moto, home)
    finally:
        moto.stop()
    if failures:
        print(f"test_upload: {len(failures)} check(s) failed")
        return 1
    print("test_upload: all checks passed")
    return 0


def body(q, moto, home):
    s3 = moto.s3
    s3.create_bucket(Bucket="quarry-bkt")
    creds = dict(AWS_ACCESS_KEY_ID=moto.key_id, AWS_SECRET_ACCESS_KEY=moto.secret, AWS_REGION="us-east-1")
    env = clean_env(home, **creds)
    base = [q, "upload", "--force"]   # raw directories, not exports (the refusal: tests/export)
    ep = ["--endpoint-url", moto.url, "--quiet"]

    # 1. small + empty + multipart (2 full parts and a short one), read back byte for byte.
    src = os.path.join(home, "export1")
    files = {
        "config.json": b'{"architectures": ["LlamaForCausalLM"]}\n',
        "empty.txt": b"",
        "sub/model.safetensors": os.urandom(2 * 5 * MiB + 12345),
        "odd names/a+b=c (1)~ü.json": b"{}",   # key characters that must be URI-encoded when signed
    }
    for rel, data in files.items():
        write(os.path.join(src, rel), data)
    rc, out, err = run(base + [src, "s3://quarry-bkt/run1/"] + ep + ["--part-size", "5MiB", "--jobs", "2"], env)
    check(rc == 0, "upload exits 0", out + err)
    check("3 part(s) sent" in out, "the 10 MiB file went up in 3 parts", out)
    for rel, data in files.items():
        got = read_back(s3, "quarry-bkt", "run1/" + rel)
        check(got == data, f"run1/{rel} reads back byte for byte ({len(got)} vs {len(data)} bytes)")
    head = s3.head_object(Bucket="quarry-bkt", Key="run1/sub/model.safetensors", ChecksumMode="ENABLED")
    check(head.get("ChecksumSHA256"), "the multipart object carries a SHA-256 checksum", str(head))
    check(moto.secret not in out + err, "the secret is never printed")

    # 2. killed after 3 of 6 parts (SIGKILL from the test hook), then resumed.
    src2 = os.path.join(home, "export2")
    big = os.urandom(5 * 5 * MiB + 999)
    write(os.path.join(src2, "model.safetensors"), big)
    # An mtime whose 15-digit form (1.79563796884887e+18) reads back as a different number: the
    # journal must keep it exactly, or the rerun takes the file for changed and resends every part.
    os.utime(os.path.join(src2, "model.safetensors"), ns=(1795637968848870121, 1795637968848870121))
    args2 = base + [src2, "s3://quarry-bkt/run2"] + ep + ["--part-size", "5MiB", "--jobs", "2"]
    rc, out, err = run(args2, clean_env(home, QUARRY_TEST_KILL_AFTER_PARTS=3, **creds))
    check(rc == -9, "the first run dies by SIGKILL after 3 parts", f"rc={rc}\n{out}{err}")
    journals = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(home, "cache")) for f in fs]
    check(len(journals) == 1, "an upload journal is left under $XDG_CACHE_HOME/quarry/uploads", str(journals))
    for j in journals:
        check(moto.secret not in open(j).read(), "the journal holds no secret")
    uploads = s3.list_multipart_uploads(Bucket="quarry-bkt").get("Uploads", [])
    check(len(uploads) == 1, "one multipart upload is open after the kill", str(uploads))
    rc, out, err = run(args2, env)
    check(rc == 0, "the rerun exits 0", out + err)
    m = re.search(r"(\d+) part\(s\) sent, (\d+) part\(s\) resumed", out)
    check(m is not None, "the rerun reports parts sent/resumed", out)
    if m:
        sent, resumed = int(m.group(1)), int(m.group(2))
        check(resumed >= 3 and sent + resumed == 6 and sent <= 3,
              f"the rerun resumed the parts already in S3 (sent {sent}, resumed {resumed} of 6)", out + err)
    check("resuming model.safetensors" in err or "resuming run2/model.safetensors" in err, "the rerun says it resumes", err)
    check(read_back(s3, "quarry-bkt", "run2/model.safetensors") == big, "the resumed object reads back byte for byte")
    uploads = s3.list_multipart_uploads(Bucket="quarry-bkt").get("Uploads", [])
    check(not uploads, "no multipart upload is left open", str(uploads))
    journals = [f for dp, _, fs in os.walk(os.path.join(home, "cache")) for f in fs]
    check(not journals, "the journal is removed after a verified upload", str(journals))
    rc, out, err = run(args2, env)
    check(rc == 0 and "6 part(s) sent" in out, "a fresh rerun uploads again (no stale journal)", out + err)

    # 2b. killed, then the file changes: the stale multipart upload is aborted, the new bytes go up.
    args8 = base + [src2, "s3://quarry-bkt/run8/"] + ep + ["--part-size", "5MiB", "--jobs", "1"]
    rc, out, err = run(args8, clean_env(home, QUARRY_TEST_KILL_AFTER_PARTS=2, **creds))
    check(rc == -9, "killed after 2 parts", f"rc={rc}")
    big2 = big + b"appended"
    write(os.path.join(src2, "model.safetensors"), big2)
    rc, out, err = run(args8, env)
    check(rc == 0 and "0 part(s) resumed" in out, "a changed file is not resumed from stale parts", out + err)
    check(read_back(s3, "quarry-bkt", "run8/model.safetensors") == big2, "the changed file reads back")
    uploads = s3.list_multipart_uploads(Bucket="quarry-bkt").get("Uploads", [])
    check(not uploads, "the stale multipart upload was aborted", str(uploads))
    write(os.path.join(src2, "model.safetensors"), big)

    # 3. a wrong secret: 403 SignatureDoesNotMatch, said in words, exit 1.
    bad = clean_env(home, AWS_ACCESS_KEY_ID=moto.key_id, AWS_SECRET_ACCESS_KEY="not-the-secret-0123456789",
                    AWS_REGION="us-east-1")
    rc, out, err = run(base + [src, "s3://quarry-bkt/run3/"] + ep, bad)
    check(rc == 1, "a wrong secret exits 1", f"rc={rc}\n{err}")
    check("403" in err and "SignatureDoesNotMatch" in err and "secret access key is wrong" in err,
          "a wrong secret is explained", err)
    check("not-the-secret" not in out + err, "the wrong secret is not printed", err)

    # 4. no credentials at all: says how to provide them.
    rc, out, err = run(base + [src, "s3://quarry-bkt/run4/"] + ep, clean_env(home))
    check(rc == 1 and "AWS_ACCESS_KEY_ID" in err and "--profile" in err, "no credentials: exit 1 with how to fix", err)

    # 5. a named profile from a shared credentials file (and the environment keys ignored for it).
    cred_file = os.path.join(home, "creds.ini")
    with open(cred_file, "w") as f:
        f.write(f"[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n"
                f"[dev]\naws_access_key_id = {moto.key_id}\naws_secret_access_key = {moto.secret}\n")
    penv = clean_env(home, AWS_SHARED_CREDENTIALS_FILE=cred_file, AWS_ACCESS_KEY_ID="AKIAENVIGNORED",
                     AWS_SECRET_ACCESS_KEY="env-ignored")
    small = os.path.join(home, "export3")
    write(os.path.join(small, "a.txt"), b"profile upload\n")
    rc, out, err = run(base + [small, "s3://quarry-bkt/run5/", "--profile", "dev"] + ep, penv)
    check(rc == 0, "--profile dev from AWS_SHARED_CREDENTIALS_FILE works", out + err)
    check(read_back(s3, "quarry-bkt", "run5/a.txt") == b"profile upload\n", "profile upload reads back")
    rc, out, err = run(base + [small, "s3://quarry-bkt/run5/", "--profile", "nope"] + ep, penv)
    check(rc == 1 and "profile 'nope' not found" in err, "an unknown profile is named", err)

    # 6. faults: throttling is retried; a fatal error aborts the multipart upload.
    slow = FaultProxy(moto.port, lambda m, path, q, op, n: (503, "SlowDown") if op == "UploadPart" and n <= 2 else None)
    try:
        pep = ["--endpoint-url", slow.url, "--quiet", "--part-size", "5MiB", "--jobs", "2"]
        rc, out, err = run(base + [src2, "s3://quarry-bkt/run6/"] + pep, env)
        check(rc == 0 and len(slow.injected) == 2, "503 SlowDown on two parts is retried", f"{slow.injected}\n{out}{err}")
        check(read_back(s3, "quarry-bkt", "run6/model.safetensors") == big, "the retried upload reads back")
    finally:
        slow.stop()
    fatal = FaultProxy(moto.port, lambda m, path, q, op, n: (400, "InvalidArgument") if op == "UploadPart" and n == 3 else None)
    try:
        pep = ["--endpoint-url", fatal.url, "--quiet", "--part-size", "5MiB", "--jobs", "1"]
        rc, out, err = run(base + [src2, "s3://quarry-bkt/run7/"] + pep, env)
        check(rc == 1 and "InvalidArgument" in err and "aborted" in err, "a fatal part error fails and says it aborted",
              f"rc={rc}\n{err}")
        uploads = s3.list_multipart_uploads(Bucket="quarry-bkt").get("Uploads", [])
        check(not uploads, "the failed multipart upload was aborted in S3", str(uploads))
    finally:
        fatal.stop()

    # 7. usage errors.
    rc, out, err = run(base + [src, "s3://quarry-bkt/x/", "--part-size", "1MiB"] + ep, env)
    check(rc == 2 and "5MiB" in err, "--part-size below 5MiB is refused", err)
    rc, out, err = run(base + [src, "https://quarry-bkt/x/"] + ep, env)
    check(rc == 2 and "s3://bucket/prefix/" in err, "a non-s3:// destination is refused", err)
    rc, out, err = run(base + [src, "s3://no-such-bucket/x/"] + ep, env)
    check(rc == 1 and "NoSuchBucket" in err, "a missing bucket is named", err)


if __name__ == "__main__":
    sys.exit(main())
