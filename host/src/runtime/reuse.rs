//! Calling a trigger on the caller's thread, and a reused instance for
//! benchmarks (never in the server: a fresh instance per call is the rule).

use super::*;

impl Runtime {
    /// For benchmarks only: a trigger call on the caller's thread, without
    /// the call thread, the share or the watchdog: the baseline the
    /// production path ([`Runtime::evaluate`]) is measured against.
    #[doc(hidden)]
    pub fn evaluate_on_this_thread(
        &self,
        plugin: &Plugin,
        ticket: &wit::Ticket,
        ctx: &wit::Context,
    ) -> Outcome<wit::Evaluation> {
        let code = match plugin.code() {
            Ok(code) => code,
            Err(e) => return super::unavailable(plugin, &e),
        };
        let Pre::Trigger(pre) = &code.pre else {
            return wrong_kind(plugin, Kind::Trigger);
        };
        let seed = seed(&ticket.id, ctx.now);
        run_in_store(&self.engine, plugin, ctx.now, seed, None, |_, store| {
            pre.instantiate(&mut *store)
                .map_err(CallError::Instantiate)?
                .call_evaluate(store, ticket, ctx)
                .map_err(CallError::Run)
        })
        .0
    }
}

/// For benchmarks only: one instance reused across calls, to measure the
/// cost of a call apart from instantiation. Production never reuses an
/// instance (state would leak between tickets).
#[doc(hidden)]
pub struct ReusedTrigger {
    store: Store<CallState>,
    trigger: wit::trigger::Trigger,
    fuel: u64,
    ticks: u64,
}

impl Runtime {
    /// Instantiate `plugin` once for [`ReusedTrigger::evaluate`].
    #[doc(hidden)]
    pub fn reused_trigger(&self, plugin: &Plugin) -> anyhow::Result<ReusedTrigger> {
        let code = plugin.code()?;
        let Pre::Trigger(pre) = &code.pre else {
            anyhow::bail!("{} is not a trigger", plugin.id)
        };
        let l = plugin.limits;
        let mut store = Store::new(
            &self.engine,
            CallState::new(0, 0, l.memory_bytes, l.log_bytes),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(l.fuel)?;
        let ticks = u64::try_from(
            l.timeout
                .as_nanos()
                .div_ceil(self.config.epoch_tick.as_nanos().max(1)),
        )
        .unwrap_or(u64::MAX);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let trigger = pre.instantiate(&mut store)?;
        Ok(ReusedTrigger {
            store,
            trigger,
            fuel: l.fuel,
            ticks,
        })
    }
}

impl ReusedTrigger {
    /// Call `evaluate` on the live instance, resetting fuel and deadline
    /// first (both belong to the store and are not reset per call).
    pub fn evaluate(
        &mut self,
        ticket: &wit::Ticket,
        ctx: &wit::Context,
    ) -> anyhow::Result<wit::Evaluation> {
        self.store.set_fuel(self.fuel)?;
        self.store.set_epoch_deadline(self.ticks);
        self.trigger
            .call_evaluate(&mut self.store, ticket, ctx)?
            .map_err(anyhow::Error::msg)
    }
}
