//! The sandbox: one wasmtime `Engine` (component model, async, pooling allocator,
//! epoch deadlines), compiled components cached on disk by content hash and engine
//! compatibility, one `InstancePre` per loaded module, and a fresh instance per call
//! so nothing leaks between calls.

mod admission;
pub mod bindings;
mod cache;
pub mod clock;
mod contract;
pub mod host;
pub mod limits;
mod output;
pub mod settings;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::Linker;
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

pub use admission::Lane;
use contract::{Instance, Linkers, Pre};
pub use host::{
    CallStart, CallState, DryRun, HostAnswer, HostCallRecord, LogLine, PartnerScope, Tape,
};
pub use limits::CallError;
pub use output::{
    BulletinContent, BulletinRequest, MoMessage, ModuleDescription, SubscriptionChange,
};

pub use settings::RuntimeConfig;

/// How often the epoch ticks. At each tick a running call's CPU time is counted
/// and a call that ran a whole tick yields to the executor.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Why a component was refused at upload or load. Each message is meant for the
/// partner who uploaded it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("not a WebAssembly binary (it does not start with the `\\0asm` magic)")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("not a valid component: {0}")]
    Invalid(String),
    #[error("imports something the platform does not offer: {0}")]
    UnsupportedImport(String),
    #[error(
        "built against tongdao:partner@{found}; this platform supports tongdao:partner@{}",
        supported.join(", @")
    )]
    UnsupportedVersion {
        found: String,
        supported: Vec<&'static str>,
    },
    #[error("does not implement the world tongdao:partner/content-module{0}")]
    WrongWorld(String),
    #[error("`describe` failed: {0}")]
    Describe(CallError),
    #[error("`describe` returned an invalid description: {0}")]
    BadDescription(String),
}

/// A runtime failure that is the host's, not a module's.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    #[error("module cache: {0}")]
    Cache(String),
}

/// A component ready to be instantiated: validated, compiled, linked.
pub struct LoadedModule {
    pre: Pre,
    /// SHA-256 of the component bytes (hex).
    pub sha256: String,
    /// The version of `tongdao:partner` the component was built against.
    pub wit_version: String,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("sha256", &self.sha256)
            .field("wit_version", &self.wit_version)
            .finish()
    }
}

/// What one call produced, with what the module logged along the way.
#[derive(Debug)]
pub struct CallOutcome<T> {
    pub result: Result<T, CallError>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    /// CPU time the module's own code used (the budget's measure).
    pub cpu: Duration,
    /// Wall time from admission in its lane to the answer.
    pub wall: Duration,
    /// SHA-256 (hex) of the call's inputs: the export's name, a newline, and the
    /// request as JSON (provenance, issue 17 item 6; see [`input_sha256`]).
    pub input_sha256: String,
    /// The data calls made, recorded only in a dry run (see [`DryRun`]).
    pub host_calls: Vec<HostCallRecord>,
    /// The stored module version that ran (`module_versions.id`): set by the
    /// registry, `None` from the bare runtime (provenance, issue 17 item 6).
    pub version_id: Option<i64>,
    /// What the host answered a live call, for replay (issue 17 item 7); `None`
    /// for dry runs, `describe` and replays.
    pub recording: Option<CallRecording>,
    /// The id of the stored recording (`tongdao module replay` takes it): set by
    /// the registry when it kept one.
    pub call_id: Option<i64>,
}

/// The host's side of one live call, enough to run it again deterministically
/// (issue 17 item 7; see [`host::Tape`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallRecording {
    /// Unix ms the call clock started at.
    pub clock_ms: i64,
    /// The UTC offset the module was told, in seconds.
    pub utc_offset_seconds: i32,
    /// WASI's `insecure-seed` (decimal, a 128-bit number).
    pub wasi_seed: String,
    /// Every answer of the contract's imports, in order.
    pub answers: Vec<HostAnswer>,
}

/// A replay's outcome: what the call returned as JSON (`{"ok": …}` or
/// `{"error": {"kind", "message"}}`), what it logged, and how its questions met
/// the recording.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub output: serde_json::Value,
    pub logs: Vec<LogLine>,
    /// Questions the recording had no answer for, with the neutral answer given.
    pub unrecorded: Vec<HostAnswer>,
    /// Recorded answers no question used.
    pub unused: Vec<HostAnswer>,
}

