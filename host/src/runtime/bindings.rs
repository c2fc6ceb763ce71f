//! Host bindings of every WIT version the platform serves. A released version never
//! changes; a new one gets its own `since_vX_Y_Z` module beside the old ones, and
//! `latest` names the one new code is written against.

/// Bindings of `tongdao:partner@1.0.0` (`wit/v1.0.0`).
pub mod since_v1_0_0 {
    wasmtime::component::bindgen!({
        path: "../wit/v1.0.0",
        world: "content-module",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use since_v1_0_0 as latest;

/// The WIT version modules built against [`latest`] declare.
pub const LATEST_WIT_VERSION: &str = "1.0.0";

/// Every version of `tongdao:partner` this host serves, oldest first. A component
/// built against another one (an older or newer major, or a newer minor whose
/// additions this host does not have) is refused at upload, naming both.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &[LATEST_WIT_VERSION];
