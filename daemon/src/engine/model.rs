//! Loading a GGUF model and describing it.

use std::path::Path;

use anyhow::anyhow;
use batchd_protocol::ModelInfo;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

/// The metadata key our own synthetic models carry.
pub const SYNTHETIC_KEY: &str = "batchd.synthetic";

/// What users of a synthetic model must be told.
pub const SYNTHETIC_NOTE: &str =
    "built-in demo model: GPT-2 architecture and real GPT-2 vocabulary, \
but deterministic synthetic weights, so its text is meaningless. Serve a real GPT-2 GGUF with \
`batchd --model PATH` (see the README).";

/// A loaded model and what `status` says about it.
pub struct LoadedModel {
    pub model: LlamaModel,
    pub info: ModelInfo,
}

/// Loads `path` with `gpu_layers` layers offloaded (where a GPU backend exists).
pub fn load_model(
    backend: &LlamaBackend,
    path: &Path,
    gpu_layers: u32,
) -> anyhow::Result<LoadedModel> {
    if !path.is_file() {
        return Err(anyhow!("model file {} does not exist", path.display()));
    }
    let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
    let model = LlamaModel::load_from_file(backend, path, &params)
        .map_err(|e| anyhow!("loading model {}: {e}", path.display()))?;
    let synthetic = model
        .meta_val_str(SYNTHETIC_KEY)
        .is_ok_and(|v| v == "true" || v == "1");
    let name = model.meta_val_str("general.name").unwrap_or_else(|_| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let info = ModelInfo {
        name,
        path: path.display().to_string(),
        synthetic,
        note: if synthetic {
            SYNTHETIC_NOTE.to_string()
        } else {
            String::new()
        },
        n_ctx_train: model.n_ctx_train(),
        n_vocab: model.n_vocab() as u32,
    };
    Ok(LoadedModel { model, info })
}
