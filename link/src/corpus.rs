//! The checked-in fuzz corpora (issue 18 item 3): each crate's `fuzz/corpus/<target>/`
//! holds the inputs its cargo-fuzz target starts from, and its stable test replays
//! them through the same entry points. One reader for every crate's replay test.

use std::path::Path;

/// Every file of `<crate_dir>/fuzz/corpus/<target>/`, sorted by name, as bytes.
///
/// # Errors
/// The folder or one of its files cannot be read.
pub fn read(crate_dir: &str, target: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let dir = Path::new(crate_dir).join("fuzz/corpus").join(target);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    files.iter().map(std::fs::read).collect()
}
