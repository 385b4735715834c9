//! Replays the fuzzers' corpus (`fuzz/corpus/`) through the same checks the fuzz targets
//! run, on stable Rust: every input that was interesting to the fuzzer stays harmless.

use std::path::PathBuf;

use batchd_protocol::robustness;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn frame_decode_corpus_is_harmless() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (_, bytes) in corpus("frame_decode") {
        rt.block_on(robustness::frame_stream(&bytes, 4096));
    }
}

#[test]
fn request_validate_corpus_is_harmless() {
    for (_, bytes) in corpus("request_validate") {
        robustness::payload(&bytes);
    }
}
