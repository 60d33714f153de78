"""The official chat templates the Python checks render with transformers' jinja2 (check_render.py,
tests/generate/check_generate.py): ../shared/testdata's, or scripts/reference's where testdata has
none, each with the bos and eos its tokenizer_config.json gives (None: no bos)."""
import os


def official_templates(testdata, source, names):
    """{name: (template file, (bos, eos))} for names, in their order."""
    ct = os.path.join(testdata, "chat_templates")
    ref = os.path.join(source, "scripts", "reference", "chat_templates")
    L3 = ("<|begin_of_text|>", "<|eot_id|>")
    table = {
        "llama3.1": (os.path.join(ct, "meta-llama-Llama-3.1-8B-Instruct.jinja"), L3),
        "llama3.0": (os.path.join(ref, "meta-llama-Meta-Llama-3-8B-Instruct.jinja"), L3),
        "llama2": (os.path.join(ref, "meta-llama-Llama-2-7b-chat-hf.jinja"), ("<s>", "</s>")),
        "qwen2.5": (os.path.join(ct, "Qwen-Qwen2.5-7B-Instruct.jinja"), (None, "<|im_end|>")),
        "qwen2": (os.path.join(ref, "Qwen-Qwen2-7B-Instruct.jinja"), (None, "<|im_end|>")),
        "qwen3": (os.path.join(ct, "Qwen-Qwen3-0.6B.jinja"), (None, "<|im_end|>")),
        "mistral-v3-spm": (os.path.join(ct, "mistral", "v3_spm.jinja"), ("<s>", "</s>")),
        "mistral-v1": (os.path.join(ct, "mistral", "v1.jinja"), ("<s>", "</s>")),
        "mistral-hf": (os.path.join(ref, "mistralai-Mistral-7B-Instruct-v0.3.jinja"), ("<s>", "</s>")),
        "mistral-nemo": (os.path.join(ct, "mistralai-Mistral-Nemo-Instruct-2407.jinja"), ("<s>", "</s>")),
        "phi3.5": (os.path.join(ct, "microsoft-Phi-3.5-mini-instruct.jinja"), ("<s>", "<|endoftext|>")),
    }
    return {n: table[n] for n in names}
