//! Synthetic GPT-2-architecture models, written as GGUF files that llama.cpp loads.
//!
//! The models have the real GPT-2 tokenizer (so tokenization is exactly GPT-2's) and
//! deterministic pseudo-random weights (so they produce meaningless but varied text, and the
//! same shape always gives a byte-identical file). They exist to exercise the daemon without
//! downloading a model. A model written here carries the metadata key [`SYNTHETIC_KEY`] = true.
//!
//! The weight scales are chosen so that greedy decoding does not degenerate: the output
//! projection is tied to the token embedding (as in GPT-2, and llama.cpp's GPT-2 loader uses
//! `token_embd` when `output.weight` is absent), so if the residual stream were dominated by
//! the input token's embedding the model would predict its input forever. Instead each block
//! adds contributions a few times larger than the embedding, which makes the next token depend
//! on the position and the whole context. The embedding rows of `<|endoftext|>` and of tokens
//! that are not valid UTF-8 on their own (or hold control characters) are damped so that they
//! are practically never the argmax: greedy output is readable (if meaningless) text that does
//! not stop early.
//!
//! Past 400 lines only with its tests, which load the written models through llama.cpp.
//!
//! One file past 400 lines: the writer (shapes, weights, metadata) is about 400 lines and
//! the rest is its tests, which read back what it writes.

pub mod gguf;
pub mod tokenizer;

use anyhow::Context;
use gguf::{f32_to_f16_bits, GgufBuilder, TensorInfo, TensorType, Value};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokenizer::{Gpt2Vocab, EOT_TOKEN_ID, N_VOCAB};

/// Metadata key (bool, true) marking a model written by this module. Read it from a loaded
/// model with `LlamaModel::meta_val_str(SYNTHETIC_KEY)`, which returns `"true"`.
pub const SYNTHETIC_KEY: &str = "batchd.synthetic";

/// Metadata key (string) holding the [`Shape`] name (`"tiny"` or `"small"`).
pub const SYNTHETIC_SHAPE_KEY: &str = "batchd.synthetic.shape";

/// Model shapes we can synthesise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// 64-wide, 2 layers, 4 heads: about 8 MB, for tests.
    Tiny,
    /// GPT-2 small's shape (768-wide, 12 layers, 12 heads): about 250 MB.
    Small,
}

/// The hyperparameters of a [`Shape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeSpec {
    /// Embedding width.
    pub n_embd: u32,
    /// Number of transformer blocks.
    pub n_layer: u32,
    /// Number of attention heads.
    pub n_head: u32,
    /// Training context length (number of position embeddings).
    pub n_ctx: u32,
    /// Store the matrices (embeddings included) as f16; norms and biases are always f32.
    pub f16: bool,
}

impl Shape {
    /// The hyperparameters of this shape.
    pub fn spec(self) -> ShapeSpec {
        match self {
            Shape::Tiny => ShapeSpec {
                n_embd: 64,
                n_layer: 2,
                n_head: 4,
                n_ctx: 1024,
                f16: true,
            },
            Shape::Small => ShapeSpec {
                n_embd: 768,
                n_layer: 12,
                n_head: 12,
                n_ctx: 1024,
                f16: true,
            },
        }
    }

    /// The lowercase name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Tiny => "tiny",
            Shape::Small => "small",
        }
    }
}

/// Standard deviation of the token embedding (also the output projection).
const STD_TOKEN_EMBD: f32 = 0.02;
/// Factor applied to the embedding rows of tokens that should (practically) never be sampled.
const DAMPED_ROW_SCALE: f32 = 0.1;
/// Standard deviation of the position embedding: big enough that the input changes with the
/// position even when a token repeats, small enough that the output still depends on the prompt.
const STD_POS_EMBD: f32 = 0.05;
/// Standard deviation of the attention-out and FFN-down projections, which set the size of
/// each block's contribution to the residual stream (see the module docs).
const STD_RESIDUAL_OUT: f32 = 0.04;
/// The QKV and FFN-up projections have standard deviation `GAIN_IN / sqrt(n_embd)`, so their
/// outputs have standard deviation about `GAIN_IN` (their input is layer-normed): attention is
/// fairly sharp and the GELU fairly non-linear, which keeps greedy decoding from cycling.
const GAIN_IN: f32 = 2.0;

