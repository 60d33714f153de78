// tests/aws/test_aws_credentials.c — the credential chain and region order, as the AWS CLI
// resolves them: environment keys, then the profile in the credentials file, then in the config
// file ([profile NAME]); --profile over AWS_PROFILE and over environment keys; region from the flag,
// AWS_REGION, AWS_DEFAULT_REGION, then the profile's config.
#include "export/aws_credentials.h"
#include "test.h"
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void clear_env(void) {
    const char *vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                          "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
    setenv("HOME", dir, 1);   // no ~/.aws there unless a case writes one
}

#define EXPECT_STR(got, want, what) \
    CHECK((got) && !strcmp((got), (want)), "%s: got '%s', want '%s'", what, (got) ? (got) : "(null)", want)

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/quarry-creds-XXXXXX");
    if (!mkdtemp(dir)) SKIP("cannot make a temp dir");
    char cred[512], conf[512], err[4096];
    snprintf(cred, sizeof cred, "%s/credentials", dir);
    snprintf(conf, sizeof conf, "%s/config", dir);
    write_file("credentials",
               "# comment\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = default/secret\n\n"
               "[dev]\naws_access_key_id=AKIADEV\naws_secret_access_key=dev+secret\naws_session_token = devtoken\n");
    write_file("config",
               "[default]\nregion = eu-west-1\n[profile dev]\nregion = us-west-2\ns3 =\n  max_concurrent_requests = 4\n"
               "[profile conf-only]\naws_access_key_id = AKIACONF\naws_secret_access_key = conf-secret\n");
    aws_credentials c;

    // Environment keys win; region from AWS_REGION over AWS_DEFAULT_REGION over config.
    clear_env();
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
    setenv("AWS_CONFIG_FILE", conf, 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
    setenv("AWS_SESSION_TOKEN", "env-token", 1);
    setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
    CHECK(!aws_credentials_load(&c, NULL, NULL, err, sizeof err), "env: %s", err);
    EXPECT_STR(c.access_key, "AKIAENV", "env key");
    EXPECT_STR(c.secret_key, "env-secret", "env secret");
    EXPECT_STR(c.session_token, "env-token", "env token");
    EXPECT_STR(c.region, "ap-south-1", "AWS_DEFAULT_REGION");
    aws_credentials_free(&c);
    setenv("AWS_REGION", "ca-central-1", 1);
    CHECK(!aws_credentials_load(&c, NULL, "sa-east-1", err, sizeof err), "env: %s", err);
    EXPECT_STR(c.region, "sa-east-1", "--region wins");
    aws_credentials_free(&c);
    CHECK(!aws_credentials_load(&c, NULL, NULL, err, sizeof err), "env: %s", err);
    EXPECT_STR(c.region, "ca-central-1", "AWS_REGION over AWS_DEFAULT_REGION");
    aws_credentials_free(&c);

    // --profile skips the environment keys; the region comes from [profile dev] in config.
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    CHECK(!aws_credentials_load(&c, "dev", NULL, err, sizeof err), "--profile dev: %s", err);
    EXPECT_STR(c.access_key, "AKIADEV", "--profile key");
    EXPECT_STR(c.secret_key, "dev+secret", "--profile secret");
    EXPECT_STR(c.session_token, "devtoken", "--profile token");
    EXPECT_STR(c.region, "us-west-2", "region of [profile dev]");
    CHECK(strstr(c.source, "profile dev") && !strstr(c.source, "secret"), "source: %s", c.source);
    aws_credentials_free(&c);

    // Only an access key in the environment: an error naming the missing variable.
    unsetenv("AWS_SECRET_ACCESS_KEY");
    CHECK(aws_credentials_load(&c, NULL, NULL, err, sizeof err) && strstr(err, "AWS_SECRET_ACCESS_KEY"), "half env: %s", err);

    // No environment keys: the default profile, region from [default].
    clear_env();
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
    setenv("AWS_CONFIG_FILE", conf, 1);
    CHECK(!aws_credentials_load(&c, NULL, NULL, err, sizeof err), "default: %s", err);
    EXPECT_STR(c.access_key, "AKIADEFAULT", "default key");
    EXPECT_STR(c.secret_key, "default/secret", "default secret");
    CHECK(c.session_token == NULL, "no token in [default]");
    EXPECT_STR(c.region, "eu-west-1", "region of [default]");
    aws_credentials_free(&c);

    // AWS_PROFILE picks a profile whose keys live in the config file only.
    setenv("AWS_PROFILE", "conf-only", 1);
    CHECK(!aws_credentials_load(&c, NULL, NULL, err, sizeof err), "conf-only: %s", err);
    EXPECT_STR(c.access_key, "AKIACONF", "keys from config");
    CHECK(c.region == NULL, "no region anywhere for conf-only");
    aws_credentials_free(&c);

    // An unknown profile is named; nothing at all says how to provide credentials.
    CHECK(aws_credentials_load(&c, "nope", NULL, err, sizeof err) && strstr(err, "profile 'nope' not found"), "nope: %s", err);
    clear_env();
    CHECK(aws_credentials_load(&c, NULL, NULL, err, sizeof err) && strstr(err, "AWS_ACCESS_KEY_ID") &&
              strstr(err, "--profile"), "none: %s", err);

    // ~/.aws/ under HOME is the default location.
    char awsdir[512];
    snprintf(awsdir, sizeof awsdir, "%s/.aws", dir);
    CHECK(!mkdir(awsdir, 0700), "mkdir");
    write_file(".aws/credentials", "[default]\naws_access_key_id = AKIAHOME\naws_secret_access_key = home\n");
    CHECK(!aws_credentials_load(&c, NULL, NULL, err, sizeof err), "home: %s", err);
    EXPECT_STR(c.access_key, "AKIAHOME", "~/.aws/credentials");
    aws_credentials_free(&c);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "warning: could not remove %s\n", dir);
    return test_finish("test_aws_credentials");
}
