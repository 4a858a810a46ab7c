//! Progress bars of long fits (LSTM epochs). Hidden unless the binary turns them on with [`set_visible`]
//! (it does on an interactive stderr with text logs), so libraries and tests stay quiet.

use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static VISIBLE: AtomicBool = AtomicBool::new(false);

/// Shows (or hides) progress bars drawn by model fits on stderr.
pub fn set_visible(visible: bool) {
    VISIBLE.store(visible, Ordering::Relaxed);
}

/// A bar over `epochs` epochs whose message carries the losses.
pub(crate) fn epochs(epochs: u64) -> ProgressBar {
    let target =
        if VISIBLE.load(Ordering::Relaxed) { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let pb = ProgressBar::with_draw_target(Some(epochs), target);
    pb.set_style(
        ProgressStyle::with_template("lstm epoch {pos}/{len} [{bar:20}] {msg} [{elapsed}<{eta}]")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}
