//! Telling a service manager how far batchd got (`sd_notify`): `READY=1` only once the
//! model is loaded and the socket listens, so units ordered after batchd (Type=notify)
//! start when it can answer. Without `$NOTIFY_SOCKET` every call does nothing.

use sd_notify::NotifyState;

/// The model is being loaded.
pub fn loading(model: &std::path::Path) {
    send(&[NotifyState::Status(&format!(
        "loading model {}",
        model.display()
    ))]);
}

/// The model is loaded and the socket listens.
pub fn ready(slots: u32, listening_on: &str) {
    send(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("serving {slots} slots on {listening_on}")),
    ]);
}

/// No new requests; running ones are finishing.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining: finishing running requests"),
    ]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify the service manager ($NOTIFY_SOCKET)");
    }
}
