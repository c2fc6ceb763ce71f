//! The state of one call and the host side of the small imports (log, clock,
//! random). Data capabilities live beside: [`kv`] and [`library`] (content library
//! and subscriber attributes). Every capability is scoped to the calling partner.

mod dry;
mod kv;
mod library;
mod tape;

pub use dry::{DryRun, HostCallRecord};
pub use library::valid_attribute_name;
pub use tape::{HostAnswer, Tape};

use rand::RngCore;
use serde::Serialize;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::latest::tongdao::partner::{clock, log, random, types};
use super::clock::CallClock;
use super::limits::{CallError, CallLimiter, CpuMeter, Quota};
use crate::runtime::RuntimeConfig;
use crate::store::{Store, now_ms};

/// Whose data a call may touch. A call without a scope (e.g. `module check`) gets
/// `unavailable` from every data capability.
#[derive(Debug, Clone)]
pub struct PartnerScope {
    pub store: Store,
    pub partner_id: i64,
    /// `Some`: nothing the call writes is stored (admission, dry runs); see [`DryRun`].
    pub dry: Option<DryRun>,
}

impl PartnerScope {
    /// The lane its calls queue in: the partner's own, or for a shadow run the
    /// partner's shadow lane (so a candidate never takes a live call's slot).
    pub fn lane(&self) -> super::Lane {
        match &self.dry {
            Some(dry) if dry.is_shadow() => super::Lane::Shadow(self.partner_id),
            _ => super::Lane::Partner(self.partner_id),
        }
    }
}

/// One line a module logged.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// Everything one call's store holds. Built fresh for every call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    pub(crate) quota: Quota,
    pub(crate) logs: Vec<LogLine>,
    /// The only time the module sees (its `clock` import and WASI's clocks).
    pub(crate) clock: CallClock,
    /// CPU time of the call, checked at each epoch tick.
    pub(crate) cpu: CpuMeter,
    scope: Option<PartnerScope>,
    max_kv_value_bytes: usize,
    max_kv_keys: u64,
    utc_offset_seconds: i32,
    /// The call's host answers, recorded (a live call) or replayed (issue 17
    /// item 7); `None` for dry runs and `describe`.
    pub(crate) tape: Option<Tape>,
}

/// Where a call's clock, WASI seed and host answers come from.
#[derive(Debug, Clone)]
pub struct CallStart {
    /// Unix ms the call clock starts at.
    pub clock_ms: i64,
    /// The platform's UTC offset the module is told.
    pub utc_offset_seconds: i32,
    /// WASI's `insecure-seed`.
    pub wasi_seed: u128,
    pub tape: Option<Tape>,
}

impl CallStart {
    /// A live call now: the host's clock, a fresh seed, and `tape` (recording or none).
    pub fn now(tape: Option<Tape>) -> Self {
        let clock_ms = now_ms();
        Self {
            clock_ms,
            utc_offset_seconds: crate::clock::utc_offset_seconds(clock_ms),
            wasi_seed: (u128::from(rand::rng().next_u64()) << 64)
                | u128::from(rand::rng().next_u64()),
            tape,
        }
    }
}

const MAX_LOG_LINE_BYTES: usize = 1024;

impl CallState {
    pub fn new(limits: &RuntimeConfig, scope: Option<PartnerScope>, start: CallStart) -> Self {
        let clock = CallClock::new(start.clock_ms);
        Self {
            // An empty WASI context: no preopened files, no environment, no network.
            // Guests built by standard toolchains import these interfaces even when
            // they never use them. Its clocks are the call clock.
            wasi: WasiCtx::builder()
                .wall_clock(clock.clone())
                .monotonic_clock(clock.clone())
                .insecure_random_seed(start.wasi_seed)
                .build(),
            table: ResourceTable::new(),
            limiter: CallLimiter::new(limits.max_memory_bytes),
            quota: Quota {
                kv_ops_limit: limits.max_kv_ops,
                data_ops_limit: limits.max_data_ops,
                kv_ops_left: limits.max_kv_ops,
                data_ops_left: limits.max_data_ops,
                log_lines_left: limits.max_log_lines,
                logs_dropped: 0,
                exceeded: None,
            },
            logs: Vec::new(),
            clock,
            cpu: CpuMeter::new(limits.call_timeout_ms),
            scope,
            max_kv_value_bytes: limits.max_kv_value_bytes,
            max_kv_keys: limits.max_kv_keys,
            utc_offset_seconds: start.utc_offset_seconds,
            tape: start.tape,
        }
    }

    /// The dry run this call belongs to, if any.
    fn dry(&self) -> Option<DryRun> {
        self.scope.as_ref().and_then(|s| s.dry.clone())
    }

    /// Count one key-value operation; past the quota the call traps.
    fn spend_kv_op(&mut self) -> wasmtime::Result<()> {
        let q = &mut self.quota;
        spend(
            &mut q.kv_ops_left,
            &mut q.exceeded,
            "key-value",
            q.kv_ops_limit,
        )
    }

    /// Count one content-library or attribute operation; past the quota the call traps.
    fn spend_data_op(&mut self) -> wasmtime::Result<()> {
        let q = &mut self.quota;
        spend(
            &mut q.data_ops_left,
            &mut q.exceeded,
            "data",
            q.data_ops_limit,
        )
    }
}

fn spend(
    left: &mut u32,
    exceeded: &mut Option<CallError>,
    what: &'static str,
    limit: u32,
) -> wasmtime::Result<()> {
    if *left == 0 {
        let error = CallError::HostCallQuota { what, limit };
        let message = error.to_string();
        *exceeded = Some(error);
        return Err(wasmtime::format_err!("{message}"));
    }
    *left -= 1;
    Ok(())
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}
impl super::bindings::since_v1_0_0::tongdao::partner::types::Host for CallState {}

impl log::Host for CallState {
    async fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if self.quota.log_lines_left == 0 {
            self.quota.logs_dropped += 1;
            return Ok(());
        }
        self.quota.log_lines_left -= 1;
        let level = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.logs.push(LogLine {
            level,
            message: truncate_utf8(message, MAX_LOG_LINE_BYTES),
        });
        Ok(())
    }
}

impl clock::Host for CallState {
    async fn now_ms(&mut self) -> wasmtime::Result<i64> {
        let now = self.clock.now_ms();
        let tape = self.tape.clone();
        Ok(tape::answer(tape.as_ref(), "clock.now-ms", &[], || now, async { now }).await)
    }

    async fn utc_offset_seconds(&mut self) -> wasmtime::Result<i32> {
        let offset = self.utc_offset_seconds;
        let tape = self.tape.clone();
        let call = "clock.utc-offset-seconds";
        Ok(tape::answer(tape.as_ref(), call, &[], || offset, async { offset }).await)
    }
}

impl random::Host for CallState {
    async fn next_u64(&mut self) -> wasmtime::Result<u64> {
        let tape = self.tape.clone();
        let live = async { rand::rng().next_u64() };
        Ok(tape::answer(tape.as_ref(), "random.next-u64", &[], || 0, live).await)
    }
}

/// Cut `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
