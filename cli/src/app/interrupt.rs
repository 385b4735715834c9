//! Ctrl-C, as something a command can wait for.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Tells a running command that the user asked it to stop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Interrupt {
    rx: watch::Receiver<bool>,
    /// Keeps the channel open for [`Interrupt::never`].
    _keep: Option<Arc<watch::Sender<bool>>>,
}

/// Sets off an [`Interrupt`] (for tests, or other front ends).
#[derive(Debug)]
pub struct InterruptTrigger(watch::Sender<bool>);

impl InterruptTrigger {
    /// Interrupts every clone of the paired [`Interrupt`].
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Interrupt {
    /// An interrupt that never happens.
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            rx,
            _keep: Some(Arc::new(tx)),
        }
    }

    /// An interrupt and the trigger that sets it off.
    pub fn channel() -> (InterruptTrigger, Self) {
        let (tx, rx) = watch::channel(false);
        (InterruptTrigger(tx), Self { rx, _keep: None })
    }

    /// Set off by the first Ctrl-C (SIGINT); a second one exits the process at once with
    /// status 130. Must be called within a Tokio runtime.
    pub fn ctrl_c() -> Self {
        let (trigger, interrupt) = Self::channel();
        // Registered now, not when the task first runs, so no early Ctrl-C is lost.
        match signal(SignalKind::interrupt()) {
            Ok(mut sigint) => {
                tokio::spawn(async move {
                    if sigint.recv().await.is_some() {
                        trigger.trigger();
                        if sigint.recv().await.is_some() {
                            std::process::exit(super::EXIT_INTERRUPTED.into());
                        }
                    }
                });
            }
            // No handler could be installed: SIGINT keeps its default effect.
            Err(_) => drop(trigger),
        }
        interrupt
    }

    /// True once interrupted.
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until interrupted (forever if that cannot happen any more).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|set| *set).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_wakes_waiters() {
        let (t, i) = Interrupt::channel();
        assert!(!i.is_set());
        let i2 = i.clone();
        let w = tokio::spawn(async move { i2.wait().await });
        t.trigger();
        w.await.unwrap();
        assert!(i.is_set());
        i.wait().await;
    }

    #[tokio::test]
    async fn never_never_fires() {
        let i = Interrupt::never();
        let r = tokio::time::timeout(Duration::from_millis(20), i.wait()).await;
        assert!(r.is_err());
        let (t, i) = Interrupt::channel();
        drop(t);
        let r = tokio::time::timeout(Duration::from_millis(20), i.wait()).await;
        assert!(r.is_err());
    }
}
