// data/bedrock under a base model (data/limits): the per-record rules of AWS's own dataset
// validators (aws-samples/amazon-bedrock-samples @85fba9d9), per base model — Llama's exact
// schemaVersion and single system block, Claude 3 Haiku's turn markers, extra keys (a warning
// naming the source under Nova and Llama, refused under Haiku and without a base model), and a
// content block without text still refused. Each case: base model, record, verdict, message.
#include "test.h"
#include "data/bedrock.h"

typedef struct {
    int n_err, n_warn;
    char err[512], warn[512];   // the first of each
} diags;

static void on_diag(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    (void)line;
    (void)col;
    diags *d = user;
    int *n = sev == BEDROCK_ERROR ? &d->n_err : &d->n_warn;
    if (!(*n)++) snprintf(sev == BEDROCK_ERROR ? d->err : d->warn, sizeof d->err, "%s", msg);
}

// Models by family (every row of data/limits that the rule covers).
static const char *const llama32[] = {"meta.llama3-2-1b-instruct-v1:0", "meta.llama3-2-3b-instruct-v1:0",
                                      "meta.llama3-2-11b-instruct-v1:0", "meta.llama3-2-90b-instruct-v1:0",
                                      "meta.llama3-3-70b-instruct-v1:0", NULL};
static const char *const nova[] = {"amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", NULL};
static const char *const llama31[] = {"meta.llama3-1-8b-instruct-v1:0", "meta.llama3-1-70b-instruct-v1:0", NULL};
static const char *const haiku[] = {"anthropic.claude-3-haiku-20240307-v1:0", NULL};
static const char *const none[] = {"", NULL};   // no --base-model
// Media (issue 22): images and videos for Nova Lite/Pro, images for Llama 3.2 11B/90B Vision.
static const char *const nova_media[] = {"amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", NULL};
static const char *const images_ok[] = {"amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", "meta.llama3-2-11b-instruct-v1:0",
                                        "meta.llama3-2-90b-instruct-v1:0", NULL};
static const char *const vision[] = {"meta.llama3-2-11b-instruct-v1:0", "meta.llama3-2-90b-instruct-v1:0", NULL};
static const char *const text_only[] = {"amazon.nova-micro-v1:0", "meta.llama3-2-1b-instruct-v1:0",
                                        "meta.llama3-2-3b-instruct-v1:0", "meta.llama3-3-70b-instruct-v1:0", NULL};

#define CV_TURNS "\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"a\"}]}, " \
                 "{\"role\": \"assistant\", \"content\": [{\"text\": \"b\"}]}]"
#define CV(schema) "{\"schemaVersion\": \"" schema "\", " CV_TURNS "}"
#define MS(user) "{\"system\": \"s\", \"messages\": [{\"role\": \"user\", \"content\": \"" user "\"}, " \
                 "{\"role\": \"assistant\", \"content\": \"b\"}]}"

#define IMG(fmt, uri) "{\"image\": {\"format\": \"" fmt "\", \"source\": {\"s3Location\": {\"uri\": \"" uri "\"}}}}"
#define VID(fmt, uri) "{\"video\": {\"format\": \"" fmt "\", \"source\": {\"s3Location\": {\"uri\": \"" uri "\"}}}}"
#define PNG IMG("png", "s3://b/i.png")
#define MP4 VID("mp4", "s3://b/v.mp4")
#define USER_MEDIA(blocks) "{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"Describe it.\"}, " blocks "]}, " \
                           "{\"role\": \"assistant\", \"content\": [{\"text\": \"b\"}]}]}"

typedef struct {
    const char *const *models;
    const char *line;
    int valid;              // verdict wanted
    const char *error;      // substring of the first error, NULL = no error
    const char *warning;    // substring of the first warning, NULL = no warning
} model_case;

