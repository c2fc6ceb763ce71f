//! Write Tongdao content modules in plain Rust.
//!
//! A *content module* is a WebAssembly component that a content partner uploads to
//! a Tongdao platform. The platform owns the phone numbers, the operator links,
//! billing and compliance; the module writes the words. It answers four kinds of
//! calls, which are the methods of the [`Module`] trait:
//!
//! | call | when | returns |
//! |---|---|---|
//! | [`Module::describe`] | at upload | the module's name, version and services |
//! | [`Module::bulletin`] | for each scheduled push | the text (or one text per attribute value) |
//! | [`Module::on_mo`] | a user wrote to the service | a reply, or nothing |
//! | [`Module::on_subscribe`] / [`Module::on_unsubscribe`] | a user joined / left | a welcome / farewell text (sent free, after the platform's own confirmation), or nothing |
//!
//! Every call runs in a fresh sandboxed instance: statics and globals do not survive
//! from one call to the next. What must be remembered goes to the partner's
//! key-value store ([`kv`]) or to subscriber attributes ([`subscribers`]). The
//! module has no network and no files; besides those two it can read the partner's
//! content library ([`content`]), the platform's clock ([`clock`]), host randomness
//! ([`random`]) and write to its log ([`log`]). [`text`] helps to read what users
//! type.
//!
//! **One rule for errors:** a business error (nothing to send, a store that refused
//! a write) is *returned* as a [`ModuleError`]; the host records it and sends nothing.
//! Anything else — a panic, an endless loop, too much memory — is a crash, recorded
//! against the module version. Never `unwrap` what can fail for ordinary reasons.
//!
//! # A complete module
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "hello"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! tongdao-sdk = "0.1" # or { path = "…/sdk" } in a checkout of the platform
//!
//! [profile.release]
//! opt-level = "s"
//! lto = true
//! strip = true
//! panic = "abort"
//! codegen-units = 1
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run,standalone_crate
//! use tongdao_sdk::{clock, kv, Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo,
//!                   SubscriptionEvent};
//!
//! /// Greets subscribers and counts how often each of them wrote.
//! struct Hello;
//!
//! impl Module for Hello {
//!     fn describe() -> ModuleInfo {
//!         ModuleInfo {
//!             name: "hello".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             description: "Says good morning every day".into(),
//!             services: vec!["HI".into()],
//!         }
//!     }
//!
//!     fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
//!         // `request.date` is the push's local date, `YYYY-MM-DD`.
//!         Ok(Bulletin::Single(format!("早上好！今天是 {}。", request.date)))
//!     }
//!
//!     fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
//!         // A failing store becomes a `ModuleError::HostFailure` through `?`.
//!         let count = kv::incr(&format!("wrote:{}", message.subscriber), 1)?;
//!         let today = clock::local_date();
//!         Ok(Some(format!("{today}: 这是您第 {count} 条消息。")))
//!     }
//!
//!     fn on_subscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
//!         Ok(Some("欢迎订阅！每天早上为您送上问候。".into()))
//!     }
//! }
//!
//! tongdao_sdk::export_module!(Hello);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (add the target once
//! with `rustup target add wasm32-wasip2`); the component is
//! `target/wasm32-wasip2/release/hello.wasm`. Try it locally with
//! `tongdao module run hello.wasm --bulletin` or `--mo TEXT`, then upload it.
//!
//! # Outside WebAssembly
//!
//! The crate also compiles for the machine you develop on, so that pure helpers
//! (such as [`clock::Date`] and [`content::index_for_day`]) can be unit tested with
//! `cargo test`. The host calls ([`kv::get`], [`clock::now_ms`], …) only exist
//! inside the platform: called natively they panic. Keep the logic you want to
//! test natively in plain functions, and test whole modules with
//! `tongdao module run`.
#![warn(missing_docs)]

/// The bindings `wit-bindgen` generates from the contract, `tongdao:partner@1.0.0`
/// (world `content-module`), or `@1.1.0` with the feature `contract-v1-1`.
///
/// Partners rarely need this module: the types are re-exported at the crate root
/// and the imports are wrapped by [`kv`], [`content`], [`subscribers`], [`log`],
/// [`clock`] and [`random`]. The generated trait the component exports is
/// [`bindings::exports::tongdao::partner::module::Guest`]; [`export_module!`]
/// implements it for you.
#[cfg(not(feature = "contract-v1-1"))]
#[allow(unsafe_code, missing_docs, clippy::all, clippy::unwrap_used)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "content-module",
        path: "../wit/v1.0.0",
        pub_export_macro: true,
        default_bindings_module: "tongdao_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

