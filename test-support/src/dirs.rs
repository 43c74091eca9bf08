//! Fresh directories for a test's processes (data, sockets, snapshots, results).

use std::path::PathBuf;

/// A new, empty directory under the system temp dir, named after `what`, this process and
/// a random number. Not removed by itself: the owner that knows when it is done with it
/// (a [`crate::Gateway`] that made it, or the test) removes it.
pub fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sb-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).expect("a temporary directory");
    d
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_call_makes_a_new_empty_directory() {
        let (a, b) = (super::temp_dir("t"), super::temp_dir("t"));
        assert_ne!(a, b);
        assert_eq!(std::fs::read_dir(&a).unwrap().count(), 0);
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }
}
