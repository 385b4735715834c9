// llama.cpp's own batched decode, with nothing of batchd in the way: B sequences are
// prefilled, then decoded together for NTG steps, each step ONE llama_decode of B tokens
// with logits requested for every one (as llama.cpp's batched-bench does; no sampling).
// It links the same libllama as batchd, so it is the reference the GPU targets compare
// against. The llama.cpp vendored in the llama-cpp-sys-2 crate has no batched-bench
// source, hence this file.
//
//   cc -O2 bench/llama_batched.c -I SRC/include -I SRC/ggml/include -L LIB -lllama -lggml-base -o llama-batched
//   llama-batched MODEL [--batches 1,16,64] [--npp 16] [--ntg 128] [--fa 0|1] [--kvu 0|1]
//                [--ngl 99] [--threads N] [--sync 0|1]
// --sync 1 waits for each step's logits before the next step, as anything that feeds the
// sampled tokens back must; by default steps are queued back to back, as batched-bench
// does, so the CPU prepares step N+1 while the GPU still runs step N.
// Prints one JSON object per batch size.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void) user;
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static void add(struct llama_batch *b, llama_token t, llama_pos pos, llama_seq_id seq, int logits) {
    int i = b->n_tokens++;
    b->token[i] = t;
    b->pos[i] = pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = seq;
    b->logits[i] = (int8_t) logits;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [--batches 1,16,64] [--npp N] [--ntg N] [--fa 0|1] "
                        "[--kvu 0|1] [--ngl N] [--threads N] [--sync 0|1]\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    char batches[256] = "1,16,64";
    int npp = 16, ntg = 128, fa = 0, kvu = 0, ngl = 99, threads = 4, sync = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--batches")) snprintf(batches, sizeof batches, "%s", v);
        else if (!strcmp(k, "--npp")) npp = atoi(v);
        else if (!strcmp(k, "--ntg")) ntg = atoi(v);
        else if (!strcmp(k, "--fa")) fa = atoi(v);
        else if (!strcmp(k, "--kvu")) kvu = atoi(v);
        else if (!strcmp(k, "--ngl")) ngl = atoi(v);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--sync")) sync = atoi(v);
        else { fprintf(stderr, "unknown flag %s\n", k); return 2; }
    }
    int bs[64], nb = 0, max_b = 1;
    for (char *tok = strtok(batches, ","); tok && nb < 64; tok = strtok(NULL, ",")) {
        bs[nb] = atoi(tok);
        if (bs[nb] > max_b) max_b = bs[nb];
        nb++;
    }

    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", model_path); return 1; }
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    struct llama_context_params cp = llama_context_default_params();
    // llama.cpp rounds each sequence's share up to 256 cells.
    int per_seq = ((npp + ntg + 255) / 256) * 256;
    cp.n_ctx = (uint32_t) (per_seq * max_b);
    cp.n_batch = (uint32_t) (max_b > 512 ? max_b : 512);
    cp.n_ubatch = 512;
    cp.n_seq_max = (uint32_t) max_b;
    cp.flash_attn_type = fa ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.kv_unified = kvu != 0;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create the context\n"); return 1; }
    struct llama_batch batch = llama_batch_init((int32_t) cp.n_batch, 0, 1);

    for (int w = -1; w < nb; w++) {
        // w = -1 is a warm-up at the largest batch size, not printed.
        int b = w < 0 ? max_b : bs[w];
        int steps = w < 0 ? 4 : ntg;
        llama_memory_clear(llama_get_memory(ctx), true);
        double t0 = now_s();
        batch.n_tokens = 0;
        for (int s = 0; s < b; s++) {
            for (int p = 0; p < npp; p++) {
                if (batch.n_tokens == (int) cp.n_batch) {
                    if (llama_decode(ctx, batch)) { fprintf(stderr, "prefill failed\n"); return 1; }
                    batch.n_tokens = 0;
                }
                llama_token t = (llama_token) (198 + (s * 7919 + p * 104729) % 40000) % n_vocab;
                add(&batch, t, p, s, p == npp - 1);
            }
        }
        if (batch.n_tokens && llama_decode(ctx, batch)) { fprintf(stderr, "prefill failed\n"); return 1; }
        llama_synchronize(ctx);
        double t1 = now_s();
        for (int i = 0; i < steps; i++) {
            batch.n_tokens = 0;
            for (int s = 0; s < b; s++) {
                add(&batch, (llama_token) ((s * 31 + i * 17) % n_vocab), npp + i, s, 1);
            }
            if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed at B=%d\n", b); return 1; }
            if (sync) {
                // Reading an output waits for the step, as sampling does.
                volatile float sink = llama_get_logits_ith(ctx, b - 1)[0];
                (void) sink;
            }
        }
        llama_synchronize(ctx);
        double t2 = now_s();
        if (w >= 0) {
            printf("{\"batch\": %d, \"npp\": %d, \"ntg\": %d, \"fa\": %d, \"kv_unified\": %d, \"sync\": %d, "
                   "\"prefill_tok_s\": %.1f, \"decode_tok_s\": %.1f, \"step_ms\": %.3f}\n",
                   b, npp, ntg, fa, kvu, sync, b * npp / (t1 - t0), (double) b * ntg / (t2 - t1),
                   (t2 - t1) * 1e3 / ntg);
            fflush(stdout);
        }
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
