//! Helpers shared by the kernel-tuning tests: running the binary and building fake trees.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_kernel-tuning");

/// Runs `prefix... kernel-tuning args...` and returns its output.
pub fn run(prefix: &[&str], args: &[&str]) -> Output {
    let mut cmd = if prefix.is_empty() {
        Command::new(BIN)
    } else {
        let mut c = Command::new(prefix[0]);
        c.args(&prefix[1..]).arg(BIN);
        c
    };
    let out = cmd.args(args).output().expect("run kernel-tuning");
    eprintln!(
        "$ {} kernel-tuning {}\n{}{}",
        prefix.join(" "),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write(root: &Path, relative: &str, contents: &str) {
    let p = root.join(relative);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, contents).unwrap();
}

pub fn read(root: &Path, relative: &str) -> String {
    std::fs::read_to_string(root.join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Whether `text` has a line with the same words as `words` (spacing ignored).
pub fn has_line(text: &str, words: &str) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().eq(words.split_whitespace()))
}