/// How a tensor is initialised.
#[derive(Clone, Copy)]
enum Init {
    /// Every element the same value.
    Const(f32),
    /// Pseudo-normal with this standard deviation.
    Normal(f32),
    /// Like `Normal`, but each row (of `ne[0]` elements) sums to exactly zero: its second half
    /// is its first half negated. Used for `ffn_down`, whose input (GELU outputs) has a
    /// positive mean that would otherwise add the same direction at every position.
    NormalZeroRowSum(f32),
    /// Pseudo-normal with standard deviation [`STD_TOKEN_EMBD`], the rows of the tokens that
    /// [`damped_tokens`] picks scaled by [`DAMPED_ROW_SCALE`].
    TokenEmbd,
}

/// Write a GPT-2-architecture GGUF with the real GPT-2 vocabulary and deterministic synthetic weights.
///
/// The file is written to a temporary name beside `path` and renamed into place, so readers
/// never see a partial file; parent directories are created.
pub fn write_model(shape: Shape, path: &Path) -> anyhow::Result<()> {
    let vocab = Gpt2Vocab::load()?;
    let damped = damped_tokens(&vocab);
    let (builder, inits) = describe(shape, vocab);

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = temp_path(path);
    let result = (|| -> anyhow::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut next = 0;
        builder.write(&mut w, |t, w| {
            let init = inits[next];
            next += 1;
            fill_tensor(t, init, &damped, w)
        })?;
        let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// A temporary file name beside `path`, unique within this process and across processes.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Builds the GGUF description (metadata and tensor list) and each tensor's initialiser.
fn describe(shape: Shape, vocab: Gpt2Vocab) -> (GgufBuilder, Vec<Init>) {
    let s = shape.spec();
    let (n_embd, n_ctx) = (u64::from(s.n_embd), u64::from(s.n_ctx));
    let n_ff = 4 * n_embd;
    let mat = if s.f16 {
        TensorType::F16
    } else {
        TensorType::F32
    };

    let mut b = GgufBuilder::new();
    let mut token_type = vec![1i32; vocab.tokens.len()]; // LLAMA_TOKEN_TYPE_NORMAL
    token_type[EOT_TOKEN_ID as usize] = 3; // LLAMA_TOKEN_TYPE_CONTROL
    b.kv("general.architecture", Value::Str("gpt2".into()))
        .kv(
            "general.name",
            Value::Str(format!(
                "batchd synthetic GPT-2 ({}) — random weights, meaningless text",
                shape.name()
            )),
        )
        .kv("general.file_type", Value::U32(u32::from(s.f16))) // ALL_F32 = 0, MOSTLY_F16 = 1
        .kv("gpt2.context_length", Value::U32(s.n_ctx))
        .kv("gpt2.embedding_length", Value::U32(s.n_embd))
        .kv("gpt2.feed_forward_length", Value::U32(4 * s.n_embd))
        .kv("gpt2.block_count", Value::U32(s.n_layer))
        .kv("gpt2.attention.head_count", Value::U32(s.n_head))
        .kv("gpt2.attention.layer_norm_epsilon", Value::F32(1e-5))
        .kv("tokenizer.ggml.model", Value::Str("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::Str("gpt-2".into()))
        .kv("tokenizer.ggml.tokens", Value::StrArray(vocab.tokens))
        .kv("tokenizer.ggml.token_type", Value::I32Array(token_type))
        .kv("tokenizer.ggml.merges", Value::StrArray(vocab.merges))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(EOT_TOKEN_ID))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(EOT_TOKEN_ID))
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(false))
        .kv(SYNTHETIC_KEY, Value::Bool(true))
        .kv(SYNTHETIC_SHAPE_KEY, Value::Str(shape.name().into()));

    // Shapes (ne, innermost first) as llama.cpp's GPT-2 loader creates them. No output.weight:
    // the loader then ties the output projection to token_embd.
    let std_in = GAIN_IN / (s.n_embd as f32).sqrt();
    let mut inits = Vec::new();
    let mut add = |name: &str, ne: &[u64], ty: TensorType, init: Init| {
        b.tensor(name, ne, ty);
        inits.push(init);
    };
    add(
        "token_embd.weight",
        &[n_embd, N_VOCAB as u64],
        mat,
        Init::TokenEmbd,
    );
    add(
        "position_embd.weight",
        &[n_embd, n_ctx],
        mat,
        Init::Normal(STD_POS_EMBD),
    );
    let f32 = TensorType::F32;
    for i in 0..s.n_layer {
        let n = |t: &str| format!("blk.{i}.{t}");
        add(&n("attn_norm.weight"), &[n_embd], f32, Init::Const(1.0));
        add(&n("attn_norm.bias"), &[n_embd], f32, Init::Const(0.0));
        add(
            &n("attn_qkv.weight"),
            &[n_embd, 3 * n_embd],
            mat,
            Init::Normal(std_in),
        );
        add(&n("attn_qkv.bias"), &[3 * n_embd], f32, Init::Const(0.0));
        add(
            &n("attn_output.weight"),
            &[n_embd, n_embd],
            mat,
            Init::Normal(STD_RESIDUAL_OUT),
        );
        add(&n("attn_output.bias"), &[n_embd], f32, Init::Const(0.0));
        add(&n("ffn_norm.weight"), &[n_embd], f32, Init::Const(1.0));
        add(&n("ffn_norm.bias"), &[n_embd], f32, Init::Const(0.0));
        add(
            &n("ffn_up.weight"),
            &[n_embd, n_ff],
            mat,
            Init::Normal(std_in),
        );
        add(&n("ffn_up.bias"), &[n_ff], f32, Init::Const(0.0));
        add(
            &n("ffn_down.weight"),
            &[n_ff, n_embd],
            mat,
            Init::NormalZeroRowSum(STD_RESIDUAL_OUT),
        );
        add(&n("ffn_down.bias"), &[n_embd], f32, Init::Const(0.0));
    }
    add("output_norm.weight", &[n_embd], f32, Init::Const(1.0));
    add("output_norm.bias", &[n_embd], f32, Init::Const(0.0));
    (b, inits)
}

/// For each token id: whether its embedding row is damped (see the module docs).
fn damped_tokens(vocab: &Gpt2Vocab) -> Vec<bool> {
    vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(id, t)| {
            let printable = match tokenizer::token_bytes(t) {
                Some(bytes) => {
                    std::str::from_utf8(&bytes).is_ok()
                        && !bytes
                            .iter()
                            .any(|&c| (c < 0x20 && c != b'\n' && c != b'\t') || c == 0x7f)
                }
                None => false,
            };
            id == EOT_TOKEN_ID as usize || !printable
        })
        .collect()
}