/// A call's result as recorded and replayed: `{"ok": value}` or `{"error":
/// {"kind", "message"}}`.
pub fn output_json<T: serde::Serialize>(result: &Result<T, CallError>) -> serde_json::Value {
    match result {
        Ok(value) => serde_json::json!({ "ok": value }),
        Err(error) => serde_json::json!({ "error": limits::CallErrorBody::from(error) }),
    }
}

/// The SHA-256 (hex) of one call's inputs: `export`, `\n`, then `request` as JSON
/// (the host's own request types, so the hash does not depend on the contract
/// version). An MT records it beside the module version that wrote it.
pub fn input_sha256(export: &str, request: &impl serde::Serialize) -> String {
    let json = serde_json::to_vec(request).unwrap_or_default();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hasher, export.as_bytes());
    sha2::Digest::update(&mut hasher, b"\n");
    sha2::Digest::update(&mut hasher, &json);
    hex::encode(sha2::Digest::finalize(hasher))
}

/// The module runtime. Cheap to share behind an `Arc`.
pub struct Runtime {
    engine: Engine,
    /// One linker per served contract version (see [`contract`]).
    linkers: Linkers,
    limits: RuntimeConfig,
    cache: cache::ComponentCache,
    admission: admission::Admission,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn engine_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Engine(e.to_string())
}

