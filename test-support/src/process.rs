//! A child process owned by a test: found next to the test's own executable, its standard
//! output read line by line (kept, and waited on for readiness lines), killed by its PID
//! when dropped.
//!
//! Threading: one reader thread per process moves its stdout lines into a shared list under
//! a mutex; a condition variable wakes whoever waits for a line. Standard error is
//! inherited, so what a process complains about shows up in the test's output.

use crate::wait;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The workspace binary `name` (`gateway`, `storage-bridge`, `loadtest`), from the target
/// directory the running test was built in: `target/debug/deps/test-HASH` is next to
/// `target/debug/NAME`. A package's own integration tests have their binaries built by
/// cargo; others must be built first, which the panic says.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p {name})",
        path.display()
    );
    path
}

/// What the reader thread has read so far.
#[derive(Default)]
struct Output {
    lines: Vec<String>,
    /// The process closed its stdout (it exited, or will soon).
    ended: bool,
}

/// A running child process; SIGKILLed (by its PID) when dropped if it still runs.
pub struct Proc {
    name: String,
    child: Child,
    /// Written by the reader thread, read by the test's thread(s).
    output: Arc<(Mutex<Output>, Condvar)>,
    /// How many lines [`Proc::wait_for_line`] has looked at already.
    seen: usize,
}

impl Proc {
    /// Spawns `cmd` with its stdout piped to a reader thread. `name` is for messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("piped");
        let output: Arc<(Mutex<Output>, Condvar)> = Arc::default();
        let shared = Arc::clone(&output);
        std::thread::spawn(move || {
            let (lock, cv) = &*shared;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lock.lock().expect("not poisoned").lines.push(line);
                cv.notify_all();
            }
            lock.lock().expect("not poisoned").ended = true;
            cv.notify_all();
        });
        Proc {
            name: name.to_string(),
            child,
            output,
            seen: 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Looks at each stdout line not looked at before, in order, until `found` returns
    /// something, and returns that. Panics (killing the process) when the process ends its
    /// output first or after `limit`, with what it printed.
    pub fn wait_for_line<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        let (lock, cv) = &*self.output;
        let mut out = lock.lock().expect("not poisoned");
        loop {
            while self.seen < out.lines.len() {
                self.seen += 1;
                if let Some(t) = found(&out.lines[self.seen - 1]) {
                    return t;
                }
            }
            let now = Instant::now();
            if out.ended || now >= deadline {
                let printed = out.lines.join("\n");
                drop(out);
                let why = if now >= deadline {
                    format!("not within {limit:?}")
                } else {
                    "its output ended".to_string()
                };
                self.kill9();
                panic!(
                    "{} did not report {what}: {why} ({:?}); its output:\n{printed}",
                    self.name,
                    self.child.try_wait()
                );
            }
            out = cv
                .wait_timeout(out, deadline - now)
                .expect("not poisoned")
                .0;
        }
    }

    /// Every line it has written to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.output.0.lock().expect("not poisoned").lines.clone()
    }

    /// SIGKILL (as a crash would), and reaped.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful stop); [`Proc::wait_exit`] waits for the exit.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends it a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill(1)");
        assert!(ok.success(), "kill -{name} {}", self.pid());
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to exit by itself; panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        wait::eventually(
            &what,
            limit,
            || self.child.try_wait().expect("waitpid"),
            Option::is_some,
        )
        .expect("exited")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.kill9();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Proc {
        Proc::spawn("sh", Command::new("sh").args(["-c", script]))
    }

    #[test]
    fn lines_are_waited_for_in_order_and_kept() {
        let mut p = sh("echo one; echo port 42; sleep 5");
        let port: u16 = p.wait_for_line("a port", wait::TIMEOUT, |l| {
            l.strip_prefix("port ")?.parse().ok()
        });
        assert_eq!(port, 42);
        assert_eq!(p.stdout_lines(), ["one", "port 42"]);
        assert!(p.running());
        let pid = p.pid();
        drop(p);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "killed and reaped when dropped"
        );
    }

    #[test]
    #[should_panic(expected = "sh did not report a greeting: its output ended")]
    fn a_process_that_ends_before_its_line_fails_at_once() {
        sh("echo nothing useful").wait_for_line("a greeting", wait::STARTUP, |l| {
            l.strip_prefix("hello").map(drop)
        });
    }

    #[test]
    fn sigterm_and_wait_exit() {
        let mut p = sh("trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done");
        p.wait_for_line("ready", wait::TIMEOUT, |l| (l == "ready").then_some(()));
        p.sigterm();
        assert_eq!(p.wait_exit(wait::TIMEOUT).code(), Some(3));
    }
}
