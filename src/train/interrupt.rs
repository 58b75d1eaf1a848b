//! Stopping a run early when asked (Ctrl-C on the command line): a request sets a flag that the
//! training loop checks after each step; the loop then ends the run as at its last step (metrics,
//! reconstructions, checkpoint) and returns [`crate::Error::Interrupted`], so that `--resume`
//! continues it exactly. The flag is one for the process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Training loops running now.
static LISTENING: AtomicUsize = AtomicUsize::new(0);
/// Whether a stop was asked for and not yet taken by a loop.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks the running training loops to stop after their current step. Returns whether one will:
/// `false` when none is running, or when a stop was already asked for and not yet taken (a second
/// request), where a caller that wants the process gone should end it itself.
pub fn request_stop() -> bool {
    LISTENING.load(Ordering::SeqCst) > 0 && !REQUESTED.swap(true, Ordering::SeqCst)
}

/// A training loop's registration: while it lives, [`request_stop`] reaches the loop.
pub(super) struct Listening(());

impl Listening {
    /// Registers a loop; a request made while no loop ran is forgotten.
    pub(super) fn start() -> Self {
        if LISTENING.fetch_add(1, Ordering::SeqCst) == 0 {
            REQUESTED.store(false, Ordering::SeqCst);
        }
        Self(())
    }

    /// Whether a stop was asked for (left set, so that every running loop sees it).
    pub(super) fn stop_requested(&self) -> bool {
        REQUESTED.load(Ordering::SeqCst)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if LISTENING.fetch_sub(1, Ordering::SeqCst) == 1 {
            REQUESTED.store(false, Ordering::SeqCst);
        }
    }
}
