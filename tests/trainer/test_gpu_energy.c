// trainer/gpu_energy against a fake libnvidia-ml.so.1 (tests/trainer/fake_nvml.c, path in argv[1]):
// the joules between two reads of the counter of the GPU named by its bus id, the reasons for
// measuring nothing (no library, no such GPU, no counter), and the sum of gpu_energy_total.
#include "trainer/gpu_energy.h"
#include "test.h"

int main(int argc, char **argv) {
    if (argc < 2) SKIP("usage: test_gpu_energy FAKE_LIBNVIDIA_ML");
    const char *lib = argv[1];
    char err[512] = "";
    gpu_energy e;
    double j = -1;
    CHECK(gpu_energy_start(&e, lib, "0000:01:00.0", err, sizeof err) == 0, "%s", err);
    CHECK(gpu_energy_stop(&e, &j, err, sizeof err) == 0, "%s", err);
    CHECK(j == 5001.0, "GPU 1 grows by 2 × 2500.5 J between two reads: %.17g J", j);

    CHECK(gpu_energy_start(&e, "/nonexistent/libnvidia-ml.so.1", "0000:01:00.0", err, sizeof err) == -1, "no library");
    CHECK(strstr(err, "cannot load /nonexistent/libnvidia-ml.so.1"), "message: %s", err);
    CHECK(e.lib == NULL, "closed after a failed start");
    CHECK(gpu_energy_start(&e, lib, "0000:42:00.0", err, sizeof err) == -1, "no such GPU");
    CHECK(strstr(err, "0000:42:00.0") && strstr(err, "Not Found"), "message: %s", err);
    CHECK(gpu_energy_start(&e, lib, "0000:ff:00.0", err, sizeof err) == -1, "a GPU without a counter");
    CHECK(strstr(err, "Not Supported"), "message: %s", err);

    // One rank: its joules; a GPU rank that could not start: unknown, with its reason; no GPU: nothing.
    int any = 0, started = gpu_energy_start(&e, lib, "0000:03:00.0", err, sizeof err) == 0;
    CHECK(started, "%s", err);
    char why[256] = "";
    CHECK(gpu_energy_total(&e, started, why, sizeof why, NULL, &j, &any) == 0, "total");
    CHECK(j == 10002.0 && any, "GPU 3 grows by 4 × 2500.5 J: %.17g J (gpu %d)", j, any);
    snprintf(why, sizeof why, "cannot load libnvidia-ml.so.1");
    CHECK(gpu_energy_total(&e, 0, why, sizeof why, NULL, &j, &any) == 0 && j == -1 && any, "unmeasured GPU: %g", j);
    CHECK(strstr(why, "cannot load"), "the reason stays: %s", why);
    why[0] = 0;
    CHECK(gpu_energy_total(&e, 0, why, sizeof why, NULL, &j, &any) == 0 && j == -1 && !any, "CPU: %g %d", j, any);
    return test_finish("test_gpu_energy");
}
