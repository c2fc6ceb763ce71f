//! Host bindings of every WIT version the platform serves, one module per version
//! (as Zed's extension host keeps `since_vX_Y_Z`). A released version never
//! changes; a new one gets its own `since_vX_Y_Z` module beside the old ones, and
//! `latest` names the one new code is written against.
//!
//! The imports (`log`, `clock`, `random`, `kv`, `content`, `subscribers`) are the
//! same in every 1.x version, so older versions reuse the latest version's import
//! bindings (`with`): the host implements each import once. A 1.0.0 component's
//! imports resolve to the 1.1.0 definitions through the linker's semver-compatible
//! lookup. The exports (`module`) and the `types` they return are generated per
//! version, and [`super::contract`] dispatches a call to the version a component
//! was built against.

/// Bindings of `tongdao:partner@1.1.0` (`wit/v1.1.0`): 1.0.0 plus per-operator
/// bulletins.
pub mod since_v1_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/v1.1.0",
        world: "content-module",
        imports: { default: async | trappable },
        exports: { default: async },
        // Host-call answers are recorded for replay (issue 17 item 7).
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// Bindings of `tongdao:partner@1.0.0` (`wit/v1.0.0`): its own `types` and
/// `module`, the imports shared with [`since_v1_1_0`].
pub mod since_v1_0_0 {
    wasmtime::component::bindgen!({
        path: "../wit/v1.0.0",
        world: "content-module",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tongdao:partner/log": crate::runtime::bindings::since_v1_1_0::tongdao::partner::log,
            "tongdao:partner/clock": crate::runtime::bindings::since_v1_1_0::tongdao::partner::clock,
            "tongdao:partner/random": crate::runtime::bindings::since_v1_1_0::tongdao::partner::random,
            "tongdao:partner/kv": crate::runtime::bindings::since_v1_1_0::tongdao::partner::kv,
            "tongdao:partner/content": crate::runtime::bindings::since_v1_1_0::tongdao::partner::content,
            "tongdao:partner/subscribers": crate::runtime::bindings::since_v1_1_0::tongdao::partner::subscribers,
        },
    });
}

pub use since_v1_1_0 as latest;

/// The WIT version modules built against [`latest`] declare.
pub const LATEST_WIT_VERSION: &str = "1.1.0";

/// Every version of `tongdao:partner` this host serves, oldest first. A component
/// built against another one (an older or newer major, or a newer minor whose
/// additions this host does not have) is refused at upload, naming both.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["1.0.0", LATEST_WIT_VERSION];
