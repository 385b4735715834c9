//! The built-in demo model: written once into the data dir, then reused.

use std::path::PathBuf;

use crate::modelgen::{write_model, Shape};

/// Bump when the generator's output changes, so old files are not reused.
const DEMO_VERSION: u32 = 1;

/// Path of the demo model, writing it first if it is not there yet.
pub fn ensure_demo_model() -> anyhow::Result<PathBuf> {
    let path = crate::config::data_dir().join(format!("demo-gpt2-tiny-v{DEMO_VERSION}.gguf"));
    if !path.is_file() {
        tracing::info!(path = %path.display(), "writing the built-in demo model");
        write_model(Shape::Tiny, &path)?;
    }
    Ok(path)
}
