//! A command line run on a real pseudo-terminal (`script -qfec`), as a person
//! at a terminal runs it: read its output until a text shows, type an answer,
//! wait for its exit.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A shell command line running on a pseudo-terminal.
#[derive(Debug)]
pub struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    /// Starts `line` (a shell command line) under `script` with `env` added.
    pub fn start(line: &str, env: &[(&str, &OsStr)]) -> Self {
        let mut child = Command::new("script")
            .args(["-qfec", line, "/dev/null"])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `script` (util-linux): {e}"));
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("script's stdout is piped");
        let (tx, output) = std::sync::mpsc::channel::<Vec<u8>>();
        // A thread, so reads can wait with a deadline on the channel.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            output,
            seen: Vec::new(),
        }
    }

    /// Reads until the output holds `needle` (panics after `limit`); all
    /// the output so far.
    pub fn read_until(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while !self.text().contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.extend(bytes),
                Err(_) => panic!("never saw {needle:?} in:\n{}", self.text()),
            }
        }
        self.text()
    }

    /// Types `keys` at the terminal.
    pub fn type_keys(&mut self, keys: &[u8]) {
        let stdin = self.stdin.as_mut().expect("the terminal's input is open");
        stdin
            .write_all(keys)
            .and_then(|()| stdin.flush())
            .expect("the terminal takes input");
    }

    /// Waits up to `limit` for the command to exit (killing it and
    /// panicking after); its status and all of its output.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the terminal's status") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{limit:?} passed before the exit:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stdin = None;
        while let Ok(bytes) = self.output.recv_timeout(Duration::from_millis(200)) {
            self.seen.extend(bytes);
        }
        (status, self.text())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}