impl Runtime {
    /// Build the engine, the linker and the cache. `cache_dir` None keeps compiled
    /// code in memory only (the local runner).
    pub fn new(limits: RuntimeConfig, cache_dir: Option<PathBuf>) -> Result<Self, RuntimeError> {
        let slots = limits.max_concurrent_calls;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_stacks(slots)
            // Components from componentize-py or jco hold many core instances,
            // memories and tables; Rust components hold a handful.
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(64)
            .total_core_instances(slots.saturating_mul(16))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(16))
            .max_memory_size(limits.max_memory_bytes)
            // Reset linear memory in place between calls rather than unmapping
            // it: with PAGEMAP_SCAN (Linux 6.7+) only the dirtied pages are
            // reset, so a call does not pay page faults for its stack and heap.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(2 * 1024 * 1024)
            .table_keep_resident(64 * 1024)
            .async_stack_keep_resident(64 * 1024);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        // WASI's monotonic clock again, over the one above: its sleeps advance the
        // call clock instead of blocking (see `clock`).
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<
            CallState,
            wasmtime::component::HasSelf<CallState>,
        >(&mut linker, |s| s)
        .map_err(engine_err)?;
        linker.allow_shadowing(false);
        let linkers = Linkers::new(&linker).map_err(engine_err)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());
        let cache = cache::ComponentCache::new(&engine, cache_dir)?;
        let admission = admission::Admission::new(&limits);
        Ok(Self {
            engine,
            linkers,
            limits,
            cache,
            admission,
            ticker_stop,
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &RuntimeConfig {
        &self.limits
    }

    /// Delete the compiled code cached for the component with this SHA-256.
    pub fn forget_compiled(&self, sha256: &str) {
        self.cache.remove(sha256);
    }

    /// Check that `wasm` is a component implementing the content-module world and
    /// importing only what the platform offers, compile it (cached), and link it.
    pub fn load(&self, wasm: &[u8]) -> Result<Arc<LoadedModule>, ValidationError> {
        check_header(wasm)?;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(wasm));
        let component = self.cache.compile(&self.engine, &sha256, wasm)?;
        let wit_version = contract_version(&self.engine, &component)?;
        let pre = self.linkers.link(&component, &wit_version)?;
        Ok(Arc::new(LoadedModule {
            pre,
            sha256,
            wit_version,
        }))
    }

    /// Load `wasm` and call `describe`, validating the answer: what an upload does.
    pub async fn validate(
        &self,
        wasm: &[u8],
        lane: Lane,
    ) -> Result<(Arc<LoadedModule>, ModuleDescription), ValidationError> {
        let module = self.load(wasm)?;
        let description = self.checked_description(&module, lane).await?;
        Ok((module, description))
    }

    /// Call `describe` on a loaded module and check the answer.
    ///
    /// # Errors
    /// [`ValidationError::Describe`] when the call fails,
    /// [`ValidationError::BadDescription`] when the answer breaks the WIT's rules.
    pub async fn checked_description(
        &self,
        module: &LoadedModule,
        lane: Lane,
    ) -> Result<ModuleDescription, ValidationError> {
        let description = self
            .describe(module, lane)
            .await
            .result
            .map_err(ValidationError::Describe)?;
        description
            .check()
            .map_err(ValidationError::BadDescription)?;
        Ok(description)
    }

    /// Call `describe`. It gets no data capabilities.
    pub async fn describe(
        &self,
        module: &LoadedModule,
        lane: Lane,
    ) -> CallOutcome<ModuleDescription> {
        let start = CallStart::now(None);
        self.call(
            module,
            lane,
            None,
            String::new(),
            start,
            async |m, store| Ok(Ok(m.describe(store).await?)),
        )
        .await
    }

    /// Call `bulletin` and check the content against the output limits.
    pub async fn bulletin(
        &self,
        module: &LoadedModule,
        scope: PartnerScope,
        request: &BulletinRequest,
    ) -> CallOutcome<BulletinContent> {
        let start = live_start(&scope);
        self.bulletin_from(module, scope, request, start).await
    }

    async fn bulletin_from(
        &self,
        module: &LoadedModule,
        scope: PartnerScope,
        request: &BulletinRequest,
        start: CallStart,
    ) -> CallOutcome<BulletinContent> {
        let input = input_sha256("bulletin", request);
        let limits = &self.limits;
        self.call(
            module,
            scope.lane(),
            Some(scope),
            input,
            start,
            async move |m, store| {
                let result = m.bulletin(store, request).await?;
                Ok(result.and_then(|b| b.checked(limits)))
            },
        )
        .await
    }

    /// Call `on-mo`.
    pub async fn on_mo(
        &self,
        module: &LoadedModule,
        scope: PartnerScope,
        message: &MoMessage,
    ) -> CallOutcome<Option<String>> {
        let start = live_start(&scope);
        self.on_mo_from(module, scope, message, start).await
    }

    async fn on_mo_from(
        &self,
        module: &LoadedModule,
        scope: PartnerScope,
        message: &MoMessage,
        start: CallStart,
    ) -> CallOutcome<Option<String>> {
        let input = input_sha256("on-mo", message);
        let limits = &self.limits;
        self.call(
            module,
            scope.lane(),
            Some(scope),
            input,
            start,
            async move |m, store| {
                let result = m.on_mo(store, message).await?;
                Ok(result.and_then(|r| output::checked_reply(r, limits)))
            },
        )
        .await
    }

    /// Call `on-subscribe` (`joined`) or `on-unsubscribe`.
    pub async fn on_subscription(
        &self,
        module: &LoadedModule,
        scope: PartnerScope,
        change: &SubscriptionChange,
    ) -> CallOutcome<Option<String>> {
        let start = live_start(&scope);
        self.on_subscription_from(module, scope, change, start)
            .await
    }

    async fn on_subscription_from(
        &self,
        module: &LoadedModule,
        scope: PartnerScope,
        change: &SubscriptionChange,
        start: CallStart,
    ) -> CallOutcome<Option<String>> {
        let input = input_sha256(change.export(), change);
        let limits = &self.limits;
        self.call(
            module,
            scope.lane(),
            Some(scope),
            input,
            start,
            async move |m, store| {
                let result = m.on_subscription(store, change).await?;
                Ok(result.and_then(|r| output::checked_reply(r, limits)))
            },
        )
        .await
    }

    /// Run the recorded call `export` (`bulletin`, `on-mo`, `on-subscribe`,
    /// `on-unsubscribe`) with `request` (its recorded JSON) on `module` again,
    /// every host answer taken from `recording` (issue 17 item 7). Nothing is
    /// read from or written to the store: `scope` only names the partner's lane.
    ///
    /// # Errors
    /// A message when the export is unknown or the request does not parse.
    pub async fn replay(
        &self,
        module: &LoadedModule,
        scope: PartnerScope,
        export: &str,
        request: &serde_json::Value,
        recording: &CallRecording,
    ) -> Result<Replayed, String> {
        let tape = Tape::replaying(recording.answers.clone());
        let start = CallStart {
            clock_ms: recording.clock_ms,
            utc_offset_seconds: recording.utc_offset_seconds,
            wasi_seed: recording.wasi_seed.parse().unwrap_or_default(),
            tape: Some(tape.clone()),
        };
        let bad = |e: serde_json::Error| format!("the recorded `{export}` request: {e}");
        let (output, logs) = match export {
            "bulletin" => {
                let request: BulletinRequest =
                    serde_json::from_value(request.clone()).map_err(bad)?;
                let outcome = self.bulletin_from(module, scope, &request, start).await;
                (output_json(&outcome.result), outcome.logs)
            }
            "on-mo" => {
                let message: MoMessage = serde_json::from_value(request.clone()).map_err(bad)?;
                let outcome = self.on_mo_from(module, scope, &message, start).await;
                (output_json(&outcome.result), outcome.logs)
            }
            "on-subscribe" | "on-unsubscribe" => {
                let change: SubscriptionChange =
                    serde_json::from_value(request.clone()).map_err(bad)?;
                let outcome = self
                    .on_subscription_from(module, scope, &change, start)
                    .await;
                (output_json(&outcome.result), outcome.logs)
            }
            other => return Err(format!("`{other}` is not an export that can be replayed")),
        };
        Ok(Replayed {
            output,
            logs,
            unrecorded: tape.unrecorded(),
            unused: tape.answers(),
        })
    }

    /// Admit the call in its lane, instantiate `module` in a fresh store and run
    /// `f` under the call's limits: the CPU budget (counted at each epoch tick,
    /// yielding every tick so other calls run between slices), the wall-clock
    /// backstop, memory, output and host-call quotas.
    async fn call<T, F>(
        &self,
        module: &LoadedModule,
        lane: Lane,
        scope: Option<PartnerScope>,
        input_sha256: String,
        start: CallStart,
        f: F,
    ) -> CallOutcome<T>
    where
        F: AsyncFnOnce(&Instance, &mut Store<CallState>) -> wasmtime::Result<Result<T, CallError>>,
    {
        let dry = scope.as_ref().and_then(|s| s.dry.clone());
        let _admitted = match self.admission.admit(lane).await {
            Ok(admitted) => admitted,
            Err(error) => {
                return CallOutcome {
                    result: Err(error),
                    logs: Vec::new(),
                    logs_dropped: 0,
                    cpu: Duration::ZERO,
                    wall: Duration::ZERO,
                    input_sha256,
                    host_calls: Vec::new(),
                    version_id: None,
                    recording: None,
                    call_id: None,
                };
            }
        };
        let started = std::time::Instant::now();
        let recording = start.tape.clone().filter(|t| !t.is_replay()).map(|tape| {
            let header = CallRecording {
                clock_ms: start.clock_ms,
                utc_offset_seconds: start.utc_offset_seconds,
                wasi_seed: start.wasi_seed.to_string(),
                answers: Vec::new(),
            };
            (header, tape)
        });
        let state = CallState::new(&self.limits, scope, start);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().cpu.on_tick(EPOCH_TICK)));

        // A host import awaiting the database does not reach an epoch check, and a
        // loaded machine may not run the call at all: the wall clock backs the CPU
        // budget up.
        let wall_ms = self.wall_timeout_ms();
        let run = async {
            let instance = module.pre.instantiate(&mut store).await?;
            f(&instance, &mut store).await
        };
        let result = match tokio::time::timeout(Duration::from_millis(wall_ms), run).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(self.classify(&error, store.data_mut())),
            Err(_elapsed) => Err(CallError::Timeout { limit_ms: wall_ms }),
        };
        let wall = started.elapsed();
        let state = store.into_data();
        CallOutcome {
            result,
            logs: state.logs,
            logs_dropped: state.quota.logs_dropped,
            cpu: state.cpu.finish(),
            wall,
            input_sha256,
            host_calls: dry.map(|d| d.take_calls()).unwrap_or_default(),
            version_id: None,
            recording: recording.map(|(recording, tape)| CallRecording {
                answers: tape.answers(),
                ..recording
            }),
            call_id: None,
        }
    }

    /// The wall-clock backstop of one call: `wall_timeout_ms`, and never shorter
    /// than the CPU budget.
    pub fn wall_timeout_ms(&self) -> u64 {
        self.limits.wall_timeout_ms.max(self.limits.call_timeout_ms)
    }

    /// Name the reason a call failed, from what the store saw and the trap code.
    fn classify(&self, error: &wasmtime::Error, state: &mut CallState) -> CallError {
        if let Some(exceeded) = state.quota.exceeded.take() {
            return exceeded;
        }
        if state.cpu.exceeded {
            return CallError::CpuLimit {
                limit_ms: self.limits.call_timeout_ms,
            };
        }
        if let Some(requested) = state.limiter.memory_refused {
            return CallError::MemoryLimit {
                limit: self.limits.max_memory_bytes,
                requested,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) | Some(Trap::OutOfFuel) => CallError::CpuLimit {
                limit_ms: self.limits.call_timeout_ms,
            },
            Some(Trap::AllocationTooLarge) => CallError::MemoryLimit {
                limit: self.limits.max_memory_bytes,
                requested: 0,
            },
            Some(trap) => CallError::Trap(format!("{trap}{}", backtrace_of(error))),
            None if is_pool_exhausted(error) => CallError::Unavailable(root_message(error)),
            None => CallError::Trap(host::truncate_utf8(format!("{error:#}"), 2048)),
        }
    }
}

