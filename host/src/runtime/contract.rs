//! One content module, whatever version of `tongdao:partner` it was built against
//! (R-8.1, issue 17 item 9): the loader reads the version a component exports,
//! links it with that version's linker, and every call goes through [`Instance`],
//! which calls the version's own export and converts its answer to the host's
//! types ([`super::output`]). A 1.0.0 module and a 1.1.0 module run side by side
//! in one server, each through its own bindings.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::bindings::{since_v1_0_0 as v1_0, since_v1_1_0 as v1_1};
use super::host::CallState;
use super::limits::CallError;
use super::output::{
    BulletinContent, BulletinRequest, MoMessage, ModuleDescription, SubscriptionChange,
};
use super::{ValidationError, root_message};

/// A linker per served version, each with WASI and that version's world.
pub(super) struct Linkers {
    v1_0: Linker<CallState>,
    v1_1: Linker<CallState>,
}

impl Linkers {
    /// Both linkers over `base` (WASI and the call clock already added).
    pub(super) fn new(base: &Linker<CallState>) -> wasmtime::Result<Self> {
        let mut v1_0 = base.clone();
        v1_0::ContentModule::add_to_linker::<CallState, HasSelf<CallState>>(&mut v1_0, |s| s)?;
        let mut v1_1 = base.clone();
        v1_1::ContentModule::add_to_linker::<CallState, HasSelf<CallState>>(&mut v1_1, |s| s)?;
        Ok(Self { v1_0, v1_1 })
    }

    /// Link `component`, built against `wit_version`, with that version's linker.
    ///
    /// # Errors
    /// [`ValidationError::UnsupportedImport`] when an import is not offered,
    /// [`ValidationError::WrongWorld`] when the exports are not the version's world,
    /// [`ValidationError::UnsupportedVersion`] for a version without a linker.
    pub(super) fn link(
        &self,
        component: &wasmtime::component::Component,
        wit_version: &str,
    ) -> Result<Pre, ValidationError> {
        let import = |e: wasmtime::Error| ValidationError::UnsupportedImport(root_message(&e));
        let world = |e: wasmtime::Error| {
            ValidationError::WrongWorld(format!("@{wit_version}: {}", root_message(&e)))
        };
        match wit_version {
            "1.0.0" => {
                let pre: InstancePre<CallState> =
                    self.v1_0.instantiate_pre(component).map_err(import)?;
                Ok(Pre::V1_0(v1_0::ContentModulePre::new(pre).map_err(world)?))
            }
            "1.1.0" => {
                let pre = self.v1_1.instantiate_pre(component).map_err(import)?;
                Ok(Pre::V1_1(v1_1::ContentModulePre::new(pre).map_err(world)?))
            }
            other => Err(ValidationError::UnsupportedVersion {
                found: other.to_string(),
                supported: super::bindings::SUPPORTED_WIT_VERSIONS.to_vec(),
            }),
        }
    }
}

/// A component linked for its version.
pub(super) enum Pre {
    V1_0(v1_0::ContentModulePre<CallState>),
    V1_1(v1_1::ContentModulePre<CallState>),
}

impl Pre {
    pub(super) async fn instantiate(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Self::V1_0(pre) => Instance::V1_0(pre.instantiate_async(store).await?),
            Self::V1_1(pre) => Instance::V1_1(pre.instantiate_async(store).await?),
        })
    }
}

/// A fresh instance of a module, of its contract version.
pub(super) enum Instance {
    V1_0(v1_0::ContentModule),
    V1_1(v1_1::ContentModule),
}

/// The conversions every version has in common, from the host's types to the
/// version's and back (the shapes are those of 1.0.0 in every 1.x version).
macro_rules! common_conversions {
    ($v:ident) => {
        impl From<$v::tongdao::partner::types::ModuleInfo> for ModuleDescription {
            fn from(i: $v::tongdao::partner::types::ModuleInfo) -> Self {
                Self {
                    name: i.name,
                    version: i.version,
                    description: i.description,
                    services: i.services,
                }
            }
        }

        impl From<&BulletinRequest> for $v::tongdao::partner::types::BulletinRequest {
            fn from(r: &BulletinRequest) -> Self {
                Self {
                    service: r.service.clone(),
                    push_id: r.push_id.clone(),
                    date: r.date.clone(),
                }
            }
        }

        impl From<&MoMessage> for $v::tongdao::partner::types::Mo {
            fn from(m: &MoMessage) -> Self {
                Self {
                    subscriber: m.subscriber.clone(),
                    service: m.service.clone(),
                    text: m.text.clone(),
                    received_at_ms: m.received_at_ms,
                }
            }
        }

        impl From<&SubscriptionChange> for $v::tongdao::partner::types::SubscriptionEvent {
            fn from(c: &SubscriptionChange) -> Self {
                Self {
                    subscriber: c.subscriber.clone(),
                    service: c.service.clone(),
                }
            }
        }

        impl From<$v::tongdao::partner::types::ModuleError> for CallError {
            fn from(e: $v::tongdao::partner::types::ModuleError) -> Self {
                use $v::tongdao::partner::types::ModuleError as E;
                let (kind, message) = match e {
                    E::InvalidRequest(m) => ("invalid-request", m),
                    E::NoContent(m) => ("no-content", m),
                    E::HostFailure(m) => ("host-failure", m),
                    E::Other(m) => ("other", m),
                };
                CallError::Module {
                    kind,
                    message: super::host::truncate_utf8(message, 1024),
                }
            }
        }
    };
}