/// The bindings of `tongdao:partner@1.1.0` (feature `contract-v1-1`): 1.0.0 plus
/// per-operator bulletins ([`Bulletin::PerOperator`], [`OperatorBulletin`]).
#[cfg(feature = "contract-v1-1")]
#[allow(unsafe_code, missing_docs, clippy::all, clippy::unwrap_used)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "content-module",
        path: "../wit/v1.1.0",
        pub_export_macro: true,
        default_bindings_module: "tongdao_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub mod clock;
pub mod content;
pub mod kv;
pub mod log;
pub mod random;
pub mod subscribers;
pub mod text;

pub use bindings::tongdao::partner::content::Item;
pub use bindings::tongdao::partner::kv::KvError;
pub use bindings::tongdao::partner::subscribers::AttributeError;
pub use bindings::tongdao::partner::types::{
    Bulletin, BulletinRequest, KeyedBulletin, KeyedText, Mo, ModuleError, ModuleInfo, SubscriberId,
    SubscriptionEvent,
};
#[cfg(feature = "contract-v1-1")]
pub use bindings::tongdao::partner::types::{Operator, OperatorBulletin, OperatorText};

/// What a partner implements: one associated function per call the host makes.
///
/// Only [`describe`](Module::describe) is required. The others have defaults: a
/// module that sends no bulletins answers every push with
/// [`ModuleError::NoContent`], and by default a module stays silent on messages,
/// subscriptions and unsubscriptions.
///
/// The functions take no `self`: each call runs in a fresh instance, so there is
/// no state to keep in a value. Implement the trait on a unit struct and hand that
/// struct to [`export_module!`].
pub trait Module {
    /// Describe the module: its name (`a-z`, `0-9`, `-`; the same for every
    /// version), its version label, one line for the platform operator, and the
    /// service codes it is written for. Called at upload; it must not use the
    /// store or any other host call.
    fn describe() -> ModuleInfo;

    /// The content of one scheduled push for `request.service` on `request.date`.
    ///
    /// Return [`Bulletin::Single`] for one text for everybody, or
    /// [`Bulletin::Keyed`] for one text per value of a subscriber attribute. The
    /// same `request.push_id` may be asked for again after a host restart: answer
    /// it the same way.
    ///
    /// The default returns [`ModuleError::NoContent`].
    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        Err(ModuleError::NoContent(format!(
            "this module sends no bulletins (service {})",
            request.service
        )))
    }

    /// A user's message to the service (the platform's own commands, such as
    /// unsubscribe, never reach a module). Return the reply, or `None` to stay
    /// silent. A reply may be billed to the user, depending on the service.
    ///
    /// The default stays silent.
    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        let _ = message;
        Ok(None)
    }

    /// A user subscribed by their own message (the keyword of a free service, or
    /// the confirming reply of a paid one). Return a welcome text, or `None`.
    ///
    /// The platform first sends its own confirmation (service, price, how to
    /// stop); your welcome follows it, free of charge, checked by the content
    /// policy, and the platform appends how to unsubscribe (`退订回复TD<code>`)
    /// unless the text already ends with exactly that.
    ///
    /// The default sends nothing.
    fn on_subscribe(event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        let _ = event;
        Ok(None)
    }

    /// A user who was subscribed left (a stop command, the `0000` menu or
    /// `00000`); not called for a subscription that was never confirmed. Return a
    /// farewell text, or `None`.
    ///
    /// The platform first sends its own confirmation that the service is stopped
    /// and no longer charged; your farewell follows it once, free of charge, to
    /// that user only, checked by the content policy.
    ///
    /// The default sends nothing.
    fn on_unsubscribe(event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        let _ = event;
        Ok(None)
    }
}

