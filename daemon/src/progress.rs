//! A progress bar for model loading, drawn only when stderr is a terminal (not under a
//! service manager or in a log file).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Steps of the bar: llama.cpp reports progress as a fraction.
const STEPS: u64 = 1000;

/// A load-progress callback for llama.cpp that draws a bar for `what`, or `None` when
/// stderr is not a terminal. The bar is cleared when the callback is dropped.
pub fn model_load(what: &str) -> Option<impl FnMut(f32) -> bool + 'static> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(STEPS).with_message(format!("loading {what}"));
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {percent:>3}%")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let bar = ClearOnDrop(bar);
    Some(move |fraction: f32| {
        bar.0
            .set_position((f64::from(fraction.clamp(0.0, 1.0)) * STEPS as f64) as u64);
        true // keep loading
    })
}

struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
