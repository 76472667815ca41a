//! The real `engine` binary as a child process, for tests of what only a process shows
//! (signals, exit codes, a `kill -9`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::WAIT;

/// The real binary, killed if the test fails before it exits.
pub struct Engine {
    /// The process id.
    pub pid: u32,
    /// The exit status, sent once the process ends.
    exited: mpsc::Receiver<std::process::ExitStatus>,
    /// Log lines, as the process writes them.
    log: mpsc::Receiver<String>,
    /// Every log line seen so far (for failure messages).
    seen: Vec<String>,
    done: bool,
}

impl Engine {
    /// Starts `engine serve --listen 127.0.0.1:0` with `args` and waits for its address.
    pub fn start(args: &[&str]) -> (Engine, SocketAddr) {
        let mut child: Child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(super::test_io_args())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let (log_tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if log_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (exit_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut engine = Engine {
            pid,
            exited,
            log,
            seen: Vec::new(),
            done: false,
        };
        let line = engine.expect_log("listening for NATS clients");
        let at = line.find("addr=").unwrap() + 5;
        let rest = &line[at..];
        let addr = rest[..rest.find(' ').unwrap_or(rest.len())]
            .parse()
            .unwrap();
        (engine, addr)
    }

    /// Sends signal `name` (`TERM`, `USR2`, `KILL`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for a log line containing `text` and returns it.
    pub fn expect_log(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {text:?}; log:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// `kill -9`s the process and waits for it to be gone.
    pub fn kill(mut self) {
        self.signal("KILL");
        self.expect_exit();
    }

    /// Waits for the process to exit.
    pub fn expect_exit(&mut self) -> std::process::ExitStatus {
        let status = self
            .exited
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("engine did not exit; log:\n{}", self.seen.join("\n")));
        self.done = true;
        status
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.done {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}
