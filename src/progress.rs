//! Progress on the terminal: the stage a run is in and the claims settled so far, shown on
//! stderr once a run has taken a few seconds, and only when stderr is a terminal (a scheduler's
//! log gets nothing). It never changes what a run computes or writes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A run shorter than this shows no progress at all.
const QUIET_FOR: Duration = Duration::from_secs(2);

/// A run's progress bar: claims settled out of the run's claims, with the stage as message.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Progress of a run, hidden until the run has taken [`QUIET_FOR`].
    pub fn new() -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed:>4} {bar:30} {human_pos}/{human_len} claims · {msg}",
            )
            .expect("a valid template"),
        );
        if std::io::stderr().is_terminal() {
            // Drawn from a waiting thread, so that a long first stage shows too.
            let later = bar.clone();
            std::thread::spawn(move || {
                std::thread::sleep(QUIET_FOR);
                if !later.is_finished() {
                    later.set_draw_target(ProgressDrawTarget::stderr());
                    later.enable_steady_tick(Duration::from_millis(200));
                }
            });
        }
        Progress { bar }
    }

    /// The claims the run settles.
    pub fn claims(&self, claims: u64) {
        self.bar.set_length(claims);
    }

    /// What the run is doing now.
    pub fn stage(&self, what: impl Into<std::borrow::Cow<'static, str>>) {
        self.bar.set_message(what);
    }

    /// `claims` more claims settled and written.
    pub fn settled(&self, claims: u64) {
        self.bar.inc(claims);
    }
}

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

impl Drop for Progress {
    /// Clears the bar: the command prints its own last line, and a run that fails leaves no
    /// half-drawn bar before its error message.
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
