// dev/cuda/emu/moe_routes.c — where the bf16 CUDA path's MoE gradients leave the fp32 reference:
// runs batch 0 of a model fixture (tests/fixtures/NAME) forward on the CPU backend (fp32, equal to
// transformers within 1e-5) and forward + backward on the CUDA backend (emulated by
// dev/cuda/emu/run_moe_routes.sh, or a real GPU), recording every call of the moe_router_forward
// op (one per sparse layer, in layer order) through route_pin.h's wrapper in the op table.  Prints:
//   - per sparse layer and token row: the fp32 top-k, the bf16 path's top-k, the fp32 logit margin
//     m = l_(k) − l_(k+1) (the last chosen expert's logit minus the best unchosen one) and the
//     bf16 logits' largest deviation from the fp32 ones; every row whose choice differs, and the
//     smallest margins;
//   - the gradients' relative errors against the fixture's transformers gradients;
// then, with --inject, the same CUDA run again with route_pin's pinning (a flipped near-tie takes
// the fp32 experts, weights from its own bf16 probs): if the gradients then fall within the CUDA
// bounds, routing flips explain the failure; if not, a CUDA op or the bf16 path is wrong.
#include "tests/test.h"
#include "tests/model/fixture.h"
#include "tests/model/route_pin.h"
#include <string.h>

