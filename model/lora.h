// model/lora.h — LoRA adapter settings as PEFT defines them: rank, alpha, dropout, targets
// among the seven linear layers of a decoder block, and the scaling (alpha/r, or alpha/sqrt(r)
// with rsLoRA). The adapters themselves live in the model (model/llama.h): A (r, in) is
// initialised Kaiming-uniform as PEFT does (kaiming_uniform_(a=sqrt(5)) → U(−1/sqrt(in),
// 1/sqrt(in))), B (out, r) is zero, and y += scale · (dropout(x)·Aᵀ)·Bᵀ.
#pragma once
#include <stddef.h>
#include <stdint.h>

struct cJSON;

// The seven linear layers of a block, in the order their weights are laid out per layer.
typedef enum {
    LORA_Q = 0, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_NUM_TARGETS
} lora_target;

// Sparse MoE models (model/moe/adapters.h): bits past the seven. EXPERTS: an adapter per expert
// on each of its gate, up and down projections; ROUTER: the router's linear. gate/up/down name
// the dense MLPs only (on an MoE model, those of mlp_only layers).
#define LORA_EXPERTS_BIT (1u << LORA_NUM_TARGETS)
#define LORA_ROUTER_BIT (1u << (LORA_NUM_TARGETS + 1))
// all-linear: every linear of a block (on MoE models the experts, not the router).
#define LORA_ALL_LINEAR (((1u << LORA_NUM_TARGETS) - 1u) | LORA_EXPERTS_BIT)
#define LORA_ATTENTION ((1u << LORA_GATE) - 1u)   // q, k, v, o

typedef struct {
    int rank;             // r ≥ 1
    float alpha;          // lora_alpha
    float dropout;        // lora_dropout, 0 ≤ p < 1, applied to the adapter's input only
    unsigned targets;     // bit (1u << lora_target) per adapted layer
    int rslora;           // 1: scale = alpha / sqrt(r) (rsLoRA); 0: alpha / r
    uint64_t seed;        // initialisation of A (kernels/rng.h stream)
} lora_config;

// quarry's defaults (the usual recipe, not PEFT's r 8 / alpha 8 / dropout 0): r 8, alpha 16,
// dropout 0.05, all-linear, alpha/r scaling, seed 42.
lora_config lora_config_default(void);

// The factor applied to the adapter's output.
float lora_scale(const lora_config *c);

// HF module name of a target: "q_proj", "k_proj", ..., "down_proj".
const char *lora_target_name(lora_target t);

// Parses a target list: a comma-separated list of presets — "all-linear" (attention, dense
// MLPs, experts), "attention" (q,k,v,o), "experts" — and names: q,k,v,o,gate,up,down (the HF
// names q_proj, ... are accepted too), router. 0 with *mask set; -1 with a message.
int lora_targets_parse(const char *text, unsigned *mask, char *err, size_t errlen);

// Writes the mask back as text ("all-linear", "all-linear,router", "q,k,v,experts"); returns buf.
char *lora_targets_format(unsigned mask, char *buf, size_t buflen);

// Checks ranges (rank ≥ 1, alpha > 0, 0 ≤ dropout < 1, at least one target). 0 ok; -1 + message.
int lora_config_check(const lora_config *c, char *err, size_t errlen);

// Fills A: f32 (r, in) with U(−1/sqrt(in), 1/sqrt(in)) from the stream (seed, stream_id), so
// each adapter's draw depends only on its identity, not on the order adapters are built.
void lora_init_a(float *a, int r, int in, uint64_t seed, uint64_t stream_id);

// The target bit of a PEFT module or adapter tensor name: "...self_attn.q_proj" → q, an expert's
// projection ("...experts.3.gate_proj", "...experts.3.w1") → LORA_EXPERTS_BIT, the router
// ("...mlp.gate", "...block_sparse_moe.gate", or "gate" alone) → LORA_ROUTER_BIT; gpt-oss's PEFT
// wrappers "...mlp.experts[.base_layer]" → experts, "...mlp.router" → router; 0 otherwise.
unsigned lora_target_of_module(const char *name);

// PEFT's target_modules for adapters on the modules `adapted` (module paths, "model.layers.0.
// self_attn.q_proj"), among the model's linear modules `linear`: the list of their last names
// ("q_proj", "gate") when PEFT's suffix match selects exactly those; else (an MoE model whose
// experts are adapted and dense MLPs are not, both named gate_proj...) a regex PEFT fullmatches,
// one alternative per path with its layer and expert indices as \d+. A new cJSON item, or NULL
// when out of memory.
struct cJSON *lora_peft_target_modules(const char *const *adapted, int n_adapted, const char *const *linear,
                                       int n_linear);

// PEFT's adapter_config.json (parsed: config; path for messages) → lora_config with dropout 0
// (for applying or merging, not training). Refuses what quarry cannot apply: a peft_type other
// than LORA, DoRA, fan_in_fan_out, rank_pattern/alpha_pattern, modules_to_save; r must be a
// positive integer and lora_alpha positive. target_modules is parsed when present (*targets 0
// when absent); need_targets makes it required. 0, or -1 with a message naming the file.
int lora_config_from_peft(const struct cJSON *config, const char *path, int need_targets, lora_config *lc,
                          char *err, size_t errlen);

// 1 when name is one of PEFT's fused expert adapter tensors of gpt-oss ("...mlp.experts.lora_A.weight",
// "...mlp.experts.base_layer.lora_B.weight": target_parameters, model/lora_peft.h).
int lora_peft_is_fused_name(const char *name);