/// splitmix64: a small, fast, portable PRNG.
struct Rng(u64);

impl Rng {
    /// Seeds from a name (FNV-1a), so each tensor gets its own stream.
    fn from_name(name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng(h)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// An approximately standard-normal value: the Irwin–Hall sum of 12 uniforms, minus 6.
    /// Integer arithmetic only, so the result is the same on every platform.
    fn normal(&mut self) -> f32 {
        let mut sum = 0u64;
        for _ in 0..3 {
            let r = self.next_u64();
            sum += (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48);
        }
        ((sum as f64 - 6.0 * 65536.0) / 65536.0) as f32
    }
}

/// log2 of the number of entries in a tensor's table of pseudo-normal values.
const TABLE_BITS: u32 = 12;
const TABLE_MASK: u64 = (1 << TABLE_BITS) - 1;

/// The element bits of one value of type `ty` (zero-extended).
fn element_bits(ty: TensorType, x: f32) -> u64 {
    match ty {
        TensorType::F32 => u64::from(x.to_bits()),
        TensorType::F16 => u64::from(f32_to_f16_bits(x)),
    }
}

/// Writes the data of one tensor.
///
/// Random tensors draw each element from a per-tensor table of 4096 pseudo-normal values
/// (already encoded), indexed by 12 bits of the PRNG, and are assembled 8 bytes at a time:
/// this keeps a debug build fast (the small model writes in a few seconds).
fn fill_tensor(t: &TensorInfo, init: Init, damped: &[bool], w: &mut dyn Write) -> io::Result<()> {
    let es = t.ty.size() as usize;
    let row_len = t.ne[0] as usize;
    let n_rows = (t.n_elements() / t.ne[0]) as usize;
    let (std, damped, zero_row_sum) = match init {
        Init::Const(v) => {
            let one = element_bits(t.ty, v).to_le_bytes();
            let row = one[..es].repeat(row_len);
            for _ in 0..n_rows {
                w.write_all(&row)?;
            }
            return Ok(());
        }
        Init::Normal(std) => (std, None, false),
        Init::NormalZeroRowSum(std) => (std, None, true),
        Init::TokenEmbd => (STD_TOKEN_EMBD, Some(damped), false),
    };

    let per_word = 8 / es;
    let n_words = row_len / per_word;
    assert_eq!(row_len % (2 * per_word), 0, "{}: row length", t.name);
    let mut rng = Rng::from_name(&t.name);
    let (mut table, mut damped_table) = (Vec::new(), Vec::new());
    for _ in 0..1 << TABLE_BITS {
        let z = rng.normal();
        table.push(element_bits(t.ty, z * std));
        damped_table.push(element_bits(t.ty, z * std * DAMPED_ROW_SCALE));
    }
    // With `zero_row_sum`, the second half of each row is the first half negated.
    let random_words = if zero_row_sum { n_words / 2 } else { n_words };
    let sign_bits: u64 = match t.ty {
        TensorType::F16 => 0x8000_8000_8000_8000,
        TensorType::F32 => 0x8000_0000_8000_0000,
    };

    let mut words = vec![0u64; n_words];
    let mut bytes = vec![0u8; row_len * es];
    for r in 0..n_rows {
        let tab = match damped {
            Some(d) if d.get(r).copied().unwrap_or(false) => &damped_table,
            _ => &table,
        };
        let pick = |bits: u64| tab[(bits & TABLE_MASK) as usize];
        match t.ty {
            TensorType::F16 => {
                for word in &mut words[..random_words] {
                    let b = rng.next_u64();
                    *word =
                        pick(b) | pick(b >> 16) << 16 | pick(b >> 32) << 32 | pick(b >> 48) << 48;
                }
            }
            TensorType::F32 => {
                for word in &mut words[..random_words] {
                    let b = rng.next_u64();
                    *word = pick(b) | pick(b >> 32) << 32;
                }
            }
        }
        let (first, second) = words.split_at_mut(random_words);
        for (neg, pos) in second.iter_mut().zip(first.iter()) {
            *neg = pos ^ sign_bits;
        }
        for (out, word) in bytes.chunks_exact_mut(8).zip(&words) {
            out.copy_from_slice(&word.to_le_bytes());
        }
        w.write_all(&bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::gguf::read;
    use super::*;

    /// A fresh path under the system temp dir, removed on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            TempPath(std::env::temp_dir().join(format!(
                "batchd-modelgen-{}-{n}/{tag}.gguf",
                std::process::id()
            )))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    #[test]
    fn normal_table_has_unit_variance() {
        let mut rng = Rng::from_name("x");
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| f64::from(rng.normal())).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var - 1.0).abs() < 0.03, "{var}");
    }

    #[test]
    fn tiny_model_file_layout_and_determinism() {
        let tmp = TempPath::new("tiny");
        write_model(Shape::Tiny, &tmp.0).unwrap();
        let bytes = std::fs::read(&tmp.0).unwrap();
        assert!(bytes.len() < 10 << 20, "{} bytes", bytes.len());
        // No temporary file left behind.
        let entries = std::fs::read_dir(tmp.0.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 1);

        let p = read::parse(&bytes);
        assert_eq!(p.version, 3);
        let s = |k: &str| match p.get(k) {
            Some(Value::Str(s)) => s.clone(),
            v => panic!("{k}: {v:?}"),
        };
        let u = |k: &str| match p.get(k) {
            Some(Value::U32(x)) => *x,
            v => panic!("{k}: {v:?}"),
        };
        assert_eq!(s("general.architecture"), "gpt2");
        assert!(s("general.name").contains("(tiny)"));
        assert_eq!(s("tokenizer.ggml.model"), "gpt2");
        assert_eq!(s("tokenizer.ggml.pre"), "gpt-2");
        assert_eq!(u("gpt2.context_length"), 1024);
        assert_eq!(u("gpt2.embedding_length"), 64);
        assert_eq!(u("gpt2.feed_forward_length"), 256);
        assert_eq!(u("gpt2.block_count"), 2);
        assert_eq!(u("gpt2.attention.head_count"), 4);
        assert_eq!(u("tokenizer.ggml.bos_token_id"), 50256);
        assert_eq!(u("tokenizer.ggml.eos_token_id"), 50256);
        assert_eq!(
            p.get("gpt2.attention.layer_norm_epsilon"),
            Some(&Value::F32(1e-5))
        );
        assert_eq!(p.get(SYNTHETIC_KEY), Some(&Value::Bool(true)));
        match p.get("tokenizer.ggml.tokens") {
            Some(Value::StrArray(t)) => {
                assert_eq!(t.len(), 50257);
                assert_eq!(t[15496], "Hello");
            }
            v => panic!("{v:?}"),
        }
        match p.get("tokenizer.ggml.merges") {
            Some(Value::StrArray(m)) => assert_eq!(m.len(), 50000),
            v => panic!("{v:?}"),
        }
        match p.get("tokenizer.ggml.token_type") {
            Some(Value::I32Array(t)) => {
                assert_eq!(t.len(), 50257);
                assert_eq!(t[50256], 3);
                assert!(t[..50256].iter().all(|&x| x == 1));
            }
            v => panic!("{v:?}"),
        }

        let tensors = p.tensor_map();
        assert_eq!(tensors.len(), 4 + 2 * 12);
        assert_eq!(tensors["token_embd.weight"].ne, [64, 50257]);
        assert_eq!(tensors["position_embd.weight"].ne, [64, 1024]);
        assert_eq!(tensors["blk.1.attn_qkv.weight"].ne, [64, 192]);
        assert_eq!(tensors["blk.1.attn_qkv.bias"].ne, [192]);
        assert_eq!(tensors["blk.0.ffn_up.weight"].ne, [64, 256]);
        assert_eq!(tensors["blk.0.ffn_down.weight"].ne, [256, 64]);
        assert_eq!(tensors["blk.0.ffn_down.weight"].ty, TensorType::F16);
        assert_eq!(tensors["output_norm.bias"].ty, TensorType::F32);
        assert!(!tensors.contains_key("output.weight"));
        let (last, last_off) = p.tensors.last().unwrap();
        assert_eq!(
            bytes.len() as u64,
            p.data_start + last_off + last.n_bytes().next_multiple_of(32)
        );

        // Same shape, same bytes.
        let tmp2 = TempPath::new("tiny-again");
        write_model(Shape::Tiny, &tmp2.0).unwrap();
        assert!(std::fs::read(&tmp2.0).unwrap() == bytes);
    }

    mod llama {
        use super::super::*;
        use super::TempPath;
        use llama_cpp_2::context::params::LlamaContextParams;
        use llama_cpp_2::llama_backend::LlamaBackend;
        use llama_cpp_2::llama_batch::LlamaBatch;
        use llama_cpp_2::model::params::LlamaModelParams;
        use llama_cpp_2::model::LlamaModel;
        use llama_cpp_2::token::LlamaToken;
        use std::collections::HashSet;
        use std::num::NonZeroU32;
        use std::time::Instant;

        /// llama.cpp's backend may be initialised only once per process.
        fn backend() -> &'static LlamaBackend {
            crate::engine::init_backend().expect("llama backend init")
        }

        /// Writes and loads a model of `shape`, reporting the timings.
        fn write_and_load(shape: Shape, tmp: &TempPath) -> LlamaModel {
            let t = Instant::now();
            write_model(shape, &tmp.0).unwrap();
            let size = std::fs::metadata(&tmp.0).unwrap().len();
            eprintln!("{shape:?}: wrote {size} bytes in {:?}", t.elapsed());
            let t = Instant::now();
            let model = LlamaModel::load_from_file(backend(), &tmp.0, &LlamaModelParams::default())
                .unwrap();
            eprintln!("{shape:?}: loaded in {:?}", t.elapsed());
            model
        }

        /// Greedy-decodes `n` tokens after `prompt`, checking every logit is finite.
        fn greedy(model: &LlamaModel, prompt: &str, n: usize) -> Vec<LlamaToken> {
            let params = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(512))
                .with_n_batch(512);
            let mut ctx = model.new_context(backend(), params).unwrap();
            let prompt = model.vocab().tokenize(prompt.as_bytes(), false, false);
            let mut batch = LlamaBatch::new(512, 1);
            let last = prompt.len() - 1;
            for (i, &t) in prompt.iter().enumerate() {
                batch.add(t, i as i32, &[0], i == last).unwrap();
            }
            let mut out = Vec::new();
            for pos in prompt.len() as i32..(prompt.len() + n) as i32 {
                ctx.decode(&mut batch).unwrap();
                let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
                assert!(logits.iter().all(|x| x.is_finite()));
                let next = (0..logits.len())
                    .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                    .unwrap();
                let next = LlamaToken(next as i32);
                out.push(next);
                batch.clear();
                batch.add(next, pos, &[0], true).unwrap();
            }
            out
        }

        /// Checks a greedy continuation looks like varied, printable text without EOS.
        fn check_not_degenerate(model: &LlamaModel) {
            let a = greedy(model, "Hello world", 128);
            let text = model.vocab().detokenize(&a, false, false);
            let ids: Vec<i32> = a.iter().map(|t| t.0).collect();
            eprintln!(
                "greedy after \"Hello world\": {ids:?}\n{:?}",
                String::from_utf8_lossy(&text)
            );
            assert!(!a.contains(&LlamaToken(50256)), "EOS in {ids:?}");
            let distinct: HashSet<_> = a.iter().collect();
            assert!(distinct.len() >= 64, "{} distinct: {ids:?}", distinct.len());
            let repeats = a.windows(2).filter(|w| w[0] == w[1]).count();
            assert!(repeats <= 16, "{repeats} immediate repeats: {ids:?}");
            assert!(std::str::from_utf8(&text).is_ok(), "{text:?}");
            // Deterministic, and the continuation depends on the prompt.
            assert_eq!(greedy(model, "Hello world", 128), a);
            assert_ne!(greedy(model, "The quick brown fox", 128), a);
        }

        /// Loads the tiny model with llama.cpp and runs it.
        #[test]
        fn tiny_model_runs_in_llama_cpp() {
            let tmp = TempPath::new("tiny");
            let model = write_and_load(Shape::Tiny, &tmp);
            // Metadata is readable before loading, with llama.cpp's own GGUF parser...
            let gguf = llama_cpp_2::gguf::GgufContext::from_file(&tmp.0).unwrap();
            assert_eq!(gguf.n_tensors(), 28);
            let key = gguf.find_key(SYNTHETIC_KEY);
            assert!(key >= 0);
            assert_eq!(gguf.kv_type(key), 7); // GGUF_TYPE_BOOL
            let key = gguf.find_key(SYNTHETIC_SHAPE_KEY);
            assert_eq!(gguf.val_str(key), Some("tiny"));
            assert_eq!(gguf.find_key("no.such.key"), -1);
            // ...and from the loaded model, as strings.
            assert_eq!(model.meta_val_str(SYNTHETIC_KEY).unwrap(), "true");
            assert_eq!(model.meta_val_str(SYNTHETIC_SHAPE_KEY).unwrap(), "tiny");
            assert_eq!(model.meta_val_str("general.architecture").unwrap(), "gpt2");
            assert!(model.meta_val_str("no.such.key").is_err());
            assert_eq!(model.n_vocab(), 50257);
            assert_eq!(model.n_embd(), 64);
            assert_eq!(model.n_layer(), 2);
            assert_eq!(model.n_head(), 4);
            assert_eq!(model.n_ctx_train(), 1024);

            let vocab = model.vocab();
            assert_eq!(vocab.bos(), LlamaToken(50256));
            assert_eq!(vocab.eos(), LlamaToken(50256));
            assert!(vocab.is_eog(LlamaToken(50256)));
            assert!(!vocab.should_add_bos());
            let ids = vocab.tokenize(b"Hello world", false, false);
            assert_eq!(ids, [LlamaToken(15496), LlamaToken(995)]);
            assert_eq!(vocab.detokenize(&ids, false, false), b"Hello world");
            let ids = vocab.tokenize(b"Hello<|endoftext|>", false, true);
            assert_eq!(ids, [LlamaToken(15496), LlamaToken(50256)]);

            check_not_degenerate(&model);
        }

        /// The same for the small model (250 MB): `cargo test -p batchd modelgen -- --ignored`.
        #[test]
        #[ignore = "writes a 250 MB model"]
        fn small_model_runs_in_llama_cpp() {
            let tmp = TempPath::new("small");
            let model = write_and_load(Shape::Small, &tmp);
            assert_eq!(model.meta_val_str(SYNTHETIC_SHAPE_KEY).unwrap(), "small");
            assert_eq!(model.n_embd(), 768);
            assert_eq!(model.n_layer(), 12);
            assert_eq!(model.n_head(), 12);
            let ids = model.vocab().tokenize(b"Hello world", false, false);
            assert_eq!(ids, [LlamaToken(15496), LlamaToken(995)]);
            check_not_degenerate(&model);
        }
    }
}