/// How a live call starts: recording its host answers when it runs on a
/// partner's real data (not a dry run).
fn live_start(scope: &PartnerScope) -> CallStart {
    CallStart::now(scope.dry.is_none().then(Tape::recording))
}

/// The guest backtrace wasmtime attaches to a trap, if any, shortened.
fn backtrace_of(error: &wasmtime::Error) -> String {
    error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| host::truncate_utf8(format!("\n{bt}"), 1536))
        .unwrap_or_default()
}

fn is_pool_exhausted(error: &wasmtime::Error) -> bool {
    error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
}

/// The innermost message of an error chain: what a partner needs to read.
fn root_message(error: &wasmtime::Error) -> String {
    let full = format!("{error:#}");
    host::truncate_utf8(full, 1024)
}

/// The version of the contract package (`tongdao:partner@X`) a component imports
/// and exports, read from its type.
///
/// # Errors
/// [`ValidationError::UnsupportedVersion`] when it names a version this host does
/// not serve (or mixes versions), with the version found and those supported. A
/// component that names no version of the package at all is left to the world
/// check (`wrong-world`).
fn contract_version(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> Result<String, ValidationError> {
    const PACKAGE: &str = "tongdao:partner/";
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(name, _)| name)
        .chain(ty.exports(engine).map(|(name, _)| name));
    let mut found: Vec<String> = Vec::new();
    for name in names {
        let Some(rest) = name.strip_prefix(PACKAGE) else {
            continue;
        };
        let version = rest
            .split_once('@')
            .map_or_else(|| "(none)".to_string(), |(_, v)| v.to_string());
        if !found.contains(&version) {
            found.push(version);
        }
    }
    let supported = bindings::SUPPORTED_WIT_VERSIONS.to_vec();
    match found.as_slice() {
        [] => Ok(bindings::LATEST_WIT_VERSION.to_string()),
        [one] if supported.contains(&one.as_str()) => Ok(one.clone()),
        _ => Err(ValidationError::UnsupportedVersion {
            found: found.join(" and @"),
            supported,
        }),
    }
}

