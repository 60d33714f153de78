#!/usr/bin/env python3
"""dev/cuda/emu/make_emu.py SRC.cu OUT.cpp — rewrites one CUDA op file of kernels/cuda into C++ that
runs on the CPU emulation of emu.h: kernel launches become emu_launch calls, __shared__ arrays
become per-block buffers, and in linear.cu the cuBLASLt call becomes emu_gemm (cuBLAS semantics)."""
import re
import sys

src, out = sys.argv[1], sys.argv[2]
s = open(src).read()
s = s.replace('#include <mma.h>\n', '').replace('#include <cuda_pipeline_primitives.h>\n', '')
s = s.replace('#include "common.cuh"', '#include "emu.h"\n#include "common.cuh"', 1)

s = re.sub(r'extern __shared__ (?:__align__\(\d+\) )?([\w ]+?)\s+(\w+)\[\];', r'\1 *\2 = (\1 *)emu_smem();', s)
counter = [0]


def static_shared(m):
    counter[0] += 1
    t, name, n = m.group(1), m.group(2), m.group(3)
    return f'{t} *{name} = ({t} *)emu_static_shared({counter[0]}, sizeof({t}) * ({n}));'


s = re.sub(r'__shared__ ([\w ]+?)\s+(\w+)\[([^\]]+)\];', static_shared, s)


def split_top(text):
    parts, depth, cur = [], 0, ''
    for ch in text:
        if ch in '(<[{':
            depth += 1
        elif ch in ')>]}':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


while True:
    i = s.find('<<<')
    if i < 0:
        break
    # the kernel name, with template arguments, before <<<
    j = i
    if s[j - 1] == '>':
        depth = 0
        while True:
            j -= 1
            if s[j] == '>':
                depth += 1
            elif s[j] == '<':
                depth -= 1
                if depth == 0:
                    break
    while j > 0 and (s[j - 1].isalnum() or s[j - 1] == '_'):
        j -= 1
    name = s[j:i]
    k = s.find('>>>', i)
    cfg = split_top(s[i + 3:k])
    assert s[k + 3] == '(', (src, name)
    depth, p = 0, k + 3
    while True:
        if s[p] == '(':
            depth += 1
        elif s[p] == ')':
            depth -= 1
            if depth == 0:
                break
        p += 1
    args = s[k + 4:p]
    assert s[p + 1] == ';', (src, name)
    smem = cfg[2] if len(cfg) > 2 else '0'
    call = f'emu_launch(emu_dim({cfg[0]}), emu_dim({cfg[1]}), (size_t)({smem}), [&] {{ {name}({args}); }});'
    s = s[:j] + call + s[p + 2:]

if src.endswith('/linear.cu') or src == 'linear.cu':   # not grouped_linear.cu
    a = s.index('static int try_matmul(')
    b = s.index('{', a)
    depth, p = 0, b
    while True:
        if s[p] == '{':
            depth += 1
        elif s[p] == '}':
            depth -= 1
            if depth == 0:
                break
        p += 1
    head = s[a:b]
    s = (s[:a] + 'void emu_gemm(int m, int n, int k, const void *A, int lda, int ta, const void *B, int ldb, int tb, '
         'void *D, int ldd, cudaDataType dtype_d, float alpha, float beta, const void *bias);\n' + head +
         '{ (void)be; emu_gemm(m, n, k, A, lda, ta, B, ldb, tb, D, ldd, dtype_d, alpha, beta, bias); return 1; }' +
         s[p + 1:])
open(out, 'w').write(s)