/// Export a type implementing [`Module`] as the component's implementation of
/// `tongdao:partner/module@1.0.0`.
///
/// Write it once, at the top level of the crate (a `cdylib`):
///
/// ```no_run,standalone_crate
/// use tongdao_sdk::{Module, ModuleInfo};
///
/// struct Minimal;
///
/// impl Module for Minimal {
///     fn describe() -> ModuleInfo {
///         ModuleInfo {
///             name: "minimal".into(),
///             version: "1.0.0".into(),
///             description: "Does nothing yet".into(),
///             services: vec!["MIN".into()],
///         }
///     }
/// }
///
/// tongdao_sdk::export_module!(Minimal);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        // The generated export code is `unsafe` glue (the canonical ABI); it is the
        // SDK's, not the partner's, hence the `allow`.
        #[allow(unsafe_code)]
        const _: () = {
            struct __TongdaoModuleExport;

            impl $crate::bindings::exports::tongdao::partner::module::Guest
                for __TongdaoModuleExport
            {
                fn describe() -> $crate::ModuleInfo {
                    <$module as $crate::Module>::describe()
                }

                fn bulletin(
                    request: $crate::BulletinRequest,
                ) -> ::core::result::Result<$crate::Bulletin, $crate::ModuleError> {
                    <$module as $crate::Module>::bulletin(request)
                }

                fn on_mo(
                    message: $crate::Mo,
                ) -> ::core::result::Result<
                    ::core::option::Option<::std::string::String>,
                    $crate::ModuleError,
                > {
                    <$module as $crate::Module>::on_mo(message)
                }

                fn on_subscribe(
                    event: $crate::SubscriptionEvent,
                ) -> ::core::result::Result<
                    ::core::option::Option<::std::string::String>,
                    $crate::ModuleError,
                > {
                    <$module as $crate::Module>::on_subscribe(event)
                }

                fn on_unsubscribe(
                    event: $crate::SubscriptionEvent,
                ) -> ::core::result::Result<
                    ::core::option::Option<::std::string::String>,
                    $crate::ModuleError,
                > {
                    <$module as $crate::Module>::on_unsubscribe(event)
                }
            }

            $crate::bindings::export!(__TongdaoModuleExport with_types_in $crate::bindings);
        };
    };
}

impl From<KvError> for ModuleError {
    /// A refused store operation is a [`ModuleError::HostFailure`], so `?` works on
    /// [`kv`] calls inside [`Module`] functions.
    fn from(error: KvError) -> Self {
        ModuleError::HostFailure(format!("key-value store: {error}"))
    }
}

impl From<AttributeError> for ModuleError {
    /// A failed attribute operation is a [`ModuleError::HostFailure`], so `?` works
    /// on [`subscribers`] calls inside [`Module`] functions.
    fn from(error: AttributeError) -> Self {
        ModuleError::HostFailure(format!("subscriber attributes: {error}"))
    }
}

impl Bulletin {
    /// A bulletin with the same text for every subscriber.
    pub fn single(text: impl Into<String>) -> Self {
        Bulletin::Single(text.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_become_host_failures() {
        let e = ModuleError::from(KvError::Full);
        assert!(matches!(e, ModuleError::HostFailure(ref m) if m.contains("Full")));
        let e = ModuleError::from(AttributeError::InvalidName);
        assert!(matches!(e, ModuleError::HostFailure(ref m) if m.contains("InvalidName")));
    }

    struct OnlyDescribe;

    impl Module for OnlyDescribe {
        fn describe() -> ModuleInfo {
            ModuleInfo {
                name: "only-describe".into(),
                version: "0".into(),
                description: String::new(),
                services: vec![],
            }
        }
    }

    #[test]
    fn defaults() {
        let request = BulletinRequest {
            service: "XZ".into(),
            push_id: "p1".into(),
            date: "2025-01-01".into(),
        };
        assert!(matches!(
            OnlyDescribe::bulletin(request),
            Err(ModuleError::NoContent(_))
        ));
        let event = SubscriptionEvent {
            subscriber: "s".into(),
            service: "XZ".into(),
        };
        assert_eq!(OnlyDescribe::on_subscribe(event.clone()), Ok(None));
        assert_eq!(OnlyDescribe::on_unsubscribe(event), Ok(None));
        let mo = Mo {
            subscriber: "s".into(),
            service: "XZ".into(),
            text: "hi".into(),
            received_at_ms: 0,
        };
        assert_eq!(OnlyDescribe::on_mo(mo), Ok(None));
        assert_eq!(Bulletin::single("x"), Bulletin::Single("x".into()));
    }
}
