//! Builds every guest of the `guests/` workspace (the example modules and the
//! hostile fixtures) for `wasm32-wasip2`, the way wasmtime's `test-programs` do
//! (see `guests/build_guests.rs`), and copies the hand-made fixtures of
//! `guests/fixtures/` (`core-module.wasm`, `random.bin`) next to them. Sets
//! `TONGDAO_TEST_PROGRAMS_DIR` (read by `src/lib.rs`) to that directory.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../guests/build_guests.rs"]
mod build_guests;

use build_guests::fail;

/// Hand-made fixtures copied next to the built components.
const FIXTURES: [&str; 2] = ["core-module.wasm", "random.bin"];

fn main() {
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| fail("CARGO_MANIFEST_DIR is not set")),
    );
    let root = manifest_dir
        .parent()
        .unwrap_or_else(|| fail("the test-programs crate has no parent directory"))
        .to_path_buf();
    build_guests::track_sources(&root, None);
    build_guests::ensure_target();
    let out_dir = build_guests::build(&root, None);
    copy_fixtures(&root.join("guests").join("fixtures"), &out_dir);
    println!(
        "cargo:rustc-env=TONGDAO_TEST_PROGRAMS_DIR={}",
        out_dir.display()
    );
}

/// Copy the hand-made fixtures next to the components, so that every test
/// artifact is in one directory. A file already identical is left alone.
fn copy_fixtures(from: &Path, to: &Path) {
    for name in FIXTURES {
        let source = from.join(name);
        let bytes = fs::read(&source)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", source.display())));
        let dest = to.join(name);
        if fs::read(&dest).ok().as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        if let Err(e) = fs::write(&dest, &bytes) {
            fail(&format!("cannot write {}: {e}", dest.display()));
        }
    }
}
