#!/usr/bin/env python3
"""Trim a llama.cpp source tree's CUDA kernels to what one f16 model needs.

usage: cuda_slim.py LLAMA_CPP_DIR HEAD_DIM

llama.cpp compiles every quantized matmul (mmq) and a flash-attention kernel for every head
size; that is most of a CUDA build's time. For a model with f16 weights and one head size
none of the others ever runs, so their explicit instantiations are replaced by one stub file
per family whose functions abort: same symbols, nothing to compile. Run it before CMake
configures the tree (the instance files are globbed then). Used for both batchd's libraries
and the llama-server anchor, so the two run the same kernels.
"""
import pathlib
import re
import sys

# family: (instance-file prefix, header, templated function, declarations its stub needs)
FAMILIES = {
    "mmq": ("mmq-instance-", "mmq.cuh", "mul_mat_q_case", "struct mmq_args;"),
    "fattn-mma-f16": ("fattn-mma-f16-instance-", "fattn-mma-f16.cuh",
                      "ggml_cuda_flash_attn_ext_mma_f16_case", ""),
    "fattn-tile": ("fattn-tile-instance-", "fattn-tile.cuh",
                   "ggml_cuda_flash_attn_ext_tile_case", ""),
}
DECL = re.compile(r"^(DECL_\w+)\((.*)\);\s*$")


def keeps(family, args, head_dim):
    """Whether an instantiation can run for this model (f16 weights, one head size)."""
    if family == "mmq":
        return False
    dkq, dv = (int(a) for a in args.split(",")[:2])
    return dkq == head_dim and dv == head_dim


def macros(header_text):
    """The DECL_* macros of a header, verbatim (they expand to explicit instantiations)."""
    return re.findall(r"^#define DECL_\w+\(.*?(?:\\\n.*?)*\n", header_text, re.M)


def slim(cuda_dir, head_dim):
    inst = cuda_dir / "template-instances"
    for family, (prefix, header, function, extra) in FAMILIES.items():
        text = (cuda_dir / header).read_text()
        head = re.search(r"template\s*<([^>]*)>\s*void\s+" + function + r"\s*\(([^)]*)\)", text)
        if head is None:
            sys.exit(f"{header}: no template for {function}")
        stubbed = []
        for path in sorted(inst.glob(prefix + "*.cu")):
            lines = path.read_text().splitlines()
            kept = []
            for line in lines:
                m = DECL.match(line)
                if m and not keeps(family, m.group(2), head_dim):
                    stubbed.append(line)
                else:
                    kept.append(line)
            if any(DECL.match(l) for l in kept):
                path.write_text("\n".join(kept) + "\n")
            else:
                path.unlink()
        stub = [
            f"// Written by bench/cuda_slim.py: {family} kernels an f16 model with head size "
            f"{head_dim} never runs.",
            '#include "../common.cuh"',
            extra,
            f"template <{head.group(1)}>",
            f"void {function}({head.group(2)}) {{",
            f'    GGML_ABORT("{function}: not built (bench/cuda_slim.py)");',
            "}",
            *macros(text),
            *stubbed,
        ]
        (inst / f"{prefix}slim-stubs.cu").write_text("\n".join(stub) + "\n")
        print(f"{family}: {len(stubbed)} instantiations stubbed")


if __name__ == "__main__":
    slim(pathlib.Path(sys.argv[1]) / "ggml/src/ggml-cuda", int(sys.argv[2]))