/// Tell random bytes and core modules from components before compiling.
fn check_header(wasm: &[u8]) -> Result<(), ValidationError> {
    const MAGIC: &[u8] = b"\0asm";
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(ValidationError::NotWasm);
    }
    // Bytes 4..8: version 1 layer 0 is a core module; layer 1 is a component.
    match &wasm[4..8] {
        [1, 0, 0, 0] => Err(ValidationError::CoreModule),
        [_, _, 1, 0] => Ok(()),
        other => Err(ValidationError::Invalid(format!(
            "unknown binary version/layer {other:02x?}"
        ))),
    }
}

/// Advance the engine's epoch every tick until the runtime is dropped.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    let weak = engine.weak();
    drop(engine);
    std::thread::Builder::new()
        .name("tongdao-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the epoch ticker; only the wall-clock backstop will end long calls"));
}

impl ValidationError {
    /// A stable code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotWasm => "not-wasm",
            Self::CoreModule => "core-module",
            Self::Invalid(_) => "invalid-component",
            Self::UnsupportedImport(_) => "unsupported-import",
            Self::UnsupportedVersion { .. } => "unsupported-version",
            Self::WrongWorld(_) => "wrong-world",
            Self::Describe(_) => "describe-failed",
            Self::BadDescription(_) => "bad-description",
        }
    }
}