static const model_case cases[] = {
    // schemaVersion: exactly "bedrock-conversation-2024" for Llama (utils/schema.py const);
    // any string for Nova and without a base model (Nova user guide).
    {llama32, CV("tooluse-dataset-2024"), 0, "\"schemaVersion\" is \"tooluse-dataset-2024\"; Meta Llama 3.", NULL},
    {llama32, CV("bedrock-conversation-2024"), 1, NULL, NULL},
    {llama32, "{" CV_TURNS "}", 1, NULL, NULL},
    {nova, CV("tooluse-dataset-2024"), 1, NULL, NULL},
    {none, CV("tooluse-dataset-2024"), 1, NULL, NULL},
    // One system block at most for Llama (schema.py maxItems 1); Nova takes several.
    {llama32, "{\"system\": [{\"text\": \"s1\"}, {\"text\": \"s2\"}], " CV_TURNS "}", 0,
     "\"system\" has 2 blocks; Meta Llama 3.", NULL},
    {llama32, "{\"system\": [{\"text\": \"s1\"}], " CV_TURNS "}", 1, NULL, NULL},
    {nova, "{\"system\": [{\"text\": \"s1\"}, {\"text\": \"s2\"}], " CV_TURNS "}", 1, NULL, NULL},
    // Claude 3 Haiku: "\nHuman:" / "\nAssistant:" in any text (data_validation.py RESERVED_KEYWORDS).
    {haiku, MS("a\\n\\nHuman: b"), 0, "messages[0].content contains \"\\nHuman:\"", NULL},
    {haiku, "{\"system\": \"x\\nAssistant: y\", \"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
            "{\"role\": \"assistant\", \"content\": \"b\"}]}", 0, "\"system\" contains \"\\nAssistant:\"", NULL},
    {haiku, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": "
            "\"b\\nHuman: c\"}]}", 0, "messages[1].content contains \"\\nHuman:\"", NULL},
    {haiku, MS("Human: no line break"), 1, NULL, NULL},
    {none, MS("a\\n\\nHuman: b"), 1, NULL, NULL},
    // Extra keys: AWS's Llama schema ("additionalProperties": true) and Nova script accept them.
    {llama32, "{\"id\": 1, \"schemaVersion\": \"bedrock-conversation-2024\", " CV_TURNS "}", 1, NULL,
     "unknown key \"id\" in the record; Meta Llama 3."},
    {nova, "{\"id\": 1, " CV_TURNS "}", 1, NULL, "and AWS's Nova validator (amazon-bedrock-samples nova_ft_dataset_validator.py) accepts it: ignored"},
    {llama31, "{\"id\": 1, \"prompt\": \"a\", \"completion\": \"b\"}", 1, NULL, "AWS's Llama validator"},
    {nova, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"a\", \"cachePoint\": 1}]}, "
           "{\"role\": \"assistant\", \"content\": [{\"text\": \"b\"}], \"name\": \"x\"}]}", 1, NULL, "unknown key"},
    {haiku, "{\"id\": 1, \"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}",
     0, "unknown key \"id\" in the record; Anthropic Claude 3 Haiku's format has no such key", NULL},
    {none, "{\"id\": 1, \"prompt\": \"a\", \"completion\": \"b\"}", 0, "unknown key \"id\" in the record; no Bedrock format has it", NULL},
    // ... but a content block without text is still refused (the Nova script: "at least one of
    // text, image, video must be provided").
    {nova, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"note\": \"a\"}]}, "
           "{\"role\": \"assistant\", \"content\": [{\"text\": \"b\"}]}]}", 0, "messages[0].content[0] has no \"text\"",
     "unknown key \"note\""},
    {llama32, "{\"messages\": [{\"role\": \"user\", \"content\": [{}]}, "
              "{\"role\": \"assistant\", \"content\": [{\"text\": \"b\"}]}]}", 0, "has no \"text\"", NULL},
    // Media: valid user-turn media accepted where the model takes them (Nova script's rules).
    {images_ok, USER_MEDIA(PNG), 1, NULL, NULL},
    {images_ok, USER_MEDIA(IMG("JPEG", "s3://b/dir_1/i-2.jpg")), 1, NULL, NULL},
    {images_ok, USER_MEDIA(PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG), 1, NULL, NULL},
    {images_ok, "{\"messages\": [{\"role\": \"user\", \"content\": [" PNG "]}, "
                "{\"role\": \"assistant\", \"content\": [{\"text\": \"b\"}]}]}", 1, NULL, NULL},
    {nova_media, USER_MEDIA(MP4), 1, NULL, NULL},
    {nova_media, USER_MEDIA(VID("WebM", "s3://b/v.webm")), 1, NULL, NULL},
    {images_ok, USER_MEDIA(PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG "," PNG), 0,
     "messages[0].content has 11 images; a turn takes at most 10", NULL},
    {images_ok, USER_MEDIA(IMG("bmp", "s3://b/i.bmp")), 0, "messages[0].content[1].image.format is \"bmp\"", NULL},
    {images_ok, USER_MEDIA(IMG("png", "https://b/i.png")), 0, "uri does not start with \"s3://\"", NULL},
    {images_ok, USER_MEDIA(IMG("png", "s3://b/my cat.png")), 0, "uri has the character ' '", NULL},
    {images_ok, USER_MEDIA("{\"image\": {\"format\": \"png\"}}"), 0, "has no source.s3Location.uri", NULL},
    {images_ok, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"a\"}]}, "
                "{\"role\": \"assistant\", \"content\": [{\"text\": \"b\"}, " PNG "]}]}", 0,
     "messages[1].content[1] is an image block in an assistant turn; media go in user turns only", NULL},
    {images_ok, "{\"system\": [" PNG "], " CV_TURNS "}", 0, "system[0] is an image block in the system prompt", NULL},
    {nova_media, USER_MEDIA(MP4 "," VID("mov", "s3://b/v2.mov")), 0, "has 2 videos; a turn takes one video", NULL},
    {nova_media, USER_MEDIA(PNG "," MP4), 0, "mixes images and a video", NULL},
    {vision, USER_MEDIA(MP4), 0, "is a video block, which Meta Llama 3.2", NULL},
    {text_only, USER_MEDIA(PNG), 0, "is an image block, which ", NULL},
    {none, USER_MEDIA(PNG), 0, "is an image block; quarry trains text-only models", NULL},
    {none, USER_MEDIA(MP4), 0, "is a video block; quarry trains text-only models", NULL},
};

