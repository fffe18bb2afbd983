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
                    let ctx =
                        $crate::context_kept::<<$plugin as $crate::Trigger>::Config>("", ctx)?;
                    <$plugin as $crate::Trigger>::evaluate(&ticket, &ctx)
                }
                fn configure(
                    config: $crate::__private::String,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    $crate::kept::keep::<<$plugin as $crate::Trigger>::Config>("", &config)
                }
            }
            $crate::bindings::trigger::__export_trigger!(
                __EscalatorExport with_types_in $crate::bindings::trigger
            );
        };
    };
}

/// Export several [`Trigger`](crate::Trigger)s, each under its name, as one
/// component of the `trigger-set` world: for the vendor's own default
/// triggers, which the host calls together in one instance. It also defines
/// `pub fn evaluate_each(&Ticket, Vec<(String, Context)>)`, the same
/// dispatch callable natively (for tests), and `pub const TRIGGERS`, the
/// names.
#[macro_export]
macro_rules! export_trigger_set {
    ($($name:literal => $plugin:ty),+ $(,)?) => {
        /// The names of the set's triggers.
        pub const TRIGGERS: &[&str] = &[$($name),+];

        /// Evaluate the ticket with each named trigger and its context.
        pub fn evaluate_each(
            ticket: &$crate::Ticket,
            triggers: $crate::__private::Vec<($crate::__private::String, $crate::Context)>,
        ) -> $crate::__private::Vec<::core::result::Result<$crate::Evaluation, $crate::__private::String>> {
            $crate::evaluate_each(ticket, triggers, |name, ticket, ctx| match name {
                $($name => ::core::option::Option::Some($crate::evaluate_named::<$plugin>($name, ticket, ctx)),)+
                _ => ::core::option::Option::None,
            })
        }

        /// Keep each named trigger's configuration parsed (what the set's
        /// `configure-each` does): one answer per trigger.
        pub fn configure_each(
            configs: $crate::__private::Vec<($crate::__private::String, $crate::__private::String)>,
        ) -> $crate::__private::Vec<::core::result::Result<(), $crate::__private::String>> {
            $crate::configure_each(configs, |name, text| match name {
                $($name => ::core::option::Option::Some(
                    $crate::kept::keep::<<$plugin as $crate::Trigger>::Config>($name, text)
                ),)+
                _ => ::core::option::Option::None,
            })
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __EscalatorExport;
            impl $crate::bindings::trigger_set::Guest for __EscalatorExport {
                fn evaluate(
                    _ticket: $crate::Ticket,
                    _ctx: $crate::Context,
                ) -> ::core::result::Result<$crate::Evaluation, $crate::__private::String> {
                    ::core::result::Result::Err("a trigger set runs through evaluate-each".into())
                }
                fn evaluate_each(
                    ticket: $crate::Ticket,
                    triggers: $crate::__private::Vec<($crate::__private::String, $crate::Context)>,
                ) -> $crate::__private::Vec<::core::result::Result<$crate::Evaluation, $crate::__private::String>> {
                    evaluate_each(&ticket, triggers)
                }
                fn configure_each(
                    configs: $crate::__private::Vec<($crate::__private::String, $crate::__private::String)>,
                ) -> $crate::__private::Vec<::core::result::Result<(), $crate::__private::String>> {
                    configure_each(configs)
                }
            }
            $crate::bindings::trigger_set::__export_trigger_set!(
                __EscalatorExport with_types_in $crate::bindings::trigger_set
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
                    let ctx = $crate::context_kept::<<$plugin as $crate::Router>::Config>("", ctx)?;
                    <$plugin as $crate::Router>::route(&ticket, &escalation, &roster, &ctx)
                }
                fn configure(
                    config: $crate::__private::String,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    $crate::kept::keep::<<$plugin as $crate::Router>::Config>("", &config)
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
                    let ctx =
                        $crate::context_kept::<<$plugin as $crate::Notifier>::Config>("", ctx)?;
                    <$plugin as $crate::Notifier>::plan(
                        &ticket,
                        &escalation,
                        &routing,
                        &roster,
                        &ctx,
                    )
                }
                fn configure(
                    config: $crate::__private::String,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    $crate::kept::keep::<<$plugin as $crate::Notifier>::Config>("", &config)
                }
            }
            $crate::bindings::notifier::__export_notifier!(
                __EscalatorExport with_types_in $crate::bindings::notifier
            );
        };
    };
}
