//! Writes the fuzzers' seed corpus: valid frames of every client message, plus a few
//! classic bad ones. `cargo run -p batchd-protocol --example fuzz_corpus -- fuzz/corpus`

use std::path::PathBuf;

use batchd_protocol::frame::encode_frame;
use batchd_protocol::{ClientMessage, GenerateRequest, Sampling, PROTOCOL_VERSION};

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: "corpus".into(),
    };
    let mut sampled = GenerateRequest::new("Once upon a time");
    sampled.sampling = Sampling {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        seed: 42,
    };
    sampled.stop = vec!["\n\n".into(), "END".into()];
    sampled.stream = false;
    sampled.logprobs = Some(5);
    let messages = [
        hello.clone(),
        ClientMessage::Generate {
            id: 1,
            request: GenerateRequest::new("The capital of France is"),
        },
        ClientMessage::Generate {
            id: 2,
            request: sampled,
        },
        ClientMessage::Cancel { id: 1 },
        ClientMessage::Status,
        ClientMessage::Trace,
    ];
    let frames: Vec<Vec<u8>> = messages.iter().map(|m| encode_frame(m).unwrap()).collect();
    for target in ["frame_decode", "request_validate"] {
        std::fs::create_dir_all(dir.join(target))?;
    }
    for (i, f) in frames.iter().enumerate() {
        // request_validate takes one payload; frame_decode takes a stream of frames.
        std::fs::write(
            dir.join("request_validate").join(format!("msg-{i}")),
            &f[4..],
        )?;
        std::fs::write(dir.join("frame_decode").join(format!("frame-{i}")), f)?;
    }
    std::fs::write(dir.join("frame_decode").join("session"), frames.concat())?;
    std::fs::write(
        dir.join("frame_decode").join("huge-prefix"),
        u32::MAX.to_be_bytes(),
    )?;
    let mut truncated = frames[1].clone();
    truncated.truncate(truncated.len() / 2);
    std::fs::write(dir.join("frame_decode").join("truncated"), truncated)?;
    Ok(())
}
