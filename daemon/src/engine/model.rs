//! Loading a GGUF model and describing it.

use std::path::Path;

use anyhow::anyhow;
use batchd_protocol::ModelInfo;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::{list_llama_ggml_backend_devices, LlamaBackendDeviceType};

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
    /// Where its layers run.
    pub device: ComputeDevice,
}

/// Where the model's layers run, found at run time from the backends llama.cpp loaded (a
/// binary linked against shared llama.cpp libraries learns only then whether they were
/// built with CUDA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComputeDevice {
    /// Backend name in lower case: `cpu`, `cuda`, `metal`, `vulkan`, ...
    pub backend: String,
    /// The device, e.g. `NVIDIA H100 80GB HBM3`, or the CPU's name.
    pub name: String,
    /// Layers offloaded to the GPU (0 on CPU); the output layer counts as one.
    pub gpu_layers: u32,
    /// Every layer, the output layer included, runs on the GPU.
    pub all_layers_on_gpu: bool,
}

impl ComputeDevice {
    /// True when layers run on a GPU.
    pub fn is_gpu(&self) -> bool {
        self.gpu_layers > 0
    }

    /// The first GPU llama.cpp sees (it offloads to that one by default), else the CPU.
    fn detect(requested_layers: u32, model_layers: u32) -> Self {
        let devices = list_llama_ggml_backend_devices();
        let gpu = devices.iter().find(|d| {
            matches!(
                d.device_type,
                LlamaBackendDeviceType::Gpu | LlamaBackendDeviceType::IntegratedGpu
            )
        });
        match gpu {
            Some(d) if requested_layers > 0 => {
                // llama.cpp offloads the repeating layers, then the output layer.
                let all = model_layers.saturating_add(1);
                ComputeDevice {
                    backend: d.backend.to_lowercase(),
                    name: d.description.clone(),
                    gpu_layers: requested_layers.min(all),
                    all_layers_on_gpu: requested_layers >= all,
                }
            }
            _ => ComputeDevice {
                backend: "cpu".into(),
                name: devices
                    .iter()
                    .find(|d| d.device_type == LlamaBackendDeviceType::Cpu)
                    .map(|d| d.description.clone())
                    .unwrap_or_default(),
                gpu_layers: 0,
                all_layers_on_gpu: false,
            },
        }
    }
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
    let mut params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
    if let Some(progress) = crate::progress::model_load(&path.display().to_string()) {
        params = params.with_progress_callback(progress);
    }
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
    let device = ComputeDevice::detect(gpu_layers, model.n_layer());
    Ok(LoadedModel {
        model,
        info,
        device,
    })
}