common_conversions!(v1_0);
common_conversions!(v1_1);

impl From<v1_0::tongdao::partner::types::Bulletin> for BulletinContent {
    fn from(b: v1_0::tongdao::partner::types::Bulletin) -> Self {
        use v1_0::tongdao::partner::types::Bulletin as B;
        match b {
            B::Single(text) => Self::Single { text },
            B::Keyed(k) => Self::Keyed {
                attribute: k.attribute,
                variants: k.variants.into_iter().map(|v| (v.key, v.text)).collect(),
                fallback: k.fallback,
            },
        }
    }
}

impl From<v1_1::tongdao::partner::types::Bulletin> for BulletinContent {
    fn from(b: v1_1::tongdao::partner::types::Bulletin) -> Self {
        use v1_1::tongdao::partner::types::{Bulletin as B, Operator};
        match b {
            B::Single(text) => Self::Single { text },
            B::Keyed(k) => Self::Keyed {
                attribute: k.attribute,
                variants: k.variants.into_iter().map(|v| (v.key, v.text)).collect(),
                fallback: k.fallback,
            },
            B::PerOperator(p) => Self::PerOperator {
                variants: p
                    .variants
                    .into_iter()
                    .map(|v| {
                        let operator = match v.operator {
                            Operator::ChinaMobile => crate::relay::numbering::CHINA_MOBILE,
                            Operator::ChinaUnicom => crate::relay::numbering::CHINA_UNICOM,
                            Operator::ChinaTelecom => crate::relay::numbering::CHINA_TELECOM,
                        };
                        (operator.to_string(), v.text)
                    })
                    .collect(),
                fallback: p.fallback,
            },
        }
    }
}

/// One export's answer before the output checks: a business error as
/// [`CallError::Module`].
type Answer<T> = wasmtime::Result<Result<T, CallError>>;

impl Instance {
    pub(super) async fn describe(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<ModuleDescription> {
        Ok(match self {
            Self::V1_0(m) => m
                .tongdao_partner_module()
                .call_describe(store)
                .await?
                .into(),
            Self::V1_1(m) => m
                .tongdao_partner_module()
                .call_describe(store)
                .await?
                .into(),
        })
    }

    pub(super) async fn bulletin(
        &self,
        store: &mut Store<CallState>,
        request: &BulletinRequest,
    ) -> Answer<BulletinContent> {
        Ok(match self {
            Self::V1_0(m) => m
                .tongdao_partner_module()
                .call_bulletin(store, &request.into())
                .await?
                .map(BulletinContent::from)
                .map_err(CallError::from),
            Self::V1_1(m) => m
                .tongdao_partner_module()
                .call_bulletin(store, &request.into())
                .await?
                .map(BulletinContent::from)
                .map_err(CallError::from),
        })
    }

    pub(super) async fn on_mo(
        &self,
        store: &mut Store<CallState>,
        message: &MoMessage,
    ) -> Answer<Option<String>> {
        Ok(match self {
            Self::V1_0(m) => m
                .tongdao_partner_module()
                .call_on_mo(store, &message.into())
                .await?
                .map_err(CallError::from),
            Self::V1_1(m) => m
                .tongdao_partner_module()
                .call_on_mo(store, &message.into())
                .await?
                .map_err(CallError::from),
        })
    }

    pub(super) async fn on_subscription(
        &self,
        store: &mut Store<CallState>,
        change: &SubscriptionChange,
    ) -> Answer<Option<String>> {
        Ok(match (self, change.joined) {
            (Self::V1_0(m), true) => m
                .tongdao_partner_module()
                .call_on_subscribe(store, &change.into())
                .await?
                .map_err(CallError::from),
            (Self::V1_0(m), false) => m
                .tongdao_partner_module()
                .call_on_unsubscribe(store, &change.into())
                .await?
                .map_err(CallError::from),
            (Self::V1_1(m), true) => m
                .tongdao_partner_module()
                .call_on_subscribe(store, &change.into())
                .await?
                .map_err(CallError::from),
            (Self::V1_1(m), false) => m
                .tongdao_partner_module()
                .call_on_unsubscribe(store, &change.into())
                .await?
                .map_err(CallError::from),
        })
    }
}
