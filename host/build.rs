//! Builds the example modules the host embeds (`src/demo.rs`, for `serve --demo`):
//! a nested `cargo build` of those packages of the separate `guests/` workspace for
//! `wasm32-wasip2` (see `guests/build_guests.rs`). The hostile fixtures the tests
//! use are built by the test-only crate `test-programs`, not here.
//!
//! It sets `TONGDAO_GUESTS_DIR` (read by `src/demo.rs`) to the directory holding
//! the `.wasm` files.

use std::env;
use std::path::PathBuf;

#[path = "../guests/build_guests.rs"]
mod build_guests;

/// The guest crates the product ships (as `serve --demo`'s example modules).
const EXAMPLES: [&str; 3] = ["horoscope", "quiz", "jokes"];

fn main() {
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| build_guests::fail("CARGO_MANIFEST_DIR is not set")),
    );
    let root = manifest_dir
        .parent()
        .unwrap_or_else(|| build_guests::fail("the host crate has no parent directory"))
        .to_path_buf();
    build_guests::track_sources(&root, Some(&EXAMPLES));
    build_guests::ensure_target();
    let out_dir = build_guests::build(&root, Some(&EXAMPLES));
    println!("cargo:rustc-env=TONGDAO_GUESTS_DIR={}", out_dir.display());
}
