//! The export macros: one per plugin kind. Each wires the author's type to
//! the generated WIT glue, parses the configuration first, and compiles to
//! nothing natively (so the plugin crate also builds as an ordinary library).

/// Export a [`Trigger`](crate::Trigger) implementation as the plugin's
/// `evaluate` function.
#[macro_export]
macro_rules! export_trigger {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __EscalatorExport;
            impl $crate::bindings::trigger::Guest for __EscalatorExport {
                fn evaluate(
                    ticket: $crate::Ticket,
                    ctx: $crate::Context,
                ) -> ::core::result::Result<$crate::Evaluation, $crate::__private::String> {
                    let ctx = $crate::context::<<$plugin as $crate::Trigger>::Config>(ctx)?;
                    <$plugin as $crate::Trigger>::evaluate(&ticket, &ctx)
                }
            }
            $crate::bindings::trigger::__export_trigger!(
                __EscalatorExport with_types_in $crate::bindings::trigger
            );
        };
    };
}

/// Export a [`Router`](crate::Router) implementation as the plugin's `route`
/// function.
#[macro_export]
macro_rules! export_router {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __EscalatorExport;
            impl $crate::bindings::router::Guest for __EscalatorExport {
                fn route(
                    ticket: $crate::Ticket,
                    escalation: $crate::Escalation,
                    roster: $crate::__private::Vec<$crate::Agent>,
                    ctx: $crate::Context,
                ) -> ::core::result::Result<$crate::Routing, $crate::__private::String> {
                    let ctx = $crate::context::<<$plugin as $crate::Router>::Config>(ctx)?;
                    <$plugin as $crate::Router>::route(&ticket, &escalation, &roster, &ctx)
                }
            }
            $crate::bindings::router::__export_router!(
                __EscalatorExport with_types_in $crate::bindings::router
            );
        };
    };
}

/// Export a [`Notifier`](crate::Notifier) implementation as the plugin's
/// `plan` function.
#[macro_export]
macro_rules! export_notifier {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __EscalatorExport;
            impl $crate::bindings::notifier::Guest for __EscalatorExport {
                fn plan(
                    ticket: $crate::Ticket,
                    escalation: $crate::Escalation,
                    routing: $crate::Routing,
                    roster: $crate::__private::Vec<$crate::Agent>,
                    ctx: $crate::Context,
                ) -> ::core::result::Result<$crate::NotificationPlan, $crate::__private::String>
                {
                    let ctx = $crate::context::<<$plugin as $crate::Notifier>::Config>(ctx)?;
                    <$plugin as $crate::Notifier>::plan(
                        &ticket,
                        &escalation,
                        &routing,
                        &roster,
                        &ctx,
                    )
                }
            }
            $crate::bindings::notifier::__export_notifier!(
                __EscalatorExport with_types_in $crate::bindings::notifier
            );
        };
    };
}
