//! Hostile plugins: each fails with its own typed error, the host goes on,
//! and the very next call on the same plugin succeeds.

use crate::support::*;
use escalator::registry::LoadedPlugin;
use escalator::runtime::PluginError;
use std::time::{Duration, Instant};

fn hostile(limits: &str) -> LoadedPlugin {
    load("hostile", "trigger", limits, &guest_wasm("hostile")).expect("the hostile guest loads")
}

/// Run `subject`, return its error, then check the plugin still works.
fn fails_then_recovers(p: &LoadedPlugin, subject: &str) -> PluginError {
    let out = evaluate(p, subject);
    let err = match out.result {
        Err(e) => e,
        Ok(v) => panic!("{subject}: expected a failure, got {v:?}"),
    };
    let next = evaluate(p, "behave")
        .result
        .unwrap_or_else(|e| panic!("after {subject}, the next call failed: {e}"));
    assert_eq!(next.signals[0].key, "hostile:ok");
    err
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let p = hostile("[limits]\nfuel = 10_000_000\n");
    let err = fails_then_recovers(&p, "loop");
    assert!(
        matches!(
            err,
            PluginError::OutOfFuel {
                limit: 10_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "hostile@1.0.0 ran out of fuel (limit 10000000)"
    );
}

#[test]
fn an_infinite_loop_with_fuel_to_spare_hits_the_deadline() {
    let p = hostile("[limits]\nfuel = 100_000_000_000\ntimeout-ms = 50\n");
    let start = Instant::now();
    let err = fails_then_recovers(&p, "loop");
    assert!(
        matches!(err, PluginError::Deadline { timeout, .. } if timeout == Duration::from_millis(50)),
        "{err}"
    );
    // A generous bound: the deadline (50 ms + one 5 ms tick) plus a second
    // call, on a loaded 2-core machine.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let p = hostile("[limits]\nmemory-mib = 16\n");
    let err = fails_then_recovers(&p, "membomb");
    match &err {
        PluginError::MemoryLimit {
            limit, requested, ..
        } => {
            assert_eq!(*limit, 16 << 20);
            assert!(*requested > 16 << 20, "{requested}");
        }
        other => panic!("expected a memory limit, got {other}"),
    }
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let err = fails_then_recovers(&hostile(""), "recursion");
    assert!(matches!(err, PluginError::StackOverflow { .. }), "{err}");
}

#[test]
fn fifty_megabytes_of_output_is_refused() {
    // Building and copying 50 MB takes tens of ms, more on a loaded CI
    // machine: a roomy deadline keeps this test about size, not time.
    let p = hostile("[limits]\nmemory-mib = 128\ntimeout-ms = 10_000\n");
    let err = fails_then_recovers(&p, "big-output");
    match err {
        PluginError::OutputTooLarge { size, limit, .. } => {
            assert!(size >= 50 << 20, "{size}");
            assert_eq!(limit, 1 << 20);
        }
        other => panic!("expected output too large, got {other}"),
    }
}

#[test]
fn a_panic_is_a_trap_with_the_panic_message_and_a_backtrace() {
    let err = fails_then_recovers(&hostile(""), "panic");
    let PluginError::Trap {
        trap,
        message,
        backtrace,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(trap.contains("unreachable"), "{trap}");
    let message = message.as_deref().unwrap_or_default();
    assert!(message.contains("boom on ticket T-42"), "{message}");
    assert!(
        backtrace.contains("hostile") || backtrace.contains("evaluate"),
        "{backtrace}"
    );
}

#[test]
fn a_raw_unreachable_is_a_trap() {
    let err = fails_then_recovers(&hostile(""), "unreachable");
    assert!(
        matches!(err, PluginError::Trap { message: None, .. }),
        "{err}"
    );
}

#[test]
fn garbage_output_is_invalid_output() {
    let err = fails_then_recovers(&hostile(""), "garbage");
    assert!(matches!(err, PluginError::InvalidOutput { .. }), "{err}");
    assert!(
        err.to_string().contains("signal 0 has an empty key"),
        "{err}"
    );
}

#[test]
fn a_clean_refusal_is_reported_as_the_plugins_error() {
    let err = fails_then_recovers(&hostile(""), "refuse");
    assert_eq!(
        err.to_string(),
        "hostile@1.0.0 returned an error: refusing this ticket on purpose"
    );
    assert_eq!(err.kind(), "refused");
}

#[test]
fn every_failure_in_a_row_leaves_the_runtime_healthy() {
    let p = hostile("[limits]\nfuel = 20_000_000\nmemory-mib = 128\ntimeout-ms = 10_000\n");
    for subject in [
        "loop",
        "membomb",
        "recursion",
        "big-output",
        "panic",
        "unreachable",
        "garbage",
        "refuse",
    ] {
        fails_then_recovers(&p, subject);
    }
    // And an unrelated plugin is untouched.
    let phrases = builtin("phrases");
    assert!(
        evaluate(&phrases, "this is unacceptable")
            .result
            .unwrap()
            .signals
            .len()
            == 1
    );
}

/// A low-lane call pauses while normal-lane work is in progress, the
/// pause not counted against its deadline (it ends by its own deadline
/// trap, not by the watchdog walking away) and capped; a normal-lane call
/// never pauses.
#[test]
fn a_low_lane_call_pauses_for_the_normal_lane_and_its_deadline_does_not_count_the_pause() {
    use escalator::runtime::shares::Lane;
    // A runtime of its own: the shared one's gate must stay idle for the
    // other tests. Its ticks are 50 ms, so the watchdog (the deadline plus
    // four ticks) leaves a call's own trap (within a tick of its deadline)
    // 150 ms to arrive on a loaded machine, not 15: which of the two ends
    // a call is what this test tells apart. Its low lane keeps nice 0: at
    // nice 19 (the default, tested in `shares`) a loaded machine may not
    // run the call for longer than that, and the pause is what is tested.
    let rt = escalator::runtime::Runtime::new(escalator::runtime::RuntimeConfig {
        epoch_tick: Duration::from_millis(50),
        shares: escalator::runtime::shares::SharesConfig {
            low_lane_nice: 0,
            ..Default::default()
        },
        ..escalator::runtime::RuntimeConfig::default()
    })
    .expect("a runtime");
    let p = escalator::registry::load_parts(
        &rt,
        "name = \"hostile\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n\
         [limits]\nfuel = 100_000_000_000\ntimeout-ms = 1000\n",
        std::path::Path::new("test/hostile/plugin.toml"),
        &guest_wasm("hostile"),
        "hostile".into(),
    )
    .expect("the hostile guest loads");
    let call = |tenant: &str| {
        let mut t = ticket("loop", &["hello"]);
        t.tenant = tenant.into();
        let started = Instant::now();
        let out = rt.evaluate(
            &p.plugin,
            &std::sync::Arc::new(escalator::pipeline::contract::ticket(&t)),
            &ctx(&p.config_json),
        );
        (out, started.elapsed())
    };
    let deadline = |out: &escalator::runtime::Outcome<_>| {
        assert!(
            matches!(out.result, Err(PluginError::Deadline { .. })),
            "{:?}",
            out.result
        );
        // Ended by its own trap: a call the watchdog walked away from
        // reports no fuel.
        assert!(out.report.fuel_used > 0, "{:?}", out.report);
    };
    rt.shares().set_lane("low", Lane::Low);
    let gate = rt.shares().gate().clone();

    // Normal lane, the gate busy: it runs to its deadline at once.
    let busy = gate.enter("other");
    let (normal, took) = call("normal");
    deadline(&normal);
    assert!(
        took < Duration::from_secs(3),
        "a normal call waited: {took:?}"
    );

    // Low lane: paused while the normal lane is busy, then its own
    // second. The gate is held for 600 ms from the moment the call is seen
    // paused (it runs at nice 19, so on a loaded machine it may take a
    // while to get there: that time counts against its deadline, the
    // pause does not).
    let (low, took, ended, released) = std::thread::scope(|s| {
        let running = s.spawn(|| {
            let (out, took) = call("low");
            (out, took, Instant::now())
        });
        let waited_from = Instant::now();
        while gate.waiting() == 0 {
            assert!(
                !running.is_finished(),
                "the low-lane call ended without pausing"
            );
            assert!(
                waited_from.elapsed() < Duration::from_secs(60),
                "the low-lane call never paused"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(600));
        // Taken before the release: what the call does after it is later.
        let released = Instant::now();
        drop(busy);
        let (low, took, ended) = running.join().unwrap();
        (low, took, ended, released)
    });
    deadline(&low);
    // Much of its second came after the normal lane was done: the pause did
    // not use up its deadline.
    assert!(
        ended >= released + Duration::from_millis(100),
        "it did not pause: ended {:?} after the release",
        ended.saturating_duration_since(released)
    );
    // Its reported time is its own, without the 600 ms pause.
    assert!(
        low.report.duration + Duration::from_millis(500) <= took,
        "reported {:?} of {took:?}",
        low.report.duration
    );

    // Busy for ever: slowed, never stopped (the pause is capped).
    let _busy = gate.enter("other");
    let (low, took) = call("low");
    deadline(&low);
    assert!(
        took >= escalator::lane::LOW_PAUSES_AT_MOST,
        "it did not pause: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "not capped: {took:?}");
    // Its reported time is its own, without the pause.
    assert!(
        low.report.duration + Duration::from_millis(500) <= took,
        "reported {:?} of {took:?}",
        low.report.duration
    );

    // A request beyond its tenant's share of the normal lane yields: it
    // pauses for another tenant's normal lane as the low lane does...
    let (yielded, took) = escalator::lane::within(Lane::Yield, || call("yielder"));
    deadline(&yielded);
    assert!(
        took >= escalator::lane::LOW_PAUSES_AT_MOST,
        "it did not pause: {took:?}"
    );
    // ...but not for its own tenant's: alone, a tenant's requests at once
    // run without pausing.
    drop(_busy);
    let own = gate.enter("yielder");
    let (yielded, took) = escalator::lane::within(Lane::Yield, || call("yielder"));
    deadline(&yielded);
    assert!(
        took < escalator::lane::LOW_PAUSES_AT_MOST + Duration::from_millis(800),
        "it paused for its own tenant: {took:?}"
    );
    drop(own);
}