// Batch 0 of the fixture in dir: 0, else -1.
static int load_batch0(const char *dir, fixture_batch *b) {
    char path[1200];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    char *text = fixture_read_text(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    int bad = !j || fixture_read_batch(j, 0, b);
    cJSON_Delete(j);
    return bad ? -1 : 0;
}

// One forward (+ backward when ref is not NULL: then prints each gradient's relative error
// against ref's grad/NAME and returns the worst).
static double run(backend *be, const char *dir, const fixture_batch *b, st_set *ref) {
    char err[512];
    model *m = model_open(dir, be, err, sizeof err);
    if (!m) { fprintf(stderr, "model_open: %s\n", err); exit(1); }
    model_options opt = {.batch_size = b->B, .seq_len = b->T, .train = MODEL_TRAIN_FULL};
    model_memory plan;
    if (model_plan(m, &opt, &plan, err, sizeof err) || model_allocate(m, err, sizeof err)) {
        fprintf(stderr, "plan: %s\n", err);
        exit(1);
    }
    model_batch mb = fixture_model_batch(b);
    int64_t tokens = fixture_trained_tokens(b);
    model_loss loss;
    route_pin.recording = 1;
    if (model_forward(m, &mb, 1.0f / (float)tokens, &loss)) { fprintf(stderr, "forward: %s\n", model_error(m)); exit(1); }
    route_pin.recording = 0;
    printf("  loss %.7f  aux %.7f\n", loss.sum / (double)loss.tokens + loss.aux_coef * loss.aux, loss.aux);
    double worst = 0;
    if (ref) {
        if (model_backward(m)) { fprintf(stderr, "backward: %s\n", model_error(m)); exit(1); }
        for (int i = 0; i < model_trained_count(m); i++) {
            model_param *p = model_trained_at(m, i);
            char key[300];
            snprintf(key, sizeof key, "grad/%s", p->name);
            float *want = fixture_ref_tensor(ref, key, p->n), *got = malloc(p->n * 4);
            if (!want || !got) exit(1);
            be->copy_to_host(be, got, p->grad, p->n * 4);
            be->synchronize(be);
            double e = rel_error(got, want, p->n);
            if (e > worst) worst = e;
            if (e > 1e-2) printf("  grad %-44s rel error %.3e%s\n", p->name, e, e > 5e-2 ? "  > 5e-2 (CUDA bound)" : "");
            free(want);
            free(got);
        }
        printf("  worst gradient relative error %.3e\n", worst);
    }
    model_free(m);
    return worst;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: moe_routes FIXTURE_DIR [--inject]\n"); return 2; }
    const char *dir = argv[1];
    int inject = argc > 2 && strcmp(argv[2], "--inject") == 0;
    fixture_batch b;
    if (load_batch0(dir, &b)) { fprintf(stderr, "cannot read %s/reference.json\n", dir); return 1; }
    char err[512], path[1200];
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    st_set *ref = st_open(path, err, sizeof err);
    if (!ref) { fprintf(stderr, "%s\n", err); return 1; }

    backend *cpu = backend_cpu(0);
    route_pin_install(cpu);
    route_pin_reset();
    printf("cpu (fp32):\n");
    run(cpu, dir, &b, NULL);
    int ncalls = route_pin.n;
    route_call *fp = malloc(sizeof(route_call) * ncalls);
    memcpy(fp, route_pin.calls, sizeof(route_call) * ncalls);
    route_pin.n = 0;   // fp owns them now

    backend *cu = backend_cuda(0, err, sizeof err);
    if (!cu) { fprintf(stderr, "no CUDA backend: %s\n", err); return 1; }
    route_pin_install(cu);
    printf("cuda (bf16):\n");
    run(cu, dir, &b, ref);
    if (route_pin.n != ncalls) { fprintf(stderr, "router calls: cpu %d, cuda %d\n", ncalls, route_pin.n); return 1; }

    // Per layer and row: the choices, the fp32 margin, the bf16 logits' deviation.
    int flips = 0;
    double min_margin = 1e30, max_dev = 0;
    for (int c = 0; c < ncalls; c++) {
        const route_call *r = &fp[c], *q = &route_pin.calls[c];
        int k = r->k, E = r->E, layer_flips = 0;
        double layer_min = 1e30, layer_dev = 0;
        for (int n = 0; n < r->N; n++) {
            const float *l = r->logits + (size_t)n * E, *lq = q->logits + (size_t)n * E;
            double margin = route_pin_sorted(l, E, k - 1) - route_pin_sorted(l, E, k), dev = 0;
            for (int e = 0; e < E; e++) dev = fmax(dev, fabs(lq[e] - l[e]));
            layer_min = fmin(layer_min, margin);
            layer_dev = fmax(layer_dev, dev);
            // As sets: the order inside the top-k does not change the sum.
            int same = route_pin_same_set(q->idx + n * k, r->idx + n * k, k);
            if (!same || margin < 2 * dev) {
                printf("  router call %d row %2d: fp32 top-%d {", c, n, k);
                for (int j = 0; j < k; j++) printf("%s%d", j ? "," : "", r->idx[n * k + j]);
                printf("} bf16 {");
                for (int j = 0; j < k; j++) printf("%s%d", j ? "," : "", q->idx[n * k + j]);
                printf("}  fp32 margin %.4f, bf16 logit deviation %.4f%s\n", margin, dev,
                       same ? "" : "  FLIPPED");
            }
            layer_flips += !same;
        }
        printf("router call %d (%d rows, %d experts, top-%d): %d flipped, smallest fp32 margin %.4f, "
               "largest bf16 logit deviation %.4f\n", c, r->N, E, k, layer_flips, layer_min, layer_dev);
        flips += layer_flips;
        min_margin = fmin(min_margin, layer_min);
        max_dev = fmax(max_dev, layer_dev);
    }
    printf("total: %d routing decisions flipped; smallest margin %.4f; largest logit deviation %.4f\n",
           flips, min_margin, max_dev);
    if (inject) {
        printf("cuda (bf16) with the near-ties pinned to the fp32 top-k:\n");
        route_pin_reset();
        route_pin.ref = fp;
        route_pin.nref = ncalls;
        double worst = run(cu, dir, &b, ref);
        printf("pinned %ld of %ld rows, %ld clear flips: worst gradient error %.3e (%s the 5e-2 bound)\n",
               route_pin.pinned, route_pin.rows, route_pin.clear_flips, worst,
               worst <= 5e-2 ? "within" : "OUTSIDE");
        route_pin.ref = NULL;
    }
    route_pin_reset();
    for (int c = 0; c < ncalls; c++) {
        free(fp[c].logits);
        free(fp[c].idx);
    }
    free(fp);
    cu->destroy(cu);
    cpu->destroy(cpu);
    st_close(ref);
    return 0;
}