// File-level media rules of the Nova guide: one bucket, one modality per dataset.
static void check_file_rules(void) {
    const char *bad[][3] = {
        {USER_MEDIA(IMG("png", "s3://b/i.png")), USER_MEDIA(IMG("png", "s3://other/i.png")), "is in bucket \"other\", but line 1's media are in \"b\""},
        {USER_MEDIA(PNG), USER_MEDIA(MP4), "messages[0].content has a video, but line 1 has images; a dataset holds images or videos, not both"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (const char *const *m = images_ok; *m; m++) {
            if (i == 1 && !strstr(*m, "nova")) continue;   // Llama takes no video at all
            diags d = {0};
            bedrock_options o = {FORMAT_UNKNOWN, 0, limits_find(*m), 0, on_diag, &d};
            bedrock_checker *c = bedrock_checker_new(&o);
            CHECK(bedrock_check(c, bad[i][0], strlen(bad[i][0]), 1, NULL) == 1, "file %zu %s: line 1 valid", i, *m);
            CHECK(bedrock_check(c, bad[i][0], strlen(bad[i][0]), 2, NULL) == 1, "file %zu %s: line 2 valid", i, *m);
            CHECK(bedrock_check(c, bad[i][1], strlen(bad[i][1]), 3, NULL) == 0 && strstr(d.err, bad[i][2]),
                  "file %zu %s: line 3 refused: '%s'", i, *m, d.err);
            bedrock_checker_free(c);
        }
}

int main(void) {
    check_file_rules();
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const model_case *k = &cases[i];
        for (const char *const *m = k->models; *m; m++) {
            const base_model_limits *l = **m ? limits_find(*m) : NULL;
            CHECK(!**m || l, "case %zu: %s in data/limits", i, *m);
            diags d = {0};
            bedrock_options o = {FORMAT_UNKNOWN, 0, l, 0, on_diag, &d};
            bedrock_checker *c = bedrock_checker_new(&o);
            int got = bedrock_check(c, k->line, strlen(k->line), 1, NULL);
            const char *who = **m ? *m : "(no base model)";
            CHECK(got == k->valid, "case %zu %s: verdict %d, want %d (error: %s)", i, who, got, k->valid, d.err);
            if (k->error) CHECK(d.n_err && strstr(d.err, k->error), "case %zu %s: error '%s' lacks '%s'", i, who, d.err, k->error);
            else CHECK(!d.n_err, "case %zu %s: unexpected error '%s'", i, who, d.err);
            if (k->warning)
                CHECK(d.n_warn && strstr(d.warn, k->warning), "case %zu %s: warning '%s' lacks '%s'", i, who, d.warn, k->warning);
            else CHECK(!d.n_warn, "case %zu %s: unexpected warning '%s'", i, who, d.warn);
            // Nothing under a base model says Bedrock refuses extra keys: that was never shown.
            CHECK(!strstr(d.err, "Bedrock refuses") && !strstr(d.warn, "Bedrock refuses"), "case %zu %s: %s", i, who, d.err);
            bedrock_checker_free(c);
            ran++;
        }
    }
    printf("%d model cases\n", ran);
    return test_finish("test_bedrock_models");
}
